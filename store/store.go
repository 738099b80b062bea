// Package store owns the layout of a dsh data folder: creating one (init), locking it so only
// one daemon uses it, opening its parts (metadata, blobs, audit log) once the root key is
// known, and the evidence that those parts belong together (the store's epoch, epoch.go).
// It must never write a key or plaintext to the folder (every part it opens encrypts), and
// never open a store whose parts disagree.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"dsh/audit"
	"dsh/blob"
	"dsh/blob/inline"
	"dsh/internal/secmem"
	"dsh/kv"
	"dsh/vault"
)

// Names inside a data folder; FORMAT.md in vault/ documents what each holds.
const (
	MetaDir  = "meta"
	BlobDir  = "blobs"
	AuditDir = "audit"
	LockFile = "dsh.lock"
)

// ErrLocked is returned when another daemon holds the data folder.
var ErrLocked = errors.New("data folder is in use by another dsh serve")

// Init creates a new store in dir: a random root key sealed under passphrase (which must
// pass vault.CheckPassphrase), an encrypted
// Badger database, the blob folders and an audit log whose first record is the init itself.
// It refuses a folder that already holds a store or anything else. Each setup function
// runs on the open parts before they are closed (the portal's certificate is made so).
func Init(dir string, passphrase []byte, kdf vault.KDFParams, log *slog.Logger, setup ...func(p *Parts) error) error {
	if err := vault.CheckPassphrase(passphrase); err != nil {
		return fmt.Errorf("init %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	if _, err := vault.ReadSealedRoot(dir); err == nil {
		return fmt.Errorf("init %s: %w", dir, vault.ErrExists)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read data folder: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("init %s: the folder is not empty; init needs a new or empty folder", dir)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict data folder: %w", err)
	}
	if err := checkOwner(dir); err != nil {
		return err
	}
	root, err := vault.NewKey()
	if err != nil {
		return err
	}
	defer root.Wipe()
	sealed, err := vault.SealRoot(&root, passphrase, kdf)
	if err != nil {
		return err
	}
	// The root key file is written first: its exclusive create is what claims the folder.
	if err := vault.WriteSealedRoot(dir, sealed); err != nil {
		return fmt.Errorf("init %s: %w", dir, err)
	}
	p, err := open(dir, &root, log)
	if err != nil {
		return fmt.Errorf("init %s: %w", dir, err)
	}
	if _, err := p.Audit.Append(context.Background(), audit.Entry{UID: int64(os.Getuid()), Action: "store.init", Object: dir, Result: "ok"}, audit.Durable); err != nil {
		p.Close()
		return fmt.Errorf("init %s: write first audit record: %w", dir, err)
	}
	if err := p.Checkpoint(context.Background(), "init"); err != nil {
		p.Close()
		return fmt.Errorf("init %s: %w", dir, err)
	}
	for _, fn := range setup {
		if err := fn(p); err != nil {
			p.Close()
			return fmt.Errorf("init %s: %w", dir, err)
		}
	}
	return p.Close()
}

// rootPool keeps the root keys of open stores in secret memory: locked, out of core dumps.
var rootPool secmem.Pool[vault.Key]

// Parts are the open, unsealed parts of a store.
type Parts struct {
	// Root is the root key, in secret memory; nil after Close.
	Root *vault.Key
	// KV is the metadata store, every value sealed (kv.Sealed).
	KV    kv.Store
	Blobs blob.Store
	Audit *audit.Log
	// AuditRecovered says that opening the audit log cut away a torn final record left by a
	// crash; the daemon records that in the log itself.
	AuditRecovered bool

	// OnIntegrity, when set, is told of every metadata record that fails to authenticate
	// (after the store has audited it), with the record's class; the daemon counts it.
	OnIntegrity func(class string)

	blobs  *blob.Local // Blobs, for Close
	sealed *kv.Sealed  // KV
	epoch  epochState
}

// Options tune Unseal; the zero value is ready to use.
type Options struct {
	// Log receives the parts' warnings; nil means slog.Default().
	Log *slog.Logger
	// OnIntegrity, when set, is told of every part that fails to authenticate: a metadata
	// record (with its class), or parts that disagree at unseal ("store/epoch").
	OnIntegrity func(class string)
	// FreeSpaceFloor is the free space (bytes) on the data folder's disk below which no
	// new content object is written (blob.Local.SetFloor): room kept for the metadata and
	// the audit log, which must record the refusals. 0 means DefaultFreeSpaceFloor; a
	// negative value turns the floor off.
	FreeSpaceFloor int64
}

// DefaultFreeSpaceFloor is the free space kept for the metadata and the audit log when the
// disk fills up with file contents.
const DefaultFreeSpaceFloor = 128 << 20

// Unseal opens the root key of the store in dir with passphrase and opens every part with
// keys derived from it. A wrong passphrase gives vault.ErrWrongPassphrase and touches nothing.
// Parts that do not agree on the store's epoch (epoch.go) give an error wrapping
// ErrRollback, after an audit record of the refusal; opts.OnIntegrity is told too.
func Unseal(dir string, passphrase []byte, opts Options) (*Parts, error) {
	onIntegrity := opts.OnIntegrity
	root, err := OpenRoot(dir, passphrase)
	if err != nil {
		return nil, err
	}
	defer root.Wipe()
	p, err := open(dir, &root, opts.Log)
	if err == nil {
		switch floor := opts.FreeSpaceFloor; {
		case floor == 0:
			p.blobs.SetFloor(DefaultFreeSpaceFloor)
		case floor > 0:
			p.blobs.SetFloor(floor)
		}
	}
	if errors.Is(err, kv.ErrIntegrity) {
		// Badger refused a damaged table: the store cannot open, but the refusal is still
		// counted and recorded.
		if onIntegrity != nil {
			onIntegrity("meta")
		}
		recordRefusal(dir, &root, "unseal refused: "+err.Error())
	}
	if err != nil {
		return nil, err
	}
	p.OnIntegrity = onIntegrity
	if err := p.verifyEpoch(context.Background()); err != nil {
		if errors.Is(err, ErrRollback) {
			if onIntegrity != nil {
				onIntegrity("store/epoch")
			}
			_, _ = p.Audit.Append(context.Background(), audit.Entry{UID: -1, Action: "store.integrity", Result: "refused",
				Detail: "unseal refused: " + err.Error()}, audit.Durable)
		}
		p.Close()
		return nil, err
	}
	return p, nil
}

// recordRefusal appends a record of a refused unseal to the audit log alone, when the
// other parts could not be opened. It is best effort: the refusal stands either way.
func recordRefusal(dir string, root *vault.Key, detail string) {
	key := root.Derive(vault.PurposeAudit)
	defer key.Wipe()
	l, err := audit.Open(filepath.Join(dir, AuditDir), &key, audit.Options{})
	if err != nil {
		return
	}
	_, _ = l.Append(context.Background(), audit.Entry{UID: -1, Action: "store.integrity", Object: MetaDir, Result: "refused", Detail: detail}, audit.Durable)
	l.Close()
}

// OpenRoot reads the sealed root key of the store in dir and opens it with passphrase.
func OpenRoot(dir string, passphrase []byte) (vault.Key, error) {
	sealed, err := vault.ReadSealedRoot(dir)
	if err != nil {
		return vault.Key{}, err
	}
	return sealed.Open(passphrase)
}

func open(dir string, root *vault.Key, log *slog.Logger) (*Parts, error) {
	p := &Parts{Root: rootPool.Get()}
	*p.Root = *root
	p.epoch.key = root.Derive(vault.PurposeEpoch)
	p.epoch.blobDir = filepath.Join(dir, BlobDir)
	badgerKey := root.Derive(vault.PurposeBadger)
	defer badgerKey.Wipe()
	db, err := kv.OpenBadger(filepath.Join(dir, MetaDir), &badgerKey, kv.BadgerOptions{Logger: log})
	if err != nil {
		p.dropRoot()
		p.epoch.key.Wipe()
		return nil, fmt.Errorf("open metadata: %w", err)
	}
	sealKey := root.Derive(vault.PurposeKV)
	p.sealed, err = kv.Seal(db, &sealKey)
	sealKey.Wipe()
	if err != nil {
		db.Close()
		p.dropRoot()
		p.epoch.key.Wipe()
		return nil, fmt.Errorf("open metadata: %w", err)
	}
	p.sealed.OnIntegrity(p.integrityFailed)
	// Patch objects ride on the metadata commit that names them (blob/inline).
	carrier := kv.NewCarrier(p.sealed)
	p.KV = carrier
	blobs, err := blob.OpenLocal(filepath.Join(dir, BlobDir))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	// Spare files make closing a small new file one fsync cheaper; see blob.Local.
	blobs.KeepSpares()
	p.blobs = blobs
	// Small objects of small writes live in the metadata store, carried by the commit that
	// names them: a 4 KiB write and fsync costs one sync, not two.
	if p.Blobs, err = inline.New(context.Background(), carrier, blobs, inline.Options{}); err != nil {
		p.Close()
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	auditKey := root.Derive(vault.PurposeAudit)
	defer auditKey.Wipe()
	if p.Audit, err = audit.Open(filepath.Join(dir, AuditDir), &auditKey, audit.Options{Track: epochAction}); err != nil {
		p.Close()
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	p.AuditRecovered = p.Audit.Recovered()
	return p, nil
}

// Close closes every part and wipes the root key.
func (p *Parts) Close() error {
	var errs []error
	if p.Audit != nil {
		errs = append(errs, p.Audit.Close())
	}
	if c, ok := p.Blobs.(interface{ Close() error }); ok {
		errs = append(errs, c.Close()) // the inline store's spiller, which uses KV
	}
	if p.KV != nil {
		errs = append(errs, p.KV.Close())
	}
	if p.blobs != nil {
		errs = append(errs, p.blobs.Close())
	}
	p.dropRoot()
	p.epoch.key.Wipe()
	return errors.Join(errs...)
}

// dropRoot wipes the root key and gives its memory back, once.
func (p *Parts) dropRoot() {
	if p.Root != nil {
		p.Root.Wipe()
		rootPool.Put(p.Root)
		p.Root = nil
	}
}

// integrityFailed audits a metadata record that failed to authenticate, naming only its
// class (a key may hold a name), and tells OnIntegrity.
func (p *Parts) integrityFailed(key []byte) {
	class := kv.KeyClass(key)
	if p.Audit != nil {
		_, _ = p.Audit.Append(context.Background(), audit.Entry{UID: -1, Action: "store.integrity", Object: class,
			Result: "error", Detail: "a metadata record failed authentication"}, audit.Buffered)
	}
	if p.OnIntegrity != nil {
		p.OnIntegrity(class)
	}
}

// AuditKey derives the audit log key of the store in dir, for reading the log offline.
func AuditKey(dir string, passphrase []byte) (vault.Key, error) {
	root, err := OpenRoot(dir, passphrase)
	if err != nil {
		return vault.Key{}, err
	}
	defer root.Wipe()
	return root.Derive(vault.PurposeAudit), nil
}

// Lock is an exclusive hold on a data folder.
type Lock struct{ f *os.File }

// LockDir takes the data folder for this process. The lock is an flock, so it goes away
// when the process dies, whatever way it dies.
func LockDir(dir string) (*Lock, error) {
	if _, err := vault.ReadSealedRoot(dir); err != nil {
		return nil, fmt.Errorf("data folder %s: %w", dir, err)
	}
	if err := checkOwner(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
			return nil, fmt.Errorf("%w (%s, pid %d)", ErrLocked, dir, pid)
		}
		return nil, fmt.Errorf("%w (%s)", ErrLocked, dir)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release gives the data folder up.
func (l *Lock) Release() error {
	return l.f.Close()
}

// checkOwner refuses a data folder that another user owns or may enter: they could not read
// it, but they could delete files or put back an older copy (bringing back a removed member).
func checkOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("data folder %s: cannot read its owner", dir)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("data folder %s belongs to uid %d, not to this process (uid %d)", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("data folder %s is open to other users (mode %v); chmod 700 it", dir, fi.Mode().Perm())
	}
	return nil
}
