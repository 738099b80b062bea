// Package content stores the bytes of dsh's regular files: it cuts a file into segments,
// keeps each segment as one immutable encrypted object in the blob store (vault's content
// format, FORMAT.md section 4), buffers the writes of an open file in memory and turns them
// into new objects when the file is flushed.
//
// It owns the mapping from file offsets to objects and the life of an open file's data. It
// must never change what the metadata says on its own: a flush hands the new state to the
// caller's CommitFunc, and only the caller's transaction makes it durable. It must never
// delete an object the metadata may still name (the metadata layer collects them), never
// hand out bytes that did not authenticate, and never write a key or plaintext anywhere but
// into sealed objects.
//
// # Layout
//
// Segment i of a file covers bytes [i·SegmentSize, (i+1)·SegmentSize) and is stored as one
// object under a fresh blob ID, whose header names the file ID, the object ID (the blob ID)
// and first chunk i·SegmentChunks. The object's plaintext is exactly the segment's bytes up
// to the file's size: SegmentSize for every segment but the last, which ends at the end of
// the file (holes inside it are stored as zeros). A segment wholly inside a hole may have no
// object at all and reads as zeros. The size a segment's object must have thus follows from
// the file's size, and a reader refuses an object of any other length.
//
// A file's content key is wrapped (vault.WrapKey) by its share's key with the context
// "file:" | hex(file ID) | "/share:" | share name. The file ID has a fixed length, so the
// context names exactly one (file, share) pair, and a wrapped key moved to another file or
// share does not open. This context is part of the stored format.
package content

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"dsh/blob"
	"dsh/vault"
)

// SegmentChunks is the number of chunks in a segment, the part of a file one object holds.
// 16 MiB objects keep the number of objects (and metadata entries) of a big file small
// while a small write into a big file rewrites at most one such object.
const SegmentChunks = 256

// SegmentSize is the number of file bytes a segment covers.
const SegmentSize = SegmentChunks * vault.ChunkSize

// MaxSize is the largest file size: 2^62 bytes (4 EiB). It leaves room above every
// offset for the end of its segment, so that offset arithmetic cannot overflow an int64.
const MaxSize = 1 << 62

// defaultMaxDirty is Options.MaxDirty when none is given: two segments, so a file streamed
// sequentially is flushed in whole segments.
const defaultMaxDirty = 32 << 20

// ErrIntegrity is wrapped by every error caused by stored content that does not
// authenticate, is missing, or does not have the length the metadata implies. The
// filesystem turns it into EIO. It is vault.ErrIntegrity, so errors from either package
// match.
var ErrIntegrity = vault.ErrIntegrity

// ErrClosed is returned by the methods of a File after Close.
var ErrClosed = errors.New("content: file is closed")

// ErrTooLarge is wrapped when a write, truncation or allocation would make the file
// larger than MaxSize.
var ErrTooLarge = errors.New("file too large")

// ErrInvalidRange is wrapped when an allocation or a hole is asked for a negative offset
// or an empty or negative length.
var ErrInvalidRange = errors.New("invalid range")

// Segment names the object holding one segment of a file.
type Segment struct {
	// Index is the segment's position: it covers bytes [Index·SegmentSize, (Index+1)·SegmentSize).
	Index uint64
	// Object is the blob holding the segment's sealed bytes.
	Object blob.ID
	// Patches are runs of the segment's blocks written since Object, each in an object of
	// its own (patch.go); sorted, not overlapping. They read over Object.
	Patches []Patch
}

// Patch is a run of a segment's 4 KiB blocks (vault.BlockSize) kept in an object of its
// own. It covers blocks [From, To) of the segment; its object holds Blocks blocks from
// block First of the segment on (from a flush that wrote them), and may hold more than
// the patch still covers.
type Patch struct {
	From, To, First, Blocks uint32
	Object                  blob.ID
}

// Staged is a state of a file's content written by a flush and waiting for the metadata
// to record it.
type Staged struct {
	// Size is the file size of this state. It is File.Size() except after a flush that
	// WriteAt started by itself, which may leave the segment being written for later and
	// then records the size without it.
	Size int64
	// Segments is the complete list of the file's objects in this state, sorted by Index.
	// Their patch lists are shared with the File: the CommitFunc must not change them.
	Segments []Segment
	// New lists the objects this flush wrote. They are committed in the blob store, but
	// nothing names them until the metadata records them.
	New []blob.ID
	// Dropped lists the objects of the previous state that this state no longer names.
	// The metadata layer collects them; content never deletes them, since other readers
	// may still have them open.
	Dropped []blob.ID
	// Changed lists the segments this state wrote (whole or as patches): their patch lists
	// in Segments are new; every other segment's are as they were.
	Changed []uint64
	// FileID and Key are the file's identity and wrapped content key in this state: as
	// opened, unless the file moved to a new key (seals.go).
	FileID vault.FileID
	Key    vault.WrappedKey
	// Seals counts the chunks sealed under Key, this state's included.
	Seals uint64
}

// CommitFunc records a staged state in the metadata, in the caller's transaction. Only
// after it returns nil is the state durable and visible. It is called with no lock of the
// File held that reads wait for, but flushes of the File are serialized around it.
type CommitFunc func(ctx context.Context, st Staged) error

// Options tune a Store.
type Options struct {
	// MaxDirty is how many bytes of unflushed data one File may hold before WriteAt
	// flushes by itself. Zero or less means 32 MiB. A File streaming sequentially may
	// hold up to about MaxDirty plus one segment.
	MaxDirty int64
	// Budget, if set, bounds the unflushed data of all Files of every Store sharing it.
	Budget *Budget
	// SealBudget is how many chunks may be sealed under one content key before the file
	// moves to a new one (seals.go); zero means DefaultSealBudget. For tests.
	SealBudget uint64
	// OnRollover, when set, is told when a file could not move to a new key.
	OnRollover func(error)
}

// Store reads and writes file content in one blob store. It is safe for concurrent use; it
// keeps no state per file, which lives in the Files it opens.
type Store struct {
	blobs      blob.Store
	maxDirty   int64
	budget     *Budget
	sealBudget uint64
	onRollover func(error)
	// segChunks is SegmentChunks; tests shrink it to cross segment boundaries cheaply. The
	// format allows any value, but every File of one store must agree, so it never changes
	// in production.
	segChunks int64
	// buffers counts the chunk buffers held by this store's Files, and peakBuffers is the
	// most there ever were: tests check the memory bound with them.
	buffers     atomic.Int64
	peakBuffers atomic.Int64
	// extraOpen counts the objects the Files keep open beyond minSlots each (cache.go).
	extraOpen atomic.Int64
}

// New returns a Store keeping objects in blobs.
func New(blobs blob.Store, opts Options) *Store {
	md := opts.MaxDirty
	if md <= 0 {
		md = defaultMaxDirty
	}
	sb := opts.SealBudget
	if sb == 0 {
		sb = DefaultSealBudget
	}
	return &Store{blobs: blobs, maxDirty: md, budget: opts.Budget, sealBudget: sb, onRollover: opts.OnRollover, segChunks: SegmentChunks}
}

// NewFile draws a FileID and a random content key for a new file and returns the key
// wrapped by shareKey, bound to share and the FileID, so that a wrapped key cannot be moved
// to another file or share. The new file is empty and has no objects.
func (s *Store) NewFile(share string, shareKey *vault.Key) (vault.FileID, vault.WrappedKey, error) {
	id, err := vault.NewFileID()
	if err != nil {
		return vault.FileID{}, vault.WrappedKey{}, fmt.Errorf("new file: %w", err)
	}
	key, err := vault.NewKey()
	if err != nil {
		return vault.FileID{}, vault.WrappedKey{}, fmt.Errorf("new file: %w", err)
	}
	defer key.Wipe()
	w, err := vault.WrapKey(shareKey, &key, wrapContext(share, id))
	if err != nil {
		return vault.FileID{}, vault.WrappedKey{}, fmt.Errorf("new file in share %q: %w", share, err)
	}
	return id, w, nil
}

// wrapContext is the context a file's content key is wrapped with (see the package doc).
func wrapContext(share string, id vault.FileID) []byte {
	b := make([]byte, 0, len("file:")+2*len(id)+len("/share:")+len(share))
	b = append(b, "file:"...)
	b = append(b, id.String()...)
	b = append(b, "/share:"...)
	return append(b, share...)
}

// Open returns the live state of one file from what the metadata records: its ID, wrapped
// content key, size and segments. The caller keeps one *File per inode, shared by all
// open handles of it, and calls commit from Flush. Open unwraps the content key (a wrong
// share key or share name fails with an error wrapping ErrIntegrity), keeps only the
// cipher made from it and wipes the key. It checks the segment list against the size (or
// takes the Layout that WithLayout gives) but opens no object; a missing or damaged object is reported by the read that needs it.
func (s *Store) Open(share string, shareKey *vault.Key, id vault.FileID, wrapped vault.WrappedKey, size int64, segs []Segment, commit CommitFunc, opts ...OpenOption) (*File, error) {
	var oc openConfig
	for _, o := range opts {
		o(&oc)
	}
	if s.blobs == nil || commit == nil {
		return nil, fmt.Errorf("open file %s: no blob store or no commit function", id)
	}
	if size < 0 || size > MaxSize {
		return nil, fmt.Errorf("open file %s: size %d out of range", id, size)
	}
	segSize := s.segChunks * vault.ChunkSize
	var list []segState
	if l := oc.layout; l != nil {
		if l.size != size || l.segSize != segSize {
			return nil, fmt.Errorf("open file %s: a layout checked for size %d and segments of %d bytes, opened with %d and %d", id, l.size, l.segSize, size, segSize)
		}
		list = l.list
	} else {
		var err error
		if list, err = checkSegments(segs, size, segSize); err != nil {
			return nil, fmt.Errorf("open file %s: %w", id, err)
		}
	}
	c, err := openCipher(shareKey, share, id, wrapped)
	if err != nil {
		return nil, err
	}
	f := &File{
		store:         s,
		blobs:         s.blobs,
		id:            id,
		share:         share,
		wrapped:       wrapped,
		commit:        commit,
		segChunks:     s.segChunks,
		segSize:       segSize,
		maxDirty:      s.maxDirty,
		cipher:        c,
		size:          size,
		committedSize: size,
		segs:          list,
		committed:     list,
		dirty:         make(map[int64]*chunkBuf),
		dirtySegs:     make(map[int64]int),
		seals:         oc.seals,
	}
	f.ra.init(s.segChunks)
	if f.seals >= s.sealBudget {
		f.rollover(context.Background(), share, shareKey)
	}
	return f, nil
}

// Layout is a file's segment list as Open checks it, patches included. A caller that opens
// the same committed state again and again (a file opened and closed in a loop) checks it
// once with CheckLayout and passes it to each Open with WithLayout, so that a file with
// thousands of patches does not have them all checked and copied at every open. A Layout
// holds object IDs and lengths only, nothing secret, and is never changed: Files replace
// their segment lists, they do not edit them.
type Layout struct {
	size, segSize int64
	list          []segState
	patches       int
}

// CheckLayout checks segs for a file of size bytes, as Open does.
func (s *Store) CheckLayout(size int64, segs []Segment) (*Layout, error) {
	if size < 0 || size > MaxSize {
		return nil, fmt.Errorf("check layout: size %d out of range", size)
	}
	segSize := s.segChunks * vault.ChunkSize
	list, err := checkSegments(segs, size, segSize)
	if err != nil {
		return nil, fmt.Errorf("check layout: %w", err)
	}
	n := 0
	for _, e := range list {
		n += len(e.patches)
	}
	return &Layout{size: size, segSize: segSize, list: list, patches: n}, nil
}

// Patches is how many patches the layout holds: what keeping it costs.
func (l *Layout) Patches() int { return l.patches }

// WithLayout makes Open use l, which CheckLayout made from the same size and segment list,
// instead of the segments it is given.
func WithLayout(l *Layout) OpenOption { return func(c *openConfig) { c.layout = l } }

// checkSegments turns the metadata's list into the File's, refusing a list that no flush
// writes: unsorted, naming a segment past the end of the file or one object twice. Such a
// list means the metadata is damaged, so it wraps ErrIntegrity like damaged content does.
func checkSegments(segs []Segment, size, segSize int64) ([]segState, error) {
	n := segCount(size, segSize)
	list := make([]segState, len(segs))
	objs := len(segs)
	for _, sg := range segs {
		objs += len(sg.Patches)
	}
	seen := make(map[blob.ID]int64, objs)
	for i, sg := range segs {
		if _, dup := seen[sg.Object]; dup {
			return nil, fmt.Errorf("%w: object %s is named by two segments", ErrIntegrity, sg.Object)
		}
		seen[sg.Object] = -1 - int64(sg.Index) // no patch may name it, not even its own segment's
		if sg.Index >= uint64(n) {
			return nil, fmt.Errorf("%w: segment %d lies beyond the end of the file (size %d)", ErrIntegrity, sg.Index, size)
		}
		if i > 0 && sg.Index <= segs[i-1].Index {
			return nil, fmt.Errorf("%w: segment list is not strictly sorted at index %d", ErrIntegrity, sg.Index)
		}
		idx := int64(sg.Index)
		l := segLen(idx, size, segSize)
		list[i] = segState{index: idx, obj: sg.Object, objLen: l, valid: l, to: segSize / vault.BlockSize}
		ps, err := checkPatches(sg.Patches, idx, l, segSize, seen)
		if err != nil {
			return nil, err
		}
		list[i].patches, list[i].staged = ps, stagedPatches(ps)
	}
	return list, nil
}

// segCount is the number of segments a file of size bytes spans.
func segCount(size, segSize int64) int64 {
	n := size / segSize
	if size%segSize != 0 {
		n++
	}
	return n
}

// segLen is the plaintext length of segment idx's object in a file of size bytes.
func segLen(idx, size, segSize int64) int64 {
	return min(segSize, size-idx*segSize)
}

// segState is one stored segment as the File sees it.
type segState struct {
	index int64
	obj   blob.ID
	// objLen is the object's plaintext length, as implied by the size committed with it;
	// an object of another length is refused.
	objLen int64
	// valid is how much of the object still belongs to the file: less than objLen after a
	// Truncate cut into the segment, and the bytes past it read as zeros, so that a shrink
	// followed by an extension never brings old bytes back. For the segment as a whole,
	// patches included.
	valid int64
	// first is the block (vault.BlockSize) of the segment the object starts at: 0 for a
	// segment's own object, a patch's First for a patch. from and to are the blocks of the
	// segment it serves: all of them for a segment's own object (reads past valid are
	// zeros anyway).
	first, from, to int64
	// patches, on a segment's own object only, are its patches, sorted (patch.go), and
	// staged their stored form, made once with the list: a flush hands every segment's
	// list to the metadata, and converting thousands of patches at each one cost more
	// than the flush of a 4 KiB write.
	patches []segState
	staged  []Patch
}

// findSeg returns the position of segment idx in list, or where it would go.
func findSeg(list []segState, idx int64) (int, bool) {
	return slices.BinarySearchFunc(list, idx, func(s segState, idx int64) int {
		switch {
		case s.index < idx:
			return -1
		case s.index > idx:
			return 1
		}
		return 0
	})
}
