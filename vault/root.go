package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"dsh/internal/diskio"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Sentinel errors of the key hierarchy. Callers match them with errors.Is.
var (
	// ErrSealed is returned by every operation that needs the root key while the store is sealed.
	ErrSealed = errors.New("store is sealed")
	// ErrWrongPassphrase is returned when the unseal passphrase does not open the root key.
	ErrWrongPassphrase = errors.New("wrong unseal passphrase")
	// ErrExists is returned by init when the data folder already holds a store.
	ErrExists = errors.New("a dsh store already exists here")
	// ErrNoStore is returned when the data folder holds no store.
	ErrNoStore = errors.New("no dsh store here (run dsh init first)")
)

// rootFileVersion is the version of the sealed root key file; see FORMAT.md.
const rootFileVersion = 1

// KDFParams are the Argon2id parameters that turn the unseal passphrase into the key that
// seals the root key. They are stored with the sealed key so that they can be raised later
// without making old stores unreadable.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF is what init uses: RFC 9106's second recommended option (64 MiB, 3 passes),
// about a quarter of a second on the machines we run on; unsealing is rare, so it can afford it.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// SealedRoot is the root key encrypted under a passphrase-derived key, as stored in the
// data folder's root key file.
type SealedRoot struct {
	Version    int       `json:"version"`
	KDF        KDFParams `json:"kdf"`
	Salt       []byte    `json:"salt"`
	Nonce      []byte    `json:"nonce"`
	Ciphertext []byte    `json:"ciphertext"`
}

// rootAD binds the sealed root key to its purpose and format version.
var rootAD = []byte("dsh v1 sealed root key")

func (p KDFParams) derive(passphrase, salt []byte) Key {
	var k Key
	copy(k[:], argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, KeySize))
	return k
}

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > 100 || p.MemoryKiB < 8*1024 || p.MemoryKiB > 4*1024*1024 || p.Threads < 1 {
		return fmt.Errorf("unsupported argon2id parameters (time %d, memory %d KiB, threads %d)", p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// SealRoot encrypts root under a key derived from passphrase with params.
func SealRoot(root *Key, passphrase []byte, params KDFParams) (*SealedRoot, error) {
	if err := params.validate(); err != nil {
		return nil, err
	}
	if len(passphrase) == 0 {
		return nil, errors.New("the unseal passphrase is empty")
	}
	s := &SealedRoot{Version: rootFileVersion, KDF: params, Salt: make([]byte, 32), Nonce: make([]byte, chacha20poly1305.NonceSizeX)}
	if _, err := io.ReadFull(rand.Reader, s.Salt); err != nil {
		return nil, fmt.Errorf("seal root key: %w", err)
	}
	if _, err := io.ReadFull(rand.Reader, s.Nonce); err != nil {
		return nil, fmt.Errorf("seal root key: %w", err)
	}
	kek := params.derive(passphrase, s.Salt)
	defer kek.Wipe()
	aead, err := chacha20poly1305.NewX(kek[:])
	if err != nil {
		return nil, fmt.Errorf("seal root key: %w", err)
	}
	s.Ciphertext = aead.Seal(nil, s.Nonce, root[:], rootAD)
	return s, nil
}

// Open returns the root key, or ErrWrongPassphrase.
func (s *SealedRoot) Open(passphrase []byte) (Key, error) {
	if s.Version != rootFileVersion {
		return Key{}, fmt.Errorf("root key file version %d is not supported by this dsh", s.Version)
	}
	if err := s.KDF.validate(); err != nil {
		return Key{}, err
	}
	if len(s.Nonce) != chacha20poly1305.NonceSizeX || len(s.Ciphertext) != KeySize+chacha20poly1305.Overhead {
		return Key{}, errors.New("root key file is malformed")
	}
	kek := s.KDF.derive(passphrase, s.Salt)
	defer kek.Wipe()
	aead, err := chacha20poly1305.NewX(kek[:])
	if err != nil {
		return Key{}, fmt.Errorf("open root key: %w", err)
	}
	var root Key
	pt, err := aead.Open(root[:0], s.Nonce, s.Ciphertext, rootAD)
	if err != nil || len(pt) != KeySize {
		return Key{}, ErrWrongPassphrase
	}
	return root, nil
}

// Rules for a new unseal passphrase (init and rekey): long enough that Argon2id's cost
// matters, and not a repetition of a few characters. A passphrase of four random words
// passes; a word repeated does not.
const (
	MinPassphraseLen      = 16
	MinPassphraseDistinct = 8
)

// ErrWeakPassphrase is returned for a new unseal passphrase that breaks the rule.
var ErrWeakPassphrase = fmt.Errorf("the unseal passphrase must be at least %d characters long and use at least %d different characters (four random words will do)",
	MinPassphraseLen, MinPassphraseDistinct)

// CheckPassphrase checks a new unseal passphrase against the rule; it never says more
// about the passphrase than that it breaks the rule.
func CheckPassphrase(p []byte) error {
	runes := []rune(string(p))
	defer clear(runes)
	distinct := map[rune]struct{}{}
	for _, r := range runes {
		distinct[r] = struct{}{}
	}
	if len(runes) < MinPassphraseLen || len(distinct) < MinPassphraseDistinct {
		return ErrWeakPassphrase
	}
	return nil
}

// Rekey opens the root key file of dir with oldPass and replaces it with one that seals the
// same root key under newPass (fresh salt and nonce, the KDF parameters of params), so that
// the old passphrase stops opening it. check, when not nil, sees the root key before
// anything is written and may refuse (the daemon checks that it is the key it holds). The
// replacement is atomic and durable: after a crash either passphrase works, never neither.
func Rekey(dir string, oldPass, newPass []byte, params KDFParams, check func(root *Key) error) error {
	if err := CheckPassphrase(newPass); err != nil {
		return err
	}
	if bytes.Equal(oldPass, newPass) {
		return errors.New("the new unseal passphrase is the old one")
	}
	sealed, err := ReadSealedRoot(dir)
	if err != nil {
		return err
	}
	root, err := sealed.Open(oldPass)
	if err != nil {
		return err
	}
	defer root.Wipe()
	if check != nil {
		if err := check(&root); err != nil {
			return err
		}
	}
	next, err := SealRoot(&root, newPass, params)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("encode root key file: %w", err)
	}
	if err := diskio.WriteFileAtomic(filepath.Join(dir, RootFileName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("replace root key file: %w", err)
	}
	return nil
}

// RootFileName is the name of the sealed root key file inside a data folder.
const RootFileName = "root.key"

// WriteSealedRoot writes s as dir/root.key. It refuses to replace an existing file (Rekey
// replaces one, knowing the passphrase), and makes the file durable (fsync of file and
// folder) before returning.
func WriteSealedRoot(dir string, s *SealedRoot) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode root key file: %w", err)
	}
	path := filepath.Join(dir, RootFileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("write root key file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write root key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("sync root key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close root key file: %w", err)
	}
	return diskio.SyncDir(dir)
}

// ReadSealedRoot reads dir/root.key, or returns ErrNoStore.
func ReadSealedRoot(dir string) (*SealedRoot, error) {
	b, err := os.ReadFile(filepath.Join(dir, RootFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoStore
	}
	if err != nil {
		return nil, fmt.Errorf("read root key file: %w", err)
	}
	var s SealedRoot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("root key file %s is malformed: %w", filepath.Join(dir, RootFileName), err)
	}
	return &s, nil
}
