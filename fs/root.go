package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"dsh/acl"
	"dsh/meta"
	"dsh/metrics"
)

// shareRootMode is the mode of a share's root directory when it is first used.
const shareRootMode = 0o770

// rootNode is the mount's root. It lists, for each caller, only the shares that caller may
// open now; another share's name gives ENOENT, as if it did not exist.
type rootNode struct {
	gofs.Inode
	g *Group
}

var (
	_ gofs.NodeLookuper       = (*rootNode)(nil)
	_ gofs.NodeGetattrer      = (*rootNode)(nil)
	_ gofs.NodeOpendirHandler = (*rootNode)(nil)
	_ gofs.NodeStatfser       = (*rootNode)(nil)
	_ gofs.NodeAccesser       = (*rootNode)(nil)
)

// rootIno is the inode number the root reports; metadata inode numbers are far below it.
const rootIno = 1<<63 - 1

// Getattr shows the root as the caller's own read-only folder.
func (r *rootNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	uid, gid, _ := callerOf(ctx)
	// Its times are those of the mount: Windows Explorer shows them for the drive.
	t := uint64(r.g.mountedAt.Unix())
	out.Attr = fuse.Attr{Ino: rootIno, Mode: syscall.S_IFDIR | 0o555, Nlink: 2, Owner: fuse.Owner{Uid: uint32(uid), Gid: gid}, Blksize: blockSize,
		Atime: t, Mtime: t, Ctime: t}
	out.SetTimeout(0)
	return 0
}

// Access lets anyone list and enter the root; nobody writes into it.
func (r *rootNode) Access(ctx context.Context, mask uint32) syscall.Errno {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	if mask&2 != 0 {
		return syscall.EACCES
	}
	return 0
}

// Lookup finds a share the caller may open; for anyone else the name does not exist.
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer r.g.observe("lookup", time.Now(), &e)
	share := name
	if r.g.opts.Tree == acl.Arrivals {
		share = arrivalsPrefix + name
	}
	gr, e := r.g.check(ctx, share, acl.Read)
	if e != 0 {
		return nil, eHidden // observe answers ENOENT
	}
	a, err := gr.be.Meta.ShareRoot(ctx, share, shareRootMode)
	if err != nil {
		return nil, errno(r.g.log, "lookup", err)
	}
	fillAttr(&a, gr, -1, &out.Attr)
	// The gate of every walk into a share: this name is never cached, so the kernel asks
	// the daemon, as the walking uid, each time a path passes through it (revalidation),
	// and a uid that may not see the share gets ENOENT before the kernel looks at any name
	// cached inside it. Names inside may then be cached for long (EntryTimeout): they are
	// reached through this gate, or through a folder held open (a working directory, a
	// descriptor) from when the uid could see the share. Watches, O_PATH opens, statx with
	// AT_STATX_DONT_SYNC, access, chdir and xattr calls all walk through here.
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	return r.NewInode(ctx, &node{g: r.g, ino: a.Ino, share: share, kind: meta.KindDir},
		gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: uint64(a.Ino)}), 0
}

// OpendirHandle lists the caller's shares: those of its live session that the acl allows.
func (r *rootNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	h := &rootList{}
	be := r.g.backend()
	uid, _, ok := callerOf(ctx)
	if be == nil || !ok {
		return h, 0, 0
	}
	ring, ok := be.Sessions.Keyring(uid)
	if !ok {
		r.g.denied(metrics.ReasonNoSession)
		return h, 0, 0
	}
	if r.g.opts.Tree == acl.Arrivals {
		// The caller's own folder, named by its user ID, and nothing else.
		u, ok := be.ACL.UserByUID(uid)
		if !ok || !ring.HasArrivals() || !be.ACL.Decide(uid, acl.Arrivals, u.ID, acl.List).Allow {
			return h, 0, 0
		}
		a, err := be.Meta.ShareRoot(ctx, arrivalsPrefix+u.ID, shareRootMode)
		if err != nil {
			return nil, 0, errno(r.g.log, "readdir", err)
		}
		h.entries = append(h.entries, fuse.DirEntry{Name: u.ID, Mode: syscall.S_IFDIR, Ino: uint64(a.Ino)})
		return h, 0, 0
	}
	for _, sh := range be.ACL.SharesOf(uid) {
		if !ring.Has(sh.Share) {
			continue
		}
		a, err := be.Meta.ShareRoot(ctx, sh.Share, shareRootMode)
		if err != nil {
			return nil, 0, errno(r.g.log, "readdir", err)
		}
		h.entries = append(h.entries, fuse.DirEntry{Name: sh.Share, Mode: syscall.S_IFDIR, Ino: uint64(a.Ino)})
	}
	return h, 0, 0
}

// Statfs reports the data folder's disk.
func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	return r.g.statfs(ctx, out)
}

// rootList is a snapshot of the caller's shares, taken at opendir.
type rootList struct {
	entries []fuse.DirEntry
	pos     int
}

// Readdirent returns the next share.
func (l *rootList) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	if l.pos >= len(l.entries) {
		return nil, 0
	}
	de := l.entries[l.pos]
	l.pos++
	de.Off = uint64(l.pos)
	return &de, 0
}

// Seekdir moves to an offset handed out earlier.
func (l *rootList) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	l.pos = int(min(off, uint64(len(l.entries))))
	return 0
}

// statfs reports the disk under the data folder to a caller with a live session, and
// nothing but fixed figures to anyone else: free space changes with what members do, so it
// would tell an outsider that (and roughly how much) something happened. The store's own
// file count is never shown.
func (g *Group) statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.NameLen = 255
	out.Bsize, out.Frsize = blockSize, blockSize
	out.Ffree = 1 << 40
	out.Files = out.Ffree
	be := g.backend()
	uid, _, ok := callerOf(ctx)
	if be == nil || !ok {
		return 0
	}
	if _, live := be.Sessions.Keyring(uid); !live {
		return 0
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(g.opts.DataDir, &st); err != nil {
		return errno(g.log, "statfs", err)
	}
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
	return 0
}

// The root holds only the shares: nothing is created, linked or renamed into it.

// Mkdir is refused at the root.
func (r *rootNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	return nil, syscall.EACCES
}

// Create is refused at the root.
func (r *rootNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	return nil, nil, 0, syscall.EACCES
}

// Symlink is refused at the root.
func (r *rootNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	return nil, syscall.EACCES
}

// Mknod is refused at the root.
func (r *rootNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EACCES
}

// Unlink is refused at the root.
func (r *rootNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EACCES }

// Rmdir is refused at the root: a share goes away through its project, not by rmdir.
func (r *rootNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EACCES }

// Rename is refused at the root.
func (r *rootNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	return syscall.EACCES
}
