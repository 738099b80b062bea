package blob

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"dsh/internal/diskio"
)

// Layout under the folder given to OpenLocal. Objects are fanned out by their first byte so
// that no single folder grows past what ext4 and XFS list and look up comfortably.
const (
	objectsDir = "objects"
	tmpDir     = "tmp"
	tmpSuffix  = ".tmp"
	fileMode   = 0o600
	folderMode = 0o700
	// writeBufSize batches the caller's writes (FUSE hands over 128 KiB at most, often
	// 4 KiB) into few, large write syscalls without holding much of a big object in memory.
	writeBufSize = 256 << 10
)

var _ Store = (*Local)(nil)

// bufPool recycles write buffers: a store of many small objects would otherwise allocate
// a fresh 256 KiB for every one of them.
var bufPool = sync.Pool{
	New: func() any { return bufio.NewWriterSize(nil, writeBufSize) },
}

// Local is a Store in a folder of the local filesystem. Objects live at
// objects/<first two hex digits>/<id>. An object under a caller's ID is written under tmp/
// and renamed into place on commit. With KeepSpares, Local also keeps empty files ready
// under IDs it reserves (Reserver), created and made durable in batches sharing one fan-out
// folder, so that a commit under such an ID is one fsync of the file, not a create, a
// rename and two fsyncs: that is most of what closing a small new file costs. Reserved
// files stay hidden from Open, Stat and List until committed.
type Local struct {
	objects string
	tmp     string

	// fanoutMu serialises the first use of each fan-out folder; fanoutReady records which
	// ones this process has made durable, so later commits skip the extra fsync.
	fanoutMu    sync.Mutex
	fanoutReady [256]atomic.Bool

	// live holds the temporary files of this store's open Pendings, which CleanTemp must
	// not remove however idle they are.
	liveMu sync.Mutex
	live   map[string]struct{}

	// reserved holds the IDs this store handed out or keeps ready whose objects are not
	// committed: false while unclaimed, true once a Pending writes it in place.
	resMu    sync.RWMutex
	reserved map[ID]bool
	// spares holds reserved IDs whose empty files are durable, ready for Reserve; nil
	// unless KeepSpares was called. refilling is set while a refill runs; closed stops them.
	spares    chan ID
	refilling atomic.Bool
	spareMu   sync.Mutex
	refillWG  sync.WaitGroup
	closed    atomic.Bool

	// floor is the free space (bytes) that Create leaves on the disk; 0 for none.
	floor atomic.Int64
}

// SetFloor makes Create refuse new objects, with an error wrapping syscall.ENOSPC, while
// the disk under the store has less than bytes free for unprivileged use: room kept for
// what must still be written when the disk fills up, the metadata and the audit log that
// record the refusals. Writes go on again by themselves once space returns. 0 turns the
// floor off.
func (l *Local) SetFloor(bytes int64) { l.floor.Store(bytes) }

// checkFloor refuses a new object while the disk is below the floor. A disk whose free
// space cannot be read is let through: the write itself then finds out.
func (l *Local) checkFloor() error {
	floor := l.floor.Load()
	if floor <= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(l.objects, &st); err != nil {
		return nil
	}
	if free := int64(st.Bavail) * st.Bsize; free < floor {
		return fmt.Errorf("%w: %d MiB free on the disk, less than the %d MiB kept for the metadata and the audit log",
			syscall.ENOSPC, free>>20, floor>>20)
	}
	return nil
}

// OpenLocal opens the store in dir, creating dir, dir/objects and dir/tmp (mode 0700) if
// they are missing.
func OpenLocal(dir string) (*Local, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, folderMode); err != nil {
			return nil, fmt.Errorf("open blob store: %w", err)
		}
		if err := diskio.SyncDir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("open blob store: %w", err)
		}
	}
	l := &Local{
		objects:  filepath.Join(dir, objectsDir),
		tmp:      filepath.Join(dir, tmpDir),
		live:     make(map[string]struct{}),
		reserved: make(map[ID]bool),
	}
	for _, d := range []string{l.objects, l.tmp} {
		if err := os.Mkdir(d, folderMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("open blob store: %w", err)
		}
		fi, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("open blob store: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("open blob store: %s is not a folder", d)
		}
	}
	// Always sync: a previous run may have created the folders and died before doing so.
	if err := diskio.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	return l, nil
}

func (l *Local) fanout(id ID) string {
	return filepath.Join(l.objects, id.String()[:2])
}

func (l *Local) path(id ID) string {
	s := id.String()
	return filepath.Join(l.objects, s[:2], s)
}

// Create starts a new object: in its reserved file if id is an unclaimed reserved ID, else
// in a temporary file under tmp/.
func (l *Local) Create(ctx context.Context, id ID) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create object %s: %w", id, err)
	}
	if err := l.checkFloor(); err != nil {
		return nil, fmt.Errorf("create object %s: %w", id, err)
	}
	if l.claim(id) {
		// O_NOFOLLOW and no O_CREAT: only the file this store made is written to.
		f, err := os.OpenFile(l.path(id), os.O_WRONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			// Out of descriptors, say: the empty file must not linger as a visible object.
			l.dropSpares([]ID{id})
			return nil, fmt.Errorf("create object %s: reserved file: %w", id, err)
		}
		w := bufPool.Get().(*bufio.Writer)
		w.Reset(f)
		return &localPending{store: l, id: id, f: f, w: w, inPlace: true}, nil
	}
	if l.isReserved(id) {
		// A second writer of a reserved ID takes the ordinary way; its rename then finds
		// the reserved file and fails with ErrExists, as a second writer must.
		return l.createTemp(id)
	}
	// Fail early on a clash the caller can see now; Commit still refuses the rename if one
	// appears later, so this is a courtesy, not the guarantee.
	if _, err := os.Lstat(l.path(id)); err == nil {
		return nil, fmt.Errorf("create object %s: %w", id, ErrExists)
	}
	return l.createTemp(id)
}

func (l *Local) createTemp(id ID) (Pending, error) {
	// CreateTemp uses mode 0600 and O_EXCL; the ID in the name is only for an operator
	// looking at leftovers. The file is created under liveMu so that CleanTemp can never
	// see it on disk before it is marked live.
	l.liveMu.Lock()
	f, err := os.CreateTemp(l.tmp, id.String()+"-*"+tmpSuffix)
	if err == nil {
		l.live[f.Name()] = struct{}{}
	}
	l.liveMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("create object %s: %w", id, err)
	}
	w := bufPool.Get().(*bufio.Writer)
	w.Reset(f)
	return &localPending{store: l, id: id, f: f, w: w}, nil
}

// localPending writes one object. done is set by the first Commit or Abort; after that f
// and w belong to nobody (w is back in the pool).
type localPending struct {
	store *Local
	id    ID
	f     *os.File
	w     *bufio.Writer
	done  bool
	// inPlace says f is the object's reserved file under its final name, not a tmp/ file.
	inPlace bool
}

func (p *localPending) Write(b []byte) (int, error) {
	if p.done {
		return 0, fmt.Errorf("write object %s: %w", p.id, ErrFinished)
	}
	// bufio.Writer copies into its buffer and passes large writes straight through, so a
	// write costs no allocation and at most one syscall.
	n, err := p.w.Write(b)
	if err != nil {
		return n, fmt.Errorf("write object %s: %w", p.id, err)
	}
	return n, nil
}

func (p *localPending) Commit(ctx context.Context) error {
	if p.done {
		return fmt.Errorf("commit object %s: %w", p.id, ErrFinished)
	}
	p.done = true
	if p.inPlace {
		return p.commitInPlace(ctx)
	}
	tmp := p.f.Name()
	defer p.store.forget(tmp)
	if err := p.commit(ctx); err != nil {
		// The temporary file is only removed: if the rename happened, the object is out of
		// tmp/ and this fails harmlessly.
		os.Remove(tmp)
		return fmt.Errorf("commit object %s: %w", p.id, err)
	}
	return nil
}

func (p *localPending) commit(ctx context.Context) error {
	if err := p.finishFile(ctx); err != nil {
		return err
	}
	l := p.store
	if err := l.prepareFanout(p.id); err != nil {
		return err
	}
	if err := renameNoReplace(p.f.Name(), l.path(p.id)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return err
	}
	return diskio.SyncDir(l.fanout(p.id))
}

// commitInPlace finishes an object written into its reserved file. The folder entry was
// made durable before the ID was handed out, so the file's own fsync is all that is left;
// only then does the object become visible.
func (p *localPending) commitInPlace(ctx context.Context) error {
	if err := p.finishFile(ctx); err != nil {
		os.Remove(p.f.Name())
		p.store.unreserve(p.id)
		return fmt.Errorf("commit object %s: %w", p.id, err)
	}
	p.store.unreserve(p.id)
	return nil
}

// finishFile writes out what is buffered, makes the file durable and closes it; unless ctx
// is already done.
func (p *localPending) finishFile(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		err = p.w.Flush()
	}
	p.releaseBuffer()
	if err == nil {
		err = p.syncFile()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncFile stamps the commit time and makes contents and metadata durable.
func (p *localPending) syncFile() error {
	// The file's mtime is the time of its last write, which for a writer that paused
	// before committing could be long ago; ModTime must not make a fresh object look old
	// to the collector.
	now := time.Now()
	if err := os.Chtimes(p.f.Name(), now, now); err != nil {
		return err
	}
	// Contents (and mtime) must be on disk before the name is, or a crash could leave a
	// complete-looking object full of zeros.
	return p.f.Sync()
}

func (p *localPending) Abort() error {
	if p.done {
		return nil
	}
	p.done = true
	p.releaseBuffer()
	tmp := p.f.Name()
	p.f.Close()
	if p.inPlace {
		// Removed before the ID is released, so it never shows as a committed object.
		err := os.Remove(tmp)
		p.store.unreserve(p.id)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("abort object %s: %w", p.id, err)
		}
		return nil
	}
	defer p.store.forget(tmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("abort object %s: %w", p.id, err)
	}
	return nil
}

func (p *localPending) releaseBuffer() {
	// Drop the file reference so a pooled writer does not keep the descriptor reachable.
	p.w.Reset(nil)
	bufPool.Put(p.w)
	p.w = nil
}

func (l *Local) forget(tmp string) {
	l.liveMu.Lock()
	delete(l.live, tmp)
	l.liveMu.Unlock()
}

// prepareFanout makes sure the object's fan-out folder exists durably before anything is
// renamed into it. It syncs objects/ on the first use in this process even if the folder
// already existed: a run that crashed between mkdir and that sync would otherwise leave
// a folder whose entry could still vanish in a power cut, taking committed objects along.
func (l *Local) prepareFanout(id ID) error {
	if l.fanoutReady[id[0]].Load() {
		return nil
	}
	l.fanoutMu.Lock()
	defer l.fanoutMu.Unlock()
	if l.fanoutReady[id[0]].Load() {
		return nil
	}
	if err := os.Mkdir(l.fanout(id), folderMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := diskio.SyncDir(l.objects); err != nil {
		return err
	}
	l.fanoutReady[id[0]].Store(true)
	return nil
}

// renameNoReplace moves oldpath to newpath unless newpath exists, in which case it fails
// with an error matching fs.ErrExist. A plain rename would silently replace an object,
// breaking immutability.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		// The kernel or filesystem lacks RENAME_NOREPLACE (older NFS, some FUSE
		// filesystems); link refuses an existing target just the same.
		return linkNoReplace(oldpath, newpath)
	default:
		return &os.LinkError{Op: "renameat2", Old: oldpath, New: newpath, Err: err}
	}
}

// linkNoReplace is the fallback for renameNoReplace. A crash between link and unlink leaves
// a second name in tmp/, which CleanTemp removes; the object itself is already whole.
func linkNoReplace(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	if err := os.Remove(oldpath); err != nil {
		return err
	}
	return nil
}

// Open opens a committed object.
func (l *Local) Open(ctx context.Context, id ID) (Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open object %s: %w", id, err)
	}
	if l.isReserved(id) {
		return nil, fmt.Errorf("open object %s: %w", id, ErrNotFound)
	}
	// O_NOFOLLOW: the layout never holds symlinks, so one planted there must not redirect
	// reads elsewhere.
	f, err := os.OpenFile(l.path(id), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open object %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open object %s: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open object %s: %w", id, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open object %s: not a regular file", id)
	}
	return &localObject{f: f, size: fi.Size()}, nil
}

// localObject reads through os.File, whose ReadAt uses pread and so is safe from many
// goroutines at once. The size is fixed at open: objects never change.
type localObject struct {
	f    *os.File
	size int64
}

func (o *localObject) ReadAt(b []byte, off int64) (int, error) { return o.f.ReadAt(b, off) }
func (o *localObject) Size() int64                             { return o.size }
func (o *localObject) Close() error                            { return o.f.Close() }

// Stat describes a committed object.
func (l *Local) Stat(ctx context.Context, id ID) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("stat object %s: %w", id, err)
	}
	if l.isReserved(id) {
		return Info{}, fmt.Errorf("stat object %s: %w", id, ErrNotFound)
	}
	fi, err := os.Lstat(l.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("stat object %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("stat object %s: %w", id, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat object %s: not a regular file", id)
	}
	return Info{ID: id, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes a committed object. It does not sync the folder; see Store.Delete.
func (l *Local) Delete(ctx context.Context, id ID) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete object %s: %w", id, err)
	}
	if l.release(id) {
		return fmt.Errorf("delete object %s: %w", id, ErrNotFound)
	}
	// Fan-out folders are never removed, even when empty, so that Delete cannot race a
	// Commit that is about to rename into one.
	err := os.Remove(l.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete object %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete object %s: %w", id, err)
	}
	return nil
}

// List calls fn for every committed object. Names under objects/ that are not an ID in its
// own fan-out folder are skipped, so stray files (an operator's notes, a restore gone
// wrong) can neither break collection nor be mistaken for objects.
func (l *Local) List(ctx context.Context, fn func(Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	// At most 256 valid entries, so reading them all at once is fine.
	entries, err := os.ReadDir(l.objects)
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !isFanoutName(e.Name()) {
			continue
		}
		if err := l.listFanout(ctx, e.Name(), fn); err != nil {
			return err
		}
	}
	return nil
}

// listBatch bounds memory when a fan-out folder holds millions of entries.
const listBatch = 1024

func (l *Local) listFanout(ctx context.Context, name string, fn func(Info) error) error {
	d, err := os.Open(filepath.Join(l.objects, name))
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list objects: %w", err)
		}
		entries, err := d.ReadDir(listBatch)
		for _, e := range entries {
			id, perr := ParseID(e.Name())
			if perr != nil || e.Name()[:2] != name || !e.Type().IsRegular() || l.isReserved(id) {
				continue
			}
			fi, ierr := e.Info()
			if errors.Is(ierr, fs.ErrNotExist) {
				continue // deleted since the folder was read
			}
			if ierr != nil {
				return fmt.Errorf("list objects: %w", ierr)
			}
			if ferr := fn(Info{ID: id, Size: fi.Size(), ModTime: fi.ModTime()}); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("list objects: %w", err)
		}
	}
}

func isFanoutName(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CleanTemp removes temporary files left by writers that never committed or aborted,
// typically because the process crashed, if they were last written more than olderThan
// ago. Files of this store's own open Pendings are kept however old. It returns how many
// files it removed. With olderThan 0 every leftover goes, which is right at startup. A
// Pending of another store on the same folder whose file is removed fails at Commit;
// nothing half-written ever becomes visible.
func (l *Local) CleanTemp(olderThan time.Duration) (int, error) {
	entries, err := os.ReadDir(l.tmp)
	if err != nil {
		return 0, fmt.Errorf("clean temporary objects: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("clean temporary objects: %w", err)
		}
		if olderThan > 0 && !fi.ModTime().Before(cutoff) {
			continue
		}
		ok, err := l.removeIfDead(filepath.Join(l.tmp, e.Name()))
		if err != nil {
			return removed, fmt.Errorf("clean temporary objects: %w", err)
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

// removeIfDead removes a temporary file unless an open Pending of this store owns it. The
// check and the removal happen under liveMu, which Create also holds while creating.
func (l *Local) removeIfDead(path string) (bool, error) {
	l.liveMu.Lock()
	defer l.liveMu.Unlock()
	if _, live := l.live[path]; live {
		return false, nil
	}
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
