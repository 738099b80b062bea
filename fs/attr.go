package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"dsh/meta"
)

// kindMode is the file-type bits of a kind.
func kindMode(k meta.Kind) uint32 {
	switch k {
	case meta.KindDir:
		return syscall.S_IFDIR
	case meta.KindSymlink:
		return syscall.S_IFLNK
	case meta.KindFIFO:
		return syscall.S_IFIFO
	case meta.KindSocket:
		return syscall.S_IFSOCK
	}
	return syscall.S_IFREG
}

// blockSize is the st_blksize reported: large enough that tools reading "a block at a
// time" send requests worth a FUSE round trip.
const blockSize = 128 << 10

// fillAttr writes the attributes of a as gr's caller sees them. Every member sees every
// file as their own (owner = the caller), as in a home folder; a read-only member sees no
// write bits, so tools know before they try. In Arrivals the owner's folders keep the
// owner's write bit: removing a name is allowed there (adding one is not), and Samba, which
// decides a delete from the folder's mode before it asks the filesystem, must see that.
// live, when ≥ 0, is the size of an open file with unflushed writes.
func fillAttr(a *meta.Attr, gr grant, live int64, out *fuse.Attr) {
	mode := a.Mode & 0o7777
	if gr.readOnly {
		if gr.arrivals && a.Kind == meta.KindDir {
			mode &^= 0o022
		} else {
			mode &^= 0o222
		}
	}
	size := a.Size
	if live >= 0 {
		size = live
	}
	*out = fuse.Attr{
		Ino:       uint64(a.Ino),
		Size:      uint64(size),
		Blocks:    (uint64(size) + 511) / 512,
		Atime:     uint64(a.Atime / 1e9),
		Atimensec: uint32(a.Atime % 1e9),
		Mtime:     uint64(a.Mtime / 1e9),
		Mtimensec: uint32(a.Mtime % 1e9),
		Ctime:     uint64(a.Ctime / 1e9),
		Ctimensec: uint32(a.Ctime % 1e9),
		Mode:      kindMode(a.Kind) | mode,
		Nlink:     a.Nlink,
		Owner:     fuse.Owner{Uid: uint32(gr.uid), Gid: gr.gid},
		Blksize:   blockSize,
	}
}
