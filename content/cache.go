package content

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"dsh/blob"
	"dsh/vault"
)

// A File keeps up to minSlots objects open whatever else is open: enough for a sequential
// reader, a writer filling partial chunks and a flush reading old segments at once. It may
// keep up to cacheSlots (a random reader of a file of that many segments, or of a file
// written at random and so holding that many patches, then opens each object once
// instead of reopening one on most reads) while the Store's Files together keep fewer
// than extraObjects open beyond their first minSlots, so that thousands of open files do
// not exhaust file descriptors. A File's slots grow as it fills them.
const (
	minSlots     = 8
	cacheSlots   = 512
	extraObjects = 2048
)

// openObject is an object opened for reading, with its header and length checked.
type openObject struct {
	seg segState // the segment it was opened for; a cached object serves only that one
	obj blob.Object
	r   *vault.ObjectReader

	// Guarded by readerCache.mu.
	refs int
	used uint64
	gone bool // out of the cache; closed when the last user releases it
}

// readerCache keeps the last few objects a File used open, so that a sequential read
// pays blob.Open and the header and last-chunk checks once per segment, not per call.
// Entries are reference counted because readers share them under the File's read lock
// while one of them may evict an entry to make room.
type readerCache struct {
	mu    sync.Mutex
	tick  uint64
	slots []*openObject // grows up to cacheSlots
}

// acquire returns the open object of segment e, opening it on a miss. The caller must
// release it. f.mu must be held, or f.flushMu (the File is then not closed).
func (f *File) acquire(ctx context.Context, e segState) (*openObject, error) {
	return f.acquireWith(ctx, e, f.cipher)
}

// acquireWith is acquire for a caller that holds neither lock (a read-ahead worker): it
// passes the cipher it took under f.mu, which Close clears.
func (f *File) acquireWith(ctx context.Context, e segState, cph *vault.ContentCipher) (*openObject, error) {
	c := &f.cache
	c.mu.Lock()
	if o := c.lookup(e); o != nil {
		c.mu.Unlock()
		return o, nil
	}
	c.mu.Unlock()

	// Open outside the lock: it does I/O and decrypts the last chunk, and other segments'
	// readers should not wait for it.
	o, err := f.openSegment(ctx, e, cph)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if old := c.lookup(e); old != nil {
		// Another reader opened it meanwhile; use theirs.
		c.mu.Unlock()
		o.obj.Close()
		return old, nil
	}
	free, lru, held := -1, -1, 0
	for i, s := range c.slots {
		switch {
		case s == nil:
			if free < 0 {
				free = i
			}
		default:
			held++
			if lru < 0 || s.used < c.slots[lru].used {
				lru = i
			}
		}
	}
	victim := free
	if free < 0 && len(c.slots) < cacheSlots && (held < minSlots || f.store.extraOpen.Load() < extraObjects) {
		c.slots = append(c.slots, nil)
		victim = len(c.slots) - 1
	} else if free < 0 || (held >= minSlots && f.store.extraOpen.Load() >= extraObjects) {
		victim = lru
	}
	var closeNow *openObject
	if v := c.slots[victim]; v != nil {
		v.gone = true
		if v.refs == 0 {
			closeNow = v
		}
	} else if held >= minSlots {
		f.store.extraOpen.Add(1)
	}
	c.tick++
	o.refs, o.used = 1, c.tick
	c.slots[victim] = o
	c.mu.Unlock()
	if closeNow != nil {
		closeNow.obj.Close()
	}
	return o, nil
}

// lookup finds a cached object for e and takes a reference. c.mu must be held.
func (c *readerCache) lookup(e segState) *openObject {
	for _, o := range c.slots {
		// The ID alone is not enough: damaged metadata could name one object for two
		// segments, and the reader was checked against one segment's header and length.
		if o != nil && o.seg.obj == e.obj && o.seg.index == e.index && o.seg.objLen == e.objLen && o.seg.first == e.first {
			c.tick++
			o.refs++
			o.used = c.tick
			return o
		}
	}
	return nil
}

// release gives back a reference taken by acquire.
func (f *File) release(o *openObject) {
	c := &f.cache
	c.mu.Lock()
	o.refs--
	closeNow := o.gone && o.refs == 0
	c.mu.Unlock()
	if closeNow {
		o.obj.Close()
	}
}

// evict closes the cached objects for which drop returns true (all of them when drop is
// nil), or marks them to be closed by their last user.
func (f *File) evict(drop func(blob.ID) bool) {
	c := &f.cache
	c.mu.Lock()
	closeNow := make([]*openObject, len(c.slots))
	n := 0
	held := 0
	for _, o := range c.slots {
		if o != nil {
			held++
		}
	}
	for i, o := range c.slots {
		if o == nil || (drop != nil && !drop(o.seg.obj)) {
			continue
		}
		c.slots[i] = nil
		if held > minSlots {
			f.store.extraOpen.Add(-1)
		}
		held--
		o.gone = true
		if o.refs == 0 {
			closeNow[n] = o
			n++
		}
	}
	c.mu.Unlock()
	for _, o := range closeNow[:n] {
		o.obj.Close()
	}
}

// openSegment opens segment e's object and checks it: header (file, object, first
// chunk) and length; every chunk, the last included, is checked by the read that uses it. Everything that means stored data is lost or damaged
// wraps ErrIntegrity.
func (f *File) openSegment(ctx context.Context, e segState, cph *vault.ContentCipher) (*openObject, error) {
	obj, err := f.blobs.Open(ctx, e.obj)
	if errors.Is(err, blob.ErrNotFound) {
		// The metadata names it, so it was committed: its absence is lost data.
		return nil, fmt.Errorf("%w: file %s segment %d: object %s is missing: %w", ErrIntegrity, f.id, e.index, e.obj, err)
	}
	if err != nil {
		return nil, fmt.Errorf("file %s segment %d: %w", f.id, e.index, err)
	}
	// A patch's object starts at its first block; a segment's own object at block 0.
	abs := uint64(e.index*f.segChunks*blocksPerChunk + e.first)
	h := vault.ObjectHeader{FileID: f.id, ObjectID: vault.ObjectID(e.obj), FirstChunk: abs / blocksPerChunk, FirstBlock: uint8(abs % blocksPerChunk)}
	// The file's size, from the metadata, implies the object's length: the object is
	// opened for exactly that, and its last chunk is checked when a read reaches it.
	r, err := vault.NewObjectReaderOfSize(obj, obj.Size(), cph, h, e.objLen)
	if err != nil {
		obj.Close()
		return nil, fmt.Errorf("file %s segment %d: %w", f.id, e.index, err)
	}
	return &openObject{seg: e, obj: obj, r: r}, nil
}
