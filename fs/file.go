package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"dsh/acl"
	"dsh/content"
	"dsh/meta"
	"dsh/vault"
)

// openFile is the live data of one inode, shared by all its open handles, so that every
// handle (and getattr) sees the writes of the others before they are flushed.
type openFile struct {
	ino   meta.Ino
	share string
	be    *Backend
	f     *content.File
	refs  int // guarded by the table shard's lock
	// orphan says the file lost (or, after a failed commit, may have lost) its last name
	// while open, so the last release asks meta to reap it; meta keeps a file that still
	// has a name. Guarded by the table shard's lock, which orders it against that release.
	orphan bool
	// detached is set when a seal closed the data under its handles; they fail from
	// then on and their release has nothing left to do.
	detached atomic.Bool
	// unsynced is set while the file's create (meta.CreateOpen) may not be durable yet;
	// the first durable commit of its content clears it (commitTo), else flush syncs.
	unsynced atomic.Bool
	// openers are the handles open on the file, each acting for its opener's uid; when
	// none of them may read the file any more, its key and decrypted data are dropped
	// (Group.AccessEnded). Guarded by the table shard's lock.
	openers map[*handle]struct{}
}

// flush writes out the file's data and returns once the file is durable, its create
// included.
func (of *openFile) flush(ctx context.Context) error {
	if err := of.f.Flush(ctx); err != nil {
		return err
	}
	if !of.unsynced.Load() {
		return nil
	}
	if err := of.be.Meta.Sync(ctx); err != nil {
		return err
	}
	of.unsynced.Store(false)
	return nil
}

// fileTable maps inodes to their open data. It is sharded so that opens of different
// files do not contend on one lock; reads and writes never touch it.
type fileTable struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[meta.Ino]*openFile
	}
}

func (t *fileTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[meta.Ino]*openFile)
	}
}

func (t *fileTable) shard(ino meta.Ino) *struct {
	mu sync.Mutex
	m  map[meta.Ino]*openFile
} {
	return &t.shards[uint64(ino)%uint64(len(t.shards))]
}

// acquire returns the open data of ino, opening it with open on first use.
func (t *fileTable) acquire(ino meta.Ino, open func() (*openFile, error)) (*openFile, error) {
	s := t.shard(ino)
	s.mu.Lock()
	defer s.mu.Unlock()
	if of := s.m[ino]; of != nil {
		of.refs++
		return of, nil
	}
	of, err := open()
	if err != nil {
		return nil, err
	}
	of.refs = 1
	s.m[ino] = of
	return of, nil
}

// addOpener and removeOpener keep of.openers.
func (t *fileTable) addOpener(of *openFile, h *handle) {
	s := t.shard(of.ino)
	s.mu.Lock()
	defer s.mu.Unlock()
	if of.openers == nil {
		of.openers = make(map[*handle]struct{})
	}
	of.openers[h] = struct{}{}
}

func (t *fileTable) removeOpener(of *openFile, h *handle) {
	s := t.shard(of.ino)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(of.openers, h)
}

// openFiles returns every open file with the openers it has now.
func (t *fileTable) openFiles() map[*openFile][]*handle {
	out := make(map[*openFile][]*handle)
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, of := range s.m {
			hs := make([]*handle, 0, len(of.openers))
			for h := range of.openers {
				hs = append(hs, h)
			}
			out[of] = hs
		}
		s.mu.Unlock()
	}
	return out
}

// release drops one reference; the last one flushes and closes the data, and reports
// whether the file was orphaned meanwhile.
func (t *fileTable) release(ctx context.Context, of *openFile) (last, orphan bool, err error) {
	s := t.shard(of.ino)
	s.mu.Lock()
	defer s.mu.Unlock()
	of.refs--
	if of.refs > 0 || of.detached.Load() {
		return false, false, nil
	}
	delete(s.m, of.ino)
	err = of.flush(ctx)
	if n := of.f.Close(); n > 0 && err == nil {
		err = errors.New("unflushed data discarded")
	}
	return true, of.orphan, err
}

// markOrphan records that ino lost its last name, if it is open, and reports whether it
// was: then its last release reaps it, else the caller must.
func (t *fileTable) markOrphan(ino meta.Ino) bool {
	s := t.shard(ino)
	s.mu.Lock()
	defer s.mu.Unlock()
	of := s.m[ino]
	if of == nil {
		return false
	}
	of.orphan = true
	return true
}

func (t *fileTable) get(ino meta.Ino) *openFile {
	s := t.shard(ino)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[ino]
}

// liveSize is the size of an open file including unflushed writes, or -1 if not open.
func (t *fileTable) liveSize(ino meta.Ino) int64 {
	if of := t.get(ino); of != nil {
		return of.f.Size()
	}
	return -1
}

// flush writes out ino's unflushed data, if it is open.
func (t *fileTable) flush(ctx context.Context, ino meta.Ino) error {
	if of := t.get(ino); of != nil {
		return of.flush(ctx)
	}
	return nil
}

// closeAll flushes and closes every open file, at seal: their handles fail from then on.
func (t *fileTable) closeAll(ctx context.Context, log *slog.Logger) (closed int, first error) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for ino, of := range s.m {
			of.detached.Store(true)
			err := of.flush(ctx)
			if n := of.f.Close(); n > 0 {
				log.Error("group tree: unflushed data lost at seal", "ino", ino, "bytes", n, "err", err)
			}
			if err != nil && first == nil {
				first = err
			}
			delete(s.m, ino)
			closed++
		}
		s.mu.Unlock()
	}
	return closed, first
}

// contentSegments is the segment list of a's content in the form package content takes.
func contentSegments(a *meta.Attr) []content.Segment {
	segs := make([]content.Segment, len(a.Content.Segments))
	for i, s := range a.Content.Segments {
		segs[i] = content.Segment{Index: s.Index, Object: s.Object}
	}
	return segs
}

// openData opens the content of a file for gr's backend.
func (g *Group) openData(gr grant, a *meta.Attr) (*openFile, error) {
	be, ino := gr.be, a.Ino
	id, wrapped := a.Content.FileID, a.Content.Key
	layout, err := layoutOf(context.Background(), be, a)
	if err != nil {
		return nil, err
	}
	of := &openFile{ino: ino, share: gr.share, be: be}
	err = gr.useKey(func(k *vault.Key) (err error) {
		of.f, err = be.Content.Open(gr.share, k, id, wrapped, a.Size, nil, commitTo(be, ino, id, wrapped, &of.unsynced),
			content.WithSeals(a.Content.Seals), content.WithLayout(layout))
		return err
	})
	if err != nil {
		return nil, err
	}
	if g.tree != nil {
		g.tree.OpenFiles.Inc()
	}
	return of, nil
}

// commitTo records a flushed state of a file's data in the metadata of inode ino: the
// moment the new objects become the file's content. That commit is durable, and with it
// every earlier change, the file's create too: it clears unsynced, if given.
func commitTo(be *Backend, ino meta.Ino, id vault.FileID, wrapped vault.WrappedKey, unsynced *atomic.Bool) content.CommitFunc {
	return func(ctx context.Context, st content.Staged) error {
		_, err := be.Meta.SetContent(ctx, ino, st.Size, metaContent(id, wrapped, st), time.Now().UnixNano())
		if err == nil && unsynced != nil {
			unsynced.Store(false)
		}
		return err
	}
}

// ensureKey gives the file its content key back, with gr's share key, if AccessEnded
// dropped it while no opener could read it.
func (of *openFile) ensureKey(gr grant) error {
	if !of.f.Locked() {
		return nil
	}
	return gr.useKey(func(k *vault.Key) error { return of.f.Unlock(k) })
}

// AccessEnded is called after sessions ended or lost keys (logout, disable, expiry,
// removal from a share): every open file none of whose openers may read it now loses its
// content key and decrypted read-ahead, after what was written to it is flushed; a file
// that some opener still reads only loses its read-ahead windows, which may have been
// decrypted for the one who lost access. The next use by an opener with access unwraps
// the key again.
func (g *Group) AccessEnded(ctx context.Context) {
	for of, hs := range g.files.openFiles() {
		if of.detached.Load() {
			continue
		}
		allowed, denied := 0, 0
		for _, h := range hs {
			if _, e, _ := g.decide(h.uid, h.gid, h.n.share, acl.Read); e == 0 {
				allowed++
			} else {
				denied++
			}
		}
		switch {
		case allowed == 0 && len(hs) > 0:
			if of.f.Locked() {
				continue
			}
			if err := of.f.Forget(ctx); err != nil {
				g.log.Error("group tree: could not drop the key of a file nobody may read; it is kept until the next try", "err", err)
			} else if g.met != nil {
				g.met.FileKeysDropped.Inc()
			}
		case denied > 0:
			of.f.DropReadAhead()
		}
	}
}

// truncate sets a file's size, through its open data if it is open.
func (g *Group) truncate(ctx context.Context, gr grant, a *meta.Attr, size int64) error {
	of, err := g.files.acquire(a.Ino, func() (*openFile, error) { return g.openData(gr, a) })
	if err != nil {
		return err
	}
	if err := of.ensureKey(gr); err != nil {
		g.closeData(ctx, of)
		return err
	}
	err = of.f.Truncate(ctx, size)
	if err == nil {
		err = of.f.Flush(ctx)
	}
	if _, rerr := g.closeData(ctx, of); err == nil {
		err = rerr
	}
	return err
}

// closeData releases one reference to of and reaps the inode if it was deleted meanwhile.
func (g *Group) closeData(ctx context.Context, of *openFile) (bool, error) {
	last, orphan, err := g.files.release(ctx, of)
	if !last {
		return false, err
	}
	if g.tree != nil {
		g.tree.OpenFiles.Dec()
	}
	// Every way a name goes (unlink, rename over, expiry) passes reapIfUnused, which marks
	// the open file; no metadata read is needed to know. An orphan missed by a crash is
	// reaped at the next attach.
	if orphan {
		if rerr := of.be.Meta.Reap(ctx, of.ino); rerr != nil {
			g.log.Error("group tree: reap deleted file", "err", rerr)
		}
	}
	return true, err
}

// markIfNamed handles an unlink or rename that failed after its commit may have been
// applied (a failed sync): if the file the name held is open, its last close reaps it,
// which meta refuses while the file still has a name.
func (g *Group) markIfNamed(parent *node, name string) {
	if ch := parent.GetChild(name); ch != nil {
		g.files.markOrphan(meta.Ino(ch.StableAttr().Ino))
	}
}

// reapIfUnused deletes an inode that lost its last name, unless it is still open (then
// the last close does it).
func (g *Group) reapIfUnused(ctx context.Context, be *Backend, ino meta.Ino, nlink uint32) {
	if nlink != 0 || g.files.markOrphan(ino) {
		return
	}
	if err := be.Meta.Reap(ctx, ino); err != nil {
		g.log.Error("group tree: reap deleted file", "err", err)
	}
}

// Open opens a file. Writing needs the acl's write permission and the file's write bit;
// O_TRUNC truncates through the same path as setattr.
func (n *node) Open(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("open", time.Now(), &e)
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	op := acl.Read
	if write {
		op = acl.Write
	}
	gr, e := n.g.check(ctx, n.share, op)
	if e != 0 {
		n.g.recordDenied(ctx, "fs.open", n.path())
		return nil, 0, e
	}
	a, err := gr.be.Meta.GetAttr(ctx, n.ino)
	if err != nil {
		return nil, 0, errno(n.g.log, "open", err)
	}
	if a.Kind != meta.KindFile {
		return nil, 0, syscall.EISDIR
	}
	if write && !writable(&a) {
		n.g.recordDenied(ctx, "fs.open", n.path())
		return nil, 0, syscall.EACCES
	}
	detail := "read"
	if write {
		detail = "write"
	}
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		// O_TRUNC destroys the content: this record, written before, accounts for it.
		detail = "write, truncate"
	}
	if e := n.g.record(ctx, gr.be, "fs.open", n.path(), "ok", detail); e != 0 {
		return nil, 0, e
	}
	return n.g.newHandle(ctx, n, gr, &a, flags)
}

// Create makes a new file and opens it.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, _ gofs.FileHandle, _ uint32, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("create", time.Now(), &e)
	gr, e := n.changeIn(ctx, acl.Write)
	if e != 0 {
		n.g.recordDenied(ctx, "fs.create", n.child(name))
		return nil, nil, 0, e
	}
	var id vault.FileID
	var wrapped vault.WrappedKey
	err := gr.useKey(func(k *vault.Key) (err error) {
		id, wrapped, err = gr.be.Content.NewFile(gr.share, k)
		return err
	})
	if err != nil {
		return nil, nil, 0, errno(n.g.log, "create", err)
	}
	var a meta.Attr
	// The create does not wait for the disk: the handle's flush (every close(2)) makes it
	// durable together with the data written, at one sync for both.
	if e := n.g.change(ctx, gr.be, "fs.create", n.child(name), "", "create", func() (err error) {
		a, err = gr.be.Meta.CreateOpen(ctx, n.ino, name, mode&0o7777, meta.Content{FileID: id, Key: wrapped})
		return err
	}); e != 0 {
		return nil, nil, 0, e
	}
	ch := n.newChild(ctx, &a)
	// The new file is opened for writing whatever its mode, as open(2) with O_CREAT does.
	fh, fl, e := n.g.newHandle(ctx, ch.Operations().(*node), gr, &a, flags&^syscall.O_TRUNC)
	if e != 0 {
		// No handle will flush it: make the file durable here, as a create always was.
		if err := gr.be.Meta.Sync(ctx); err != nil {
			n.g.log.Error("group tree: sync after a failed open of a new file", "err", err)
		}
		return nil, nil, 0, e
	}
	fh.(*handle).of.unsynced.Store(true)
	// Even a read-only create must flush at close(2): that is when it becomes durable.
	fl &^= fuse.FOPEN_NOFLUSH
	n.entry(&a, gr, out)
	return ch, fh, fl, 0
}

// newHandle opens the file's data and returns a handle. Every handle uses direct I/O: the
// kernel's page cache is shared by all uids, and a page cached for one member must not be
// served to a uid whose access was revoked while it held the file open.
func (g *Group) newHandle(ctx context.Context, n *node, gr grant, a *meta.Attr, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	of, err := g.files.acquire(a.Ino, func() (*openFile, error) { return g.openData(gr, a) })
	if err != nil {
		return nil, 0, errno(g.log, "open", err)
	}
	h := &handle{g: g, n: n, of: of, uid: gr.uid, gid: gr.gid}
	g.files.addOpener(of, h)
	if err := of.ensureKey(gr); err != nil {
		g.files.removeOpener(of, h)
		g.closeData(ctx, of)
		return nil, 0, errno(g.log, "open", err)
	}
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		if err := of.f.Truncate(ctx, 0); err != nil {
			g.files.removeOpener(of, h)
			g.closeData(ctx, of)
			return nil, 0, errno(g.log, "open", err)
		}
	}
	fl := uint32(fuse.FOPEN_DIRECT_IO)
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		// A read-only handle has nothing to make durable at close: spare the FLUSH
		// round trip that every close(2) would otherwise cost.
		fl |= fuse.FOPEN_NOFLUSH
	}
	return h, fl, 0
}

// handle is one open file description. It acts for the uid that opened it: the kernel
// issues reads and writes on a handle from other contexts than the opener's (writeback of
// mapped pages from its flusher thread as uid 0, whoever calls sync, Samba's I/O threads),
// so the uid in a request's header says nothing about who the I/O is for.
type handle struct {
	g   *Group
	n   *node
	of  *openFile
	uid int
	gid uint32

	mu     sync.Mutex
	closed bool
	// deniedAudited is set once a refused read or write on this handle has been audited:
	// the kernel retries writeback of a mapped page, and one record per handle says it.
	deniedAudited atomic.Bool
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
)

// fallocate(2) modes dsh serves; COLLAPSE_RANGE and INSERT_RANGE are EOPNOTSUPP, as on
// many local filesystems.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// Allocate serves fallocate(2): mode 0 and KEEP_SIZE grow the file (or do nothing: dsh
// stores nothing ahead), PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE make a range read as zeros.
// A range that destroys content is audited before it is made, as a truncation is.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer h.g.observe("fallocate", time.Now(), &e)
	if e := h.live(ctx, acl.Write); e != 0 {
		return e
	}
	if off > 1<<62 || size > 1<<62 {
		return syscall.EFBIG
	}
	f, o, n := h.of.f, int64(off), int64(size)
	var err error
	switch mode {
	case 0, fallocKeepSize:
		err = f.Allocate(ctx, o, n, mode&fallocKeepSize != 0)
	case fallocPunchHole | fallocKeepSize, fallocZeroRange, fallocZeroRange | fallocKeepSize:
		if e := h.g.recordFor(ctx, h.of.be, h.uid, "fs.punch", h.n.path(), "ok", fmt.Sprintf("%d bytes at %d", n, o)); e != 0 {
			return e
		}
		if mode&fallocKeepSize == 0 {
			err = f.Allocate(ctx, o, n, false)
		}
		if err == nil {
			err = f.PunchHole(ctx, o, n)
		}
	default:
		return syscall.EOPNOTSUPP
	}
	return errno(h.g.log, "fallocate", err)
}

// live checks the opener again, at this moment, and that the handle's data is still the
// attached backend's: revocation, logout, expiry and seal reach handles that are already
// open. A refusal is audited once per handle, naming the opener.
func (h *handle) live(ctx context.Context, op acl.Op) syscall.Errno {
	gr, e := h.g.checkAs(h.uid, h.gid, h.n.share, op)
	if e == 0 && gr.be == h.of.be && !h.of.detached.Load() {
		if err := h.of.ensureKey(gr); err != nil {
			return errno(h.g.log, "open", err)
		}
	}
	if e != 0 {
		if !h.deniedAudited.Swap(true) {
			action := "fs.read"
			if op == acl.Write {
				action = "fs.write"
			}
			_ = h.g.recordFor(ctx, h.g.backend(), h.uid, action, h.n.path(), "denied", "open handle")
		}
		return syscall.EACCES // an open handle is refused, not made to vanish
	}
	if gr.be != h.of.be {
		return syscall.EACCES
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed || h.of.detached.Load() {
		return syscall.EACCES
	}
	return 0
}

// Read reads at off; a failed integrity check is EIO, counted and audited.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (_ fuse.ReadResult, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer h.g.observe("read", time.Now(), &e)
	if e := h.live(ctx, acl.Read); e != 0 {
		return nil, e
	}
	n, err := h.of.f.ReadAt(ctx, dest, off)
	if err != nil {
		if errors.Is(err, content.ErrIntegrity) {
			h.g.integrityError(ctx, h.of.be, h.n.path(), err)
		}
		return nil, errno(h.g.log, "read", err)
	}
	if h.g.tree != nil {
		h.g.tree.ReadBytes.Add(float64(n))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write writes at off into the file's unflushed data.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (_ uint32, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer h.g.observe("write", time.Now(), &e)
	if e := h.live(ctx, acl.Write); e != 0 {
		return 0, e
	}
	n, err := h.of.f.WriteAt(ctx, data, off)
	if h.g.tree != nil && n > 0 {
		h.g.tree.WrittenBytes.Add(float64(n))
	}
	if err != nil {
		return uint32(n), errno(h.g.log, "write", err)
	}
	return uint32(n), 0
}

// Flush runs at every close(2): the data written so far becomes durable before close
// returns, so a closed file survives a crash.
func (h *handle) Flush(ctx context.Context) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer h.g.observe("flush", time.Now(), &e)
	if h.of.detached.Load() {
		return 0 // the seal flushed it
	}
	// An opener whose access ended is told so; what it wrote while it had access stays
	// buffered and becomes durable at the file's last release (or at seal), never lost.
	if e := h.live(ctx, acl.Read); e != 0 {
		return e
	}
	return errno(h.g.log, "flush", h.of.flush(ctx))
}

// Fsync makes the data durable.
func (h *handle) Fsync(ctx context.Context, flags uint32) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer h.g.observe("fsync", time.Now(), &e)
	if e := h.live(ctx, acl.Read); e != 0 {
		return e
	}
	return errno(h.g.log, "fsync", h.of.flush(ctx))
}

// Release drops the handle; the last one closes the file's data.
func (h *handle) Release(ctx context.Context) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer h.g.observe("release", time.Now(), &e)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return 0
	}
	h.closed = true
	h.mu.Unlock()
	h.g.files.removeOpener(h.of, h)
	_, err := h.g.closeData(context.WithoutCancel(ctx), h.of)
	return errno(h.g.log, "release", err)
}

// integrityError counts and audits content that failed authentication.
func (g *Group) integrityError(ctx context.Context, be *Backend, path string, err error) {
	if g.met != nil {
		g.met.IntegrityErrors.Inc()
	}
	g.log.Error("group tree: stored content failed its integrity check", "err", err)
	_ = g.record(ctx, be, "fs.integrity", path, "error", "content failed authentication")
}
