// Package meta owns the namespace of the Group tree: inodes, directory entries, attributes,
// extended attributes and the references from every regular file to the encrypted objects
// that hold its bytes, all kept in kv under "fs/". It allocates inode numbers and keeps link
// counts, the orphan list (inodes with no name left that may still be open), the garbage
// list (objects that no inode references any more) and the usage counters, each change in
// one kv transaction, so a crash leaves either the old namespace or the new one.
//
// The package must never store plaintext file data or a clear key (a file's content key is
// kept only as the caller hands it in, wrapped by its share key), never touch the blob store
// (it names objects by ID and lists those that may be deleted; the caller deletes them), and
// never put a file name into an error message: names may identify people, and errors end up
// in logs. Errors name inodes by number instead.
//
// Concurrency: reads (Lookup, GetAttr, ReadDir, GetXattr, ...) are plain kv.View reads and
// take no lock. Every mutation is one kv.Update that reads with Get each value it depends
// on and writes each record it changes (a directory's record changes with every entry added
// or removed), so concurrent mutations that could interfere conflict in kv and are re-run,
// both on kv's read-set detection and on a store that only detects write-write conflicts.
// Inside one process, mutations of one directory or inode also queue on a striped mutex, so
// that they wait for each other instead of spending kv's retries.
package meta

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"time"

	"dsh/blob"
	"dsh/kv"
	"dsh/vault"
)

// Ino numbers an inode. Numbers are unique in the whole store, not per share, and are
// never reused, so the FUSE layer can hand them to the kernel as they are.
type Ino uint64

// FirstIno is the lowest number the store allocates. The numbers below it are left to the
// FUSE layer for nodes of its own (its root directory is 1, the share list may need more).
const FirstIno Ino = 1024

// Kind is the type of an inode.
type Kind uint8

// The kinds of inode. Their values are stored, so they must never change.
const (
	KindFile    Kind = 1
	KindDir     Kind = 2
	KindSymlink Kind = 3
	// KindFIFO and KindSocket are named pipes and unix sockets: names only, their data
	// never passes through the store (the kernel connects the two ends).
	KindFIFO   Kind = 4
	KindSocket Kind = 5
)

func (k Kind) valid() bool { return k >= KindFile && k <= KindSocket }

// String names the kind, for messages.
func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "directory"
	case KindSymlink:
		return "symlink"
	case KindFIFO:
		return "fifo"
	case KindSocket:
		return "socket"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Segment is one immutable encrypted object in the blob store holding the chunks of a file
// from Index times the caller's segment length on.
type Segment struct {
	Index  uint64
	Object blob.ID
	// Patched says the segment also has patches (PatchesOf): runs of its blocks written
	// since, each in an object of its own, which read over Object's blocks.
	Patched bool
}

// Patch is a run of a segment's 4 KiB blocks stored in an object of its own: what a small
// write into a big file costs, instead of a rewrite of the whole segment. It covers blocks
// [From, To) of the segment (counted from the segment's start); its object holds Blocks
// blocks from block First of the segment on, and may hold more than the patch covers,
// once a later patch covers the rest.
type Patch struct {
	From, To, First, Blocks uint32
	Object                  blob.ID
}

// MaxPatches bounds the patches of one segment's record, and their blocks: a segment has
// at most that many blocks in any layout dsh writes (16 MiB of 4 KiB).
const MaxPatches = 4096

// Content is how a regular file's bytes are found. Key is the file's content key wrapped by
// its share key; Segments are sorted by Index without duplicates.
type Content struct {
	FileID   vault.FileID
	Key      vault.WrappedKey
	Segments []Segment
	// Seals counts the chunks sealed under Key so far (content counts them, and moves the
	// file to a new key before the format's budget); 0 in records of dsh before counting.
	Seals uint64
	// Patches is for SetContent only: the patch lists of the segments whose patches
	// changed, by index (an empty list: it has none any more). Every other segment keeps
	// the patches it had; a segment with patches must be marked Patched. GetAttr leaves
	// it nil; PatchesOf reads the patches of a file.
	Patches map[uint64][]Patch
}

// Attr is what the store knows of one inode.
type Attr struct {
	Ino   Ino
	Share string // the share this inode belongs to
	Kind  Kind
	Mode  uint32 // permission bits only (07777)
	// Nlink is the number of names of a file or symlink (0 for an orphan), and 2 plus the
	// number of subdirectories for a directory.
	Nlink uint32
	// Size is the length in bytes of a file, the length of a symlink's target, and 0 for a
	// directory.
	Size                int64
	Atime, Mtime, Ctime int64 // Unix nanoseconds
	Target              string
	Content             Content // regular files only
}

// Dirent is one entry of a directory as ReadDir reports it.
type Dirent struct {
	Name string
	Ino  Ino
	Kind Kind
	// Off is the cookie to pass to ReadDir to continue after this entry.
	Off uint64
}

// SetAttr lists the attributes SetAttr changes; nil fields are left alone.
type SetAttr struct {
	Mode         *uint32
	Atime, Mtime *int64
}

// RenameFlags are the flags of renameat2 that Rename honours.
type RenameFlags uint32

// Flags of Rename.
const (
	// RenameNoReplace fails with ErrExists when the target name exists.
	RenameNoReplace RenameFlags = 1
	// RenameExchange swaps two existing names.
	RenameExchange RenameFlags = 2
)

// XattrFlags are the flags of setxattr.
type XattrFlags uint32

// Flags of SetXattr.
const (
	// XattrCreate fails with ErrExists when the attribute exists.
	XattrCreate XattrFlags = 1
	// XattrReplace fails with ErrNoAttr when the attribute does not exist.
	XattrReplace XattrFlags = 2
)

// Limits of the namespace. They follow Linux, so that what the kernel lets through the FUSE
// layer mostly fits.
const (
	// MaxNameLen is the longest name in a directory, in bytes (NAME_MAX).
	MaxNameLen = 255
	// MaxTargetLen is the longest symlink target, in bytes (PATH_MAX less its NUL).
	MaxTargetLen = 4095
	// MaxXattrNameLen is the longest extended-attribute name (XATTR_NAME_MAX).
	MaxXattrNameLen = 255
	// MaxXattrValue is the largest extended-attribute value (XATTR_SIZE_MAX).
	MaxXattrValue = 64 << 10
	// MaxXattrs bounds the attributes of one inode, so that deleting an inode with all of
	// them stays one transaction well inside kv's limits, and their names fit the 64 KiB
	// that listxattr can return.
	MaxXattrs = 256
	// MaxSegments bounds the segments of one file (ErrTooBig beyond), so that replacing all
	// of them, which writes the new inode record and lists every old object as garbage,
	// fits one kv transaction. The caller's segment length sets the largest file: 24 GiB
	// with 1 MiB segments, 384 GiB with 16 MiB ones.
	MaxSegments = 24 << 10
)

// Errors of every method. Callers match them with errors.Is; the FUSE layer maps each to one
// errno.
var (
	// ErrNotFound: no such name, inode or share root (ENOENT).
	ErrNotFound = errors.New("not found")
	// ErrExists: the name or extended attribute is taken (EEXIST).
	ErrExists = errors.New("already exists")
	// ErrNotDir: a directory was needed (ENOTDIR).
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir: a directory was given where it cannot be (EISDIR).
	ErrIsDir = errors.New("is a directory")
	// ErrNotEmpty: the directory has entries (ENOTEMPTY).
	ErrNotEmpty = errors.New("directory not empty")
	// ErrInvalid: a malformed argument (a name with '/' or NUL, ".", "..", empty, unknown
	// flags), a directory moved into its own subtree, or a damaged stored record (EINVAL).
	ErrInvalid = errors.New("invalid argument")
	// ErrNoAttr: no such extended attribute (ENODATA).
	ErrNoAttr = errors.New("no such attribute")
	// ErrNameTooLong: a name or symlink target over its limit (ENAMETOOLONG).
	ErrNameTooLong = errors.New("name too long")
	// ErrCrossShare: a rename or link between shares (EXDEV).
	ErrCrossShare = errors.New("across shares")
	// ErrNoSpace: an inode already has MaxXattrs extended attributes (ENOSPC). It wraps
	// ErrInvalid, so that a caller that does not know it still refuses the call.
	ErrNoSpace = fmt.Errorf("too many extended attributes: %w", ErrInvalid)
	// ErrTooBig: a file with more than MaxSegments segments (EFBIG). It wraps ErrInvalid.
	ErrTooBig = fmt.Errorf("file too big: %w", ErrInvalid)
)

// Options tunes New; the zero value is ready to use.
type Options struct {
	// Now is the clock of timestamps. Nil means time.Now.
	Now func() time.Time
}

// Store is the namespace kept in a kv.Store. All methods are safe for concurrent use.
type Store struct {
	db  kv.Store
	now func() time.Time

	// stripes serialise, inside this process, the mutations of one directory or inode.
	// They change no outcome (kv's conflict detection does that); they stop writers of one
	// directory from conflicting with each other and burning kv's retries, which a burst of
	// creates in one directory would otherwise exhaust.
	stripes [stripeCount]sync.Mutex

	alloc struct {
		mu          sync.Mutex
		next, limit Ino // [next, limit) is reserved in kv and not yet handed out
	}

	// cache holds recently read inodes, roots the share roots (cache.go).
	cache attrCache
	roots rootCache
}

// stripeCount is also the number of usage counter shards: a mutation keeps its usage delta in
// the shard of the stripe it holds, so that writers in this process never conflict on one.
const stripeCount = 64

// inoBatch is how many inode numbers one kv transaction reserves: creates then touch the
// counter key once per thousand, instead of all conflicting on it.
const inoBatch = 1024

// New returns the namespace kept in st. The caller keeps ownership of st and closes it
// after the last call. Only one Store may work on st at a time: each keeps a cache of the
// inodes it has read, which stays right only if it makes every change itself.
func New(st kv.Store, opts Options) *Store {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Store{db: st, now: now}
}

func stripe(ino Ino) int { return int(ino % stripeCount) }

// lock takes the stripes of inos in ascending order, so that two callers never wait on each
// other in a cycle, and returns the function that releases them.
func (s *Store) lock(inos ...Ino) (unlock func()) {
	var set uint64
	for _, ino := range inos {
		set |= 1 << stripe(ino)
	}
	for m := set; m != 0; m &= m - 1 {
		s.stripes[bits.TrailingZeros64(m)].Lock()
	}
	return func() {
		for m := set; m != 0; m &= m - 1 {
			s.stripes[bits.TrailingZeros64(m)].Unlock()
		}
	}
}

// allocIno hands out a fresh inode number, reserving a new batch in kv when the current one
// is used up. Numbers of a batch that a crash loses are never used; the space is 64 bits.
func (s *Store) allocIno(ctx context.Context) (Ino, error) {
	a := &s.alloc
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next == a.limit {
		var next Ino
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			next = FirstIno
			v, err := tx.Get(nextInoKey())
			switch {
			case errors.Is(err, kv.ErrNotFound):
			case err != nil:
				return err
			default:
				if next, err = decodeIno(v); err != nil {
					return err
				}
			}
			if next < FirstIno || next > ^Ino(0)-inoBatch {
				return fmt.Errorf("inode counter at %d: %w", next, errCorrupt)
			}
			return tx.Set(nextInoKey(), encodeIno(next+inoBatch))
		})
		if err != nil {
			return 0, fmt.Errorf("meta: reserve inode numbers: %w", err)
		}
		a.next, a.limit = next, next+inoBatch
	}
	ino := a.next
	a.next++
	return ino, nil
}

// releaseIno gives back a number that allocIno just handed out and that was not used (the
// create failed), when nothing was allocated since; an EEXIST-heavy workload then does not
// burn through batches.
func (s *Store) releaseIno(ino Ino) {
	a := &s.alloc
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next == ino+1 {
		a.next = ino
	}
}

// checkName enforces the rules for a name in a directory (and for a share name).
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name: %w", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name of %d bytes, limit %d: %w", len(name), MaxNameLen, ErrNameTooLong)
	case name == "." || name == "..":
		return fmt.Errorf("name is a dot entry: %w", ErrInvalid)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name contains '/' or NUL: %w", ErrInvalid)
	}
	return nil
}

// checkSegments enforces the order and the number of Content.Segments.
func checkSegments(segs []Segment) error {
	if len(segs) > MaxSegments {
		return fmt.Errorf("%d segments, limit %d: %w", len(segs), MaxSegments, ErrTooBig)
	}
	for i := 1; i < len(segs); i++ {
		if segs[i].Index <= segs[i-1].Index {
			return fmt.Errorf("segments not sorted by index at position %d: %w", i, ErrInvalid)
		}
	}
	return nil
}
