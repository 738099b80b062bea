package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"dsh/acl"
	"dsh/meta"
)

// dirPage is how many entries one metadata read fetches for a listing.
const dirPage = 256

// Offsets of a listing: 1 and 2 follow "." and ".."; an entry's metadata cookie c is
// offset c+2. Cookies stay valid while entries come and go, so a listing of a huge
// directory resumes exactly where it stopped.
const dotOffsets = 2

// dirHandle is one open directory.
type dirHandle struct {
	g     *Group
	share string
	ino   meta.Ino

	mu  sync.Mutex
	off uint64 // offset after the last entry handed out
	buf []fuse.DirEntry
	eof bool
}

// Readdirent returns the next entry, nil at the end. The caller is checked again at each
// page, so a listing in progress stops when access is revoked.
func (d *dirHandle) Readdirent(ctx context.Context) (_ *fuse.DirEntry, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.off {
	case 0:
		d.off = 1
		return &fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: uint64(d.ino), Off: 1}, 0
	case 1:
		d.off = 2
		return &fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Off: 2}, 0
	}
	if len(d.buf) == 0 && !d.eof {
		if e := d.fill(ctx); e != 0 {
			return nil, e
		}
	}
	if len(d.buf) == 0 {
		return nil, 0
	}
	de := d.buf[0]
	d.buf = d.buf[1:]
	d.off = de.Off
	return &de, 0
}

func (d *dirHandle) fill(ctx context.Context) (e syscall.Errno) {
	defer d.g.observe("readdir", time.Now(), &e)
	gr, e := d.g.check(ctx, d.share, acl.List)
	if e != 0 {
		return e
	}
	d.buf = d.buf[:0]
	seen := 0
	err := gr.be.Meta.ReadDir(ctx, d.ino, d.off-dotOffsets, func(de meta.Dirent) bool {
		seen++
		if !d.g.hidden(de.Name) {
			d.buf = append(d.buf, fuse.DirEntry{Name: de.Name, Mode: kindMode(de.Kind), Ino: uint64(de.Ino), Off: de.Off + dotOffsets})
		}
		return seen < dirPage
	})
	if err != nil {
		return errno(d.g.log, "readdir", err)
	}
	if seen < dirPage {
		d.eof = true
	}
	return 0
}

// Seekdir moves to an offset handed out earlier (0 is the start).
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	d.mu.Lock()
	defer d.mu.Unlock()
	d.off, d.buf, d.eof = off, d.buf[:0], false
	return 0
}

// Releasedir drops the listing.
func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

// Fsyncdir has nothing to do: every namespace change is committed before it returns.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }
