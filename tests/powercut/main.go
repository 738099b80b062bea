// Command powercut is a FUSE filesystem for testing what a power cut leaves on a disk, in
// the spirit of LazyFS: a loopback of a folder (go-fuse's) that keeps every write and every
// size change of a file in memory until an fsync or fdatasync of that file covers it, and
// only then writes it to the folder. Killing it with SIGKILL is the power cut: the folder
// holds exactly what was synced, and everything else is gone with the process (the
// kernel's dirty pages of the mount too: their connection is dead). The tests then mount a
// new powercut on the same folder and start dsh again.
//
// Reads see the unsynced writes, so that the program above works as on a disk with a page
// cache, memory-mapped files included (the kernel writes their dirty pages back as WRITE
// requests, and an msync is an FSYNC). What is kept follows ext4 with data=ordered and
// delayed allocation: written bytes, and the growth of a file by writing past its end,
// are lost unless synced; changes to names (create, mkdir, rename, link, unlink) and
// explicit size changes (truncate, fallocate) are metadata, which the journal commits
// soon after, so they reach the folder at once. The harness models lost data, not lost
// names.
//
//	powercut UNDERLYING MOUNTPOINT
//
// It prints "ready" once mounted. SIGUSR1 prints what is unsynced now ("unsynced N files
// M bytes"), for a test to report what a cut right after dropped. SIGTERM unmounts,
// dropping what is unsynced, as a cut does.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: powercut UNDERLYING MOUNTPOINT")
		os.Exit(2)
	}
	under, err := filepath.Abs(os.Args[1])
	if err != nil {
		fail(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(under, &st); err != nil {
		fail(err)
	}
	c := &cutter{files: map[fileKey]*pending{}}
	root := &gofs.LoopbackRoot{Path: under, Dev: uint64(st.Dev)}
	root.NewNode = func(r *gofs.LoopbackRoot, _ *gofs.Inode, _ string, _ *syscall.Stat_t) gofs.InodeEmbedder {
		return &node{LoopbackNode: gofs.LoopbackNode{RootData: r}, c: c}
	}
	rootNode := root.NewNode(root, nil, "", &st)
	root.RootNode = rootNode
	srv, err := gofs.Mount(os.Args[2], rootNode, &gofs.Options{MountOptions: fuse.MountOptions{
		AllowOther: true, FsName: "powercut", Name: "powercut", DirectMount: os.Geteuid() == 0, MaxWrite: 1 << 20,
	}})
	if err != nil {
		fail(err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	go func() {
		for s := range sigs {
			if s == syscall.SIGUSR1 {
				n, b := c.unsynced()
				fmt.Printf("unsynced %d files %d bytes\n", n, b)
				continue
			}
			srv.Unmount()
		}
	}()
	fmt.Println("ready")
	srv.Wait()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "powercut:", err)
	os.Exit(1)
}

const pageSize = 4096

// fileKey names a file of the underlying folder.
type fileKey struct{ dev, ino uint64 }

// pending is what was written to one file and not yet synced.
type pending struct {
	mu sync.Mutex
	// pages holds the whole content of each page written since the last sync, as the file
	// has it now.
	pages map[int64][]byte
	// size is the file's size as the program sees it; disk is its size in the folder,
	// which writes past the end do not change until a sync.
	size, disk int64
}

func (p *pending) dirty() bool { return len(p.pages) > 0 || p.size != p.disk }

// cutter holds the pending state of every file, shared by all handles of a file.
type cutter struct {
	mu    sync.Mutex
	files map[fileKey]*pending
}

// get returns the pending state of the file open as f, made from its size on disk.
func (c *cutter) get(f *os.File) (*pending, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	k := fileKey{uint64(st.Dev), st.Ino}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.files[k]
	if p == nil {
		p = &pending{pages: map[int64][]byte{}, size: st.Size, disk: st.Size}
		c.files[k] = p
	}
	return p, nil
}

// forget drops the state of the file at path, about to lose its last name: a new file may
// get its inode number.
func (c *cutter) forget(path string) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil || st.Nlink > 1 {
		return
	}
	c.mu.Lock()
	delete(c.files, fileKey{uint64(st.Dev), st.Ino})
	c.mu.Unlock()
}

// lookup returns the pending state of the file at path, if it has any.
func (c *cutter) lookup(path string) *pending {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.files[fileKey{uint64(st.Dev), st.Ino}]
}

func (c *cutter) unsynced() (files int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.files {
		p.mu.Lock()
		if p.dirty() {
			files++
			bytes += int64(len(p.pages)) * pageSize
		}
		p.mu.Unlock()
	}
	return files, bytes
}

// node is go-fuse's loopback node with files that keep their writes until a sync.
type node struct {
	gofs.LoopbackNode
	c *cutter
}

func (n *node) full() string { return filepath.Join(n.RootData.Path, n.Path(n.Root())) }

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC
	// O_TRUNC is a size change like any other: pending until a sync.
	trunc := flags&syscall.O_TRUNC != 0
	flags &^= syscall.O_TRUNC
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		flags = flags&^syscall.O_ACCMODE | syscall.O_RDWR // pages are read to be merged
	}
	f, err := os.OpenFile(n.full(), int(flags), 0)
	if err != nil {
		return nil, 0, gofs.ToErrno(err)
	}
	return n.handle(f, trunc)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	trunc := flags&syscall.O_TRUNC != 0
	flags &^= syscall.O_TRUNC
	ch, fh, fl, e := n.LoopbackNode.Create(ctx, name, flags&^syscall.O_ACCMODE|syscall.O_RDWR, mode, out)
	if e != 0 {
		return nil, nil, 0, e
	}
	// The loopback's handle is replaced by one of ours on the same file.
	fh.(gofs.FileReleaser).Release(ctx)
	f, err := os.OpenFile(filepath.Join(n.full(), name), os.O_RDWR, 0)
	if err != nil {
		return nil, nil, 0, gofs.ToErrno(err)
	}
	h, hfl, e := n.handle(f, trunc)
	return ch, h, fl | hfl, e
}

func (n *node) handle(f *os.File, trunc bool) (gofs.FileHandle, uint32, syscall.Errno) {
	p, err := n.c.get(f)
	if err != nil {
		f.Close()
		return nil, 0, gofs.ToErrno(err)
	}
	h := &handle{f: f, p: p}
	if trunc {
		p.mu.Lock()
		err := p.truncate(f, 0)
		p.mu.Unlock()
		if err != nil {
			f.Close()
			return nil, 0, gofs.ToErrno(err)
		}
	}
	return h, 0, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.c.forget(filepath.Join(n.full(), name))
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if np, ok := newParent.(*node); ok && flags&unix.RENAME_EXCHANGE == 0 {
		n.c.forget(filepath.Join(np.full(), newName))
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

// Getattr reports the size the program sees.
func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Getattr(ctx, out)
	}
	if e := n.LoopbackNode.Getattr(ctx, nil, out); e != 0 {
		return e
	}
	if p := n.c.lookup(n.full()); p != nil {
		p.mu.Lock()
		out.Size = uint64(p.size)
		p.mu.Unlock()
	}
	return 0
}

// Statx is refused, so that the kernel asks Getattr, which knows the pending size.
func (n *node) Statx(ctx context.Context, f gofs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return syscall.ENOSYS
}

// CopyFileRange is refused: the kernel then copies with reads and writes, which pass here.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Setattr applies a size change to the file's pending state and to the folder at once
// (metadata); the rest goes to the folder.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, hasSize := in.GetSize()
	if hasSize {
		in.Valid &^= fuse.FATTR_SIZE
		fl, err := os.OpenFile(n.full(), os.O_RDWR, 0)
		if h, ok := f.(*handle); ok {
			fl, err = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", h.f.Fd()), os.O_RDWR, 0)
		}
		if err != nil {
			return gofs.ToErrno(err)
		}
		defer fl.Close()
		p, err := n.c.get(fl)
		if err != nil {
			return gofs.ToErrno(err)
		}
		p.mu.Lock()
		err = p.truncate(fl, int64(size))
		p.mu.Unlock()
		if err != nil {
			return gofs.ToErrno(err)
		}
	}
	// The rest (mode, owner, times) by name, at once.
	if e := n.LoopbackNode.Setattr(ctx, nil, in, out); e != 0 {
		return e
	}
	return n.Getattr(ctx, f, out)
}

// handle is one open file; writes go to the file's pending state.
type handle struct {
	f *os.File
	p *pending
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileGetattrer = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
)

// page returns page i as the program sees it now, read from the folder when not pending.
// p.mu must be held.
func (h *handle) page(i int64) ([]byte, error) {
	if b := h.p.pages[i]; b != nil {
		return b, nil
	}
	b := make([]byte, pageSize)
	start := i * pageSize
	if start < h.p.disk {
		want := min(int64(pageSize), h.p.disk-start)
		n, err := h.f.ReadAt(b[:want], start)
		if err != nil && int64(n) < want && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	// Past the size nothing shows.
	if end := h.p.size - start; end < pageSize {
		clear(b[max(0, end):])
	}
	return b, nil
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	if off >= h.p.size {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), h.p.size-off)
	out := dest[:n]
	for done := int64(0); done < n; {
		pos := off + done
		i := pos / pageSize
		b, err := h.page(i)
		if err != nil {
			return nil, gofs.ToErrno(err)
		}
		done += int64(copy(out[done:], b[pos-i*pageSize:]))
	}
	return fuse.ReadResultData(out), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	for done := 0; done < len(data); {
		pos := off + int64(done)
		i := pos / pageSize
		b, err := h.page(i)
		if err != nil {
			return uint32(done), gofs.ToErrno(err)
		}
		h.p.pages[i] = b
		done += copy(b[pos-i*pageSize:], data[done:])
	}
	h.p.size = max(h.p.size, off+int64(len(data)))
	return uint32(len(data)), 0
}

// truncate sets the size, in the folder too (f is the file): pending pages past it go,
// the page it ends in is cut. p.mu must be held.
func (p *pending) truncate(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	for i, b := range p.pages {
		switch start := i * pageSize; {
		case start >= size:
			delete(p.pages, i)
		case start+pageSize > size:
			clear(b[size-start:])
		}
	}
	p.size, p.disk = size, size
	return nil
}

// Fsync writes the file's pending state to the folder and syncs it there.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	p := h.p
	idx := make([]int64, 0, len(p.pages))
	for i := range p.pages {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	for _, i := range idx {
		n := min(int64(pageSize), p.size-i*pageSize)
		if n <= 0 {
			continue
		}
		if _, err := h.f.WriteAt(p.pages[i][:n], i*pageSize); err != nil {
			return gofs.ToErrno(err)
		}
	}
	if err := h.f.Truncate(p.size); err != nil {
		return gofs.ToErrno(err)
	}
	if err := h.f.Sync(); err != nil {
		return gofs.ToErrno(err)
	}
	p.pages = map[int64][]byte{}
	p.disk = p.size
	return 0
}

// Flush (a close) makes nothing durable.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.f.Close()
	return 0
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(h.f.Fd()), &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStat(&st)
	h.p.mu.Lock()
	out.Size = uint64(h.p.size)
	out.Blocks = (out.Size + 511) / 512
	h.p.mu.Unlock()
	return 0
}

// Allocate reserves space in the folder at once (metadata), growing the size unless asked
// to keep it. Other modes (punching holes) are refused.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if mode&^unix.FALLOC_FL_KEEP_SIZE != 0 {
		return syscall.EOPNOTSUPP
	}
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	if err := unix.Fallocate(int(h.f.Fd()), mode, int64(off), int64(size)); err != nil {
		return gofs.ToErrno(err)
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && int64(off+size) > h.p.size {
		if int64(off+size) > h.p.disk {
			h.p.disk = int64(off + size)
		}
		h.p.size = int64(off + size)
	}
	return 0
}
