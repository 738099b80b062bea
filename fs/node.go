package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"dsh/acl"
	"dsh/meta"
)

// node is a directory, file or symlink inside a share (the share's root directory too).
// It holds only identifiers: attributes are read from the metadata on every call, so no
// state cached for one uid can reach another.
type node struct {
	gofs.Inode
	g     *Group
	ino   meta.Ino
	share string
	kind  meta.Kind
}

var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeAccesser       = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeSetxattrer     = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ gofs.NodeRemovexattrer  = (*node)(nil)
)

// path is the node's path from the mount root ("share/dir/file"), for audit records.
func (n *node) path() string { return n.Path(nil) }

func (n *node) child(name string) string { return n.path() + "/" + name }

// newChild returns the kernel-facing inode of a; go-fuse reuses the existing one when the
// inode number is already known (a hard link, a second lookup).
func (n *node) newChild(ctx context.Context, a *meta.Attr) *gofs.Inode {
	return n.NewInode(ctx, &node{g: n.g, ino: a.Ino, share: n.share, kind: a.Kind},
		gofs.StableAttr{Mode: kindMode(a.Kind), Ino: uint64(a.Ino)})
}

// entry fills an EntryOut for a child. Names inside a share may be cached for a moment
// (every operation is checked anyway); attributes never are, because each uid sees itself
// as the owner.
func (n *node) entry(a *meta.Attr, gr grant, out *fuse.EntryOut) {
	fillAttr(a, gr, n.g.files.liveSize(a.Ino), &out.Attr)
	out.SetEntryTimeout(n.g.opts.EntryTimeout)
	out.SetAttrTimeout(0)
}

// writable says whether the mode bits allow writing: a file or folder without its owner
// write bit is read-only for every member until someone with write access chmods it.
func writable(a *meta.Attr) bool { return a.Mode&0o200 != 0 }

// Lookup finds a child by name.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("lookup", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Read)
	if e != 0 {
		return nil, e
	}
	if n.g.hidden(name) {
		return nil, syscall.ENOENT
	}
	a, err := gr.be.Meta.Lookup(ctx, n.ino, name)
	if err != nil {
		return nil, errno(n.g.log, "lookup", err)
	}
	n.entry(&a, gr, out)
	return n.newChild(ctx, &a), 0
}

// Getattr reports attributes as the caller sees them.
func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("getattr", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Read)
	if e != 0 {
		return e
	}
	a, err := gr.be.Meta.GetAttr(ctx, n.ino)
	if err != nil {
		return errno(n.g.log, "getattr", err)
	}
	fillAttr(&a, gr, n.g.files.liveSize(n.ino), &out.Attr)
	out.SetTimeout(0)
	return 0
}

// Setattr changes mode, times or size. chown and chgrp are refused with EPERM unless they
// change nothing, as for a non-root user on a local disk: each member is the owner.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("setattr", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Write)
	if e != 0 {
		n.g.recordSetattrDenied(ctx, n, in)
		return e
	}
	// Truncate, chmod and chown are audited before they take effect (attraudit.go).
	failed, e := n.g.recordSetattr(ctx, gr, n, in)
	if e != 0 {
		return e
	}
	defer func() { failed(e) }()
	if uid, ok := in.GetUID(); ok && int(uid) != gr.uid {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != gr.gid {
		return syscall.EPERM
	}
	a, err := gr.be.Meta.GetAttr(ctx, n.ino)
	if err != nil {
		return errno(n.g.log, "setattr", err)
	}
	if size, ok := in.GetSize(); ok {
		if a.Kind != meta.KindFile {
			return syscall.EINVAL
		}
		if !writable(&a) {
			return syscall.EACCES
		}
		if err := n.g.truncate(ctx, gr, &a, int64(size)); err != nil {
			return errno(n.g.log, "truncate", err)
		}
	}
	var sa meta.SetAttr
	if m, ok := in.GetMode(); ok {
		m &= 0o7777
		sa.Mode = &m
	}
	if t, ok := in.GetATime(); ok {
		v := t.UnixNano()
		sa.Atime = &v
	}
	if t, ok := in.GetMTime(); ok {
		v := t.UnixNano()
		sa.Mtime = &v
		// Unflushed writes would otherwise land after this and stamp their own time over
		// the one asked for (cp -p, tar and rsync set times after writing).
		if err := n.g.files.flush(ctx, n.ino); err != nil {
			return errno(n.g.log, "setattr", err)
		}
	}
	if sa.Mode != nil || sa.Atime != nil || sa.Mtime != nil {
		if a, err = gr.be.Meta.SetAttr(ctx, n.ino, sa); err != nil {
			return errno(n.g.log, "setattr", err)
		}
	} else if a, err = gr.be.Meta.GetAttr(ctx, n.ino); err != nil {
		return errno(n.g.log, "setattr", err)
	}
	fillAttr(&a, gr, n.g.files.liveSize(n.ino), &out.Attr)
	out.SetTimeout(0)
	return 0
}

// Access answers access(2) from the acl and the mode bits, with the caller as owner.
func (n *node) Access(ctx context.Context, mask uint32) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("access", time.Now(), &e)
	op := acl.Read
	if mask&2 != 0 { // W_OK
		op = acl.Write
	}
	gr, e := n.g.check(ctx, n.share, op)
	if e != 0 {
		return e
	}
	a, err := gr.be.Meta.GetAttr(ctx, n.ino)
	if err != nil {
		return errno(n.g.log, "access", err)
	}
	if (mask&2 != 0 && !writable(&a)) || (mask&1 != 0 && a.Mode&0o100 == 0) || (mask&4 != 0 && a.Mode&0o400 == 0) {
		return syscall.EACCES
	}
	return 0
}

// Readlink returns a symlink's target.
func (n *node) Readlink(ctx context.Context) (_ []byte, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("readlink", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Read)
	if e != 0 {
		return nil, e
	}
	a, err := gr.be.Meta.GetAttr(ctx, n.ino)
	if err != nil {
		return nil, errno(n.g.log, "readlink", err)
	}
	if a.Kind != meta.KindSymlink {
		return nil, syscall.EINVAL
	}
	return []byte(a.Target), 0
}

// changeIn checks that the caller may change this directory's entries.
func (n *node) changeIn(ctx context.Context, op acl.Op) (grant, syscall.Errno) {
	gr, e := n.g.check(ctx, n.share, op)
	if e != 0 {
		return gr, e
	}
	a, err := gr.be.Meta.GetAttr(ctx, n.ino)
	if err != nil {
		return gr, errno(n.g.log, "getattr", err)
	}
	if !writable(&a) {
		return gr, syscall.EACCES
	}
	return gr, 0
}

// Mkdir makes a directory.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("mkdir", time.Now(), &e)
	gr, e := n.changeIn(ctx, acl.Write)
	if e != 0 {
		n.g.recordDenied(ctx, "fs.mkdir", n.child(name))
		return nil, e
	}
	var a meta.Attr
	if e := n.g.change(ctx, gr.be, "fs.mkdir", n.child(name), "", "mkdir", func() (err error) {
		a, err = gr.be.Meta.Create(ctx, n.ino, name, meta.KindDir, mode&0o7777, "", meta.Content{})
		return err
	}); e != 0 {
		return nil, e
	}
	n.entry(&a, gr, out)
	return n.newChild(ctx, &a), 0
}

// Symlink makes a symbolic link.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (_ *gofs.Inode, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("symlink", time.Now(), &e)
	gr, e := n.changeIn(ctx, acl.Write)
	if e != 0 {
		return nil, e
	}
	var a meta.Attr
	if e := n.g.change(ctx, gr.be, "fs.create", n.child(name), "symlink", "symlink", func() (err error) {
		a, err = gr.be.Meta.Create(ctx, n.ino, name, meta.KindSymlink, 0o777, target, meta.Content{})
		return err
	}); e != 0 {
		return nil, e
	}
	n.entry(&a, gr, out)
	return n.newChild(ctx, &a), 0
}

// Mknod makes a named pipe or a unix socket's name (mkfifo, bind): tools from git's
// fsmonitor daemon to tmux and Jupyter need them. Their data never passes through dsh: the
// kernel connects the ends. Device nodes are refused, as on a nodev mount.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (_ *gofs.Inode, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("mknod", time.Now(), &e)
	var kind meta.Kind
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO:
		kind = meta.KindFIFO
	case syscall.S_IFSOCK:
		kind = meta.KindSocket
	case syscall.S_IFREG:
		return nil, syscall.EINVAL // the kernel sends regular files as CREATE
	default:
		return nil, syscall.EPERM
	}
	gr, e := n.changeIn(ctx, acl.Write)
	if e != 0 {
		n.g.recordDenied(ctx, "fs.create", n.child(name))
		return nil, e
	}
	var a meta.Attr
	if e := n.g.change(ctx, gr.be, "fs.create", n.child(name), kind.String(), "mknod", func() (err error) {
		a, err = gr.be.Meta.Create(ctx, n.ino, name, kind, mode&0o7777, "", meta.Content{})
		return err
	}); e != 0 {
		return nil, e
	}
	n.entry(&a, gr, out)
	return n.newChild(ctx, &a), 0
}

// Link adds a hard link within the share.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (_ *gofs.Inode, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("link", time.Now(), &e)
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if t.share != n.share {
		return nil, syscall.EXDEV
	}
	gr, e := n.changeIn(ctx, acl.Write)
	if e != 0 {
		return nil, e
	}
	var a meta.Attr
	if e := n.g.change(ctx, gr.be, "fs.link", n.child(name), "", "link", func() (err error) {
		a, err = gr.be.Meta.Link(ctx, t.ino, n.ino, name)
		return err
	}); e != 0 {
		return nil, e
	}
	n.entry(&a, gr, out)
	return n.newChild(ctx, &a), 0
}

// Unlink removes a name; the file goes when its last name and last open handle are gone.
func (n *node) Unlink(ctx context.Context, name string) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("unlink", time.Now(), &e)
	gr, e := n.changeIn(ctx, acl.Delete)
	if e != 0 {
		n.g.recordDenied(ctx, "fs.delete", n.child(name))
		return e
	}
	var a meta.Attr
	if e := n.g.change(ctx, gr.be, "fs.delete", n.child(name), "", "unlink", func() (err error) {
		a, err = gr.be.Meta.Unlink(ctx, n.ino, name)
		return err
	}); e != 0 {
		n.g.markIfNamed(n, name)
		return e
	}
	n.g.reapIfUnused(ctx, gr.be, a.Ino, a.Nlink)
	return 0
}

// Rmdir removes an empty directory.
func (n *node) Rmdir(ctx context.Context, name string) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("rmdir", time.Now(), &e)
	gr, e := n.changeIn(ctx, acl.Delete)
	if e != 0 {
		n.g.recordDenied(ctx, "fs.delete", n.child(name))
		return e
	}
	return n.g.change(ctx, gr.be, "fs.delete", n.child(name), "directory", "rmdir", func() error {
		return gr.be.Meta.Rmdir(ctx, n.ino, name)
	})
}

// Rename moves a name within the share; across shares it is EXDEV, so mv falls back to
// copy and delete, each checked on its own.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("rename", time.Now(), &e)
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EACCES // into the root, where only shares live
	}
	if np.share != n.share {
		return syscall.EXDEV
	}
	gr, e := n.changeIn(ctx, acl.Write)
	if e == 0 && np != n {
		_, e = np.changeIn(ctx, acl.Write)
	}
	if e != 0 {
		n.g.recordDenied(ctx, "fs.rename", n.child(name))
		return e
	}
	var mf meta.RenameFlags
	if flags&1 != 0 { // RENAME_NOREPLACE
		mf |= meta.RenameNoReplace
	}
	if flags&2 != 0 { // RENAME_EXCHANGE
		mf |= meta.RenameExchange
	}
	if flags&^3 != 0 {
		return syscall.EINVAL
	}
	var orphans []meta.Ino
	if e := n.g.change(ctx, gr.be, "fs.rename", n.child(name), "to "+np.child(newName), "rename", func() (err error) {
		orphans, err = gr.be.Meta.Rename(ctx, n.ino, name, np.ino, newName, mf)
		return err
	}); e != 0 {
		n.g.markIfNamed(np, newName)
		return e
	}
	for _, ino := range orphans {
		n.g.reapIfUnused(ctx, gr.be, ino, 0)
	}
	return 0
}

// Statfs reports the data folder's disk and the store's file count.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	return n.g.statfs(ctx, out)
}

// OpendirHandle opens a directory for listing.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	if _, e := n.g.check(ctx, n.share, acl.List); e != 0 {
		if e == eHidden {
			e = syscall.ENOENT
		}
		return nil, 0, e
	}
	return &dirHandle{g: n.g, share: n.share, ino: n.ino}, 0, 0
}
