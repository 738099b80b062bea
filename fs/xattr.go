package fs

import (
	"context"
	"strings"
	"syscall"
	"time"

	"dsh/acl"
	"dsh/meta"
)

// kernelNamespace reports xattr names that belong to the kernel or to root (security
// labels, capabilities, POSIX ACLs, trusted.*): members may not set them, and reading them
// answers "none" at once, since the kernel asks for security.capability before every write.
func kernelNamespace(name string) bool {
	return strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "system.") || strings.HasPrefix(name, "trusted.")
}

// Getxattr reads an extended attribute (user.* only).
func (n *node) Getxattr(ctx context.Context, name string, dest []byte) (_ uint32, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	if kernelNamespace(name) {
		return 0, syscall.ENODATA
	}
	defer n.g.observe("xattr", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Read)
	if e != 0 {
		return 0, e
	}
	v, err := gr.be.Meta.GetXattr(ctx, n.ino, name)
	if err != nil {
		return 0, errno(n.g.log, "getxattr", err)
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Setxattr sets an extended attribute (user.* only).
func (n *node) Setxattr(ctx context.Context, name string, data []byte, flags uint32) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	if kernelNamespace(name) {
		return syscall.EOPNOTSUPP
	}
	defer n.g.observe("xattr", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Write)
	if e != 0 {
		n.g.recordRefused(ctx, "fs.setxattr", n.path(), name)
		return e
	}
	var f meta.XattrFlags
	if flags&1 != 0 { // XATTR_CREATE
		f |= meta.XattrCreate
	}
	if flags&2 != 0 { // XATTR_REPLACE
		f |= meta.XattrReplace
	}
	// Audited before it takes effect (attraudit.go).
	return n.g.change(ctx, gr.be, "fs.setxattr", n.path(), name, "setxattr", func() error {
		return gr.be.Meta.SetXattr(ctx, n.ino, name, data, f)
	})
}

// Listxattr lists the names of the extended attributes.
func (n *node) Listxattr(ctx context.Context, dest []byte) (_ uint32, e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	defer n.g.observe("xattr", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Read)
	if e != 0 {
		return 0, e
	}
	names, err := gr.be.Meta.ListXattr(ctx, n.ino)
	if err != nil {
		return 0, errno(n.g.log, "listxattr", err)
	}
	size := 0
	for _, nm := range names {
		size += len(nm) + 1
	}
	if len(dest) == 0 {
		return uint32(size), 0
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, nm := range names {
		off += copy(dest[off:], nm)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

// Removexattr removes an extended attribute.
func (n *node) Removexattr(ctx context.Context, name string) (e syscall.Errno) {
	ctx = context.WithoutCancel(ctx) // uninterruptible: see fs.go
	if kernelNamespace(name) {
		return syscall.EOPNOTSUPP
	}
	defer n.g.observe("xattr", time.Now(), &e)
	gr, e := n.g.check(ctx, n.share, acl.Write)
	if e != 0 {
		n.g.recordRefused(ctx, "fs.removexattr", n.path(), name)
		return e
	}
	// Audited before it takes effect (attraudit.go).
	return n.g.change(ctx, gr.be, "fs.removexattr", n.path(), name, "removexattr", func() error {
		return gr.be.Meta.RemoveXattr(ctx, n.ino, name)
	})
}
