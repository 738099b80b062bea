package content

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"dsh/blob"
	"dsh/vault"
)

// File is the live content of one open file: its stored segments and the writes not yet
// flushed. The caller keeps one per inode, shared by every handle, so that all handles
// see each other's writes. It is safe for concurrent use: reads share a lock per File,
// writes take it alone, and a flush holds it only to take and to publish its snapshot.
type File struct {
	store     *Store
	blobs     blob.Store
	id        vault.FileID
	share     string // with wrapped and id: what Unlock needs after Forget
	commit    CommitFunc
	segChunks int64
	segSize   int64
	maxDirty  int64

	// flushMu serializes flushes, and keeps Truncate and Close out of a running flush,
	// which reads segs and the flushing buffers without holding mu.
	flushMu sync.Mutex

	mu     sync.RWMutex
	cipher *vault.ContentCipher // nil after Close, and after Forget until Unlock
	closed bool
	size   int64
	// committedSize and committed are the state the metadata last recorded. segs is the
	// current view of the stored objects: the same slice, until a Truncate cuts it (it
	// then copies, so committed stays as recorded).
	committedSize int64
	committed     []segState
	segs          []segState
	segsChanged   bool // a Truncate changed segs since the last commit
	// dirty holds the unflushed chunks by absolute chunk index; dirtySegs counts them per
	// segment.
	dirty     map[int64]*chunkBuf
	dirtySegs map[int64]int
	// flushing holds the chunks a running flush is writing. Nobody changes them while it
	// runs: a write to one of those chunks copies it into dirty first, and reads look in
	// dirty before flushing.
	flushing map[int64]*chunkBuf
	spare    map[int64]*chunkBuf // an empty map kept for the next flush

	cache readerCache
	ra    readAhead

	// wrapped is the content key as stored; seals counts the chunks sealed under it, as
	// committed (seals.go). Guarded by flushMu; a rollover changes wrapped and id with mu
	// held as well, so that Unlock, which holds only mu, reads a matching pair.
	wrapped vault.WrappedKey
	seals   uint64
}

// Size returns the file's size, including unflushed writes and truncations.
func (f *File) Size() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.size
}

// Dirty reports whether the file holds changes that are not committed: unflushed writes,
// a changed size, or a flush that has not yet committed. After Close it reports false:
// whatever was not flushed is gone.
func (f *File) Dirty() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return !f.closed && (len(f.dirty) > 0 || len(f.flushing) > 0 || f.size != f.committedSize || f.segsChanged)
}

// dirtyChunk returns the unflushed buffer of chunk c, if any. f.mu must be held.
func (f *File) dirtyChunk(c int64) *chunkBuf {
	if b := f.dirty[c]; b != nil {
		return b
	}
	return f.flushing[c]
}

// ReadAt reads len(p) bytes at off, seeing unflushed writes. It reads short only at the
// end of the file, with a nil error as FUSE expects, and returns 0, nil at or past the end.
// Holes read as zeros. Stored data that is missing, damaged or of the wrong length fails
// with an error wrapping ErrIntegrity, after the bytes before it.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read file %s: negative offset %d", f.id, off)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, ErrClosed
	}
	if err := f.needKey(); err != nil {
		return 0, err
	}
	if off >= f.size || len(p) == 0 {
		return 0, nil
	}
	if rest := f.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	// Most reads meet no unflushed data; they skip the per-chunk lookups.
	anyDirty := len(f.dirty) > 0 || len(f.flushing) > 0
	end := off + int64(len(p))
	seq := f.ra.note(off, end)
	done := 0
	for pos := off; pos < end; pos = off + int64(done) {
		c := pos / vault.ChunkSize
		if anyDirty {
			if b := f.dirtyChunk(c); b != nil {
				in := int(pos - c*vault.ChunkSize)
				n, err := f.readDirty(ctx, c, b, p[done:done+int(min(int64(len(p)-done), int64(vault.ChunkSize-in)))], in)
				done += n
				if err != nil {
					return done, err
				}
				continue
			}
		}
		// A run of stored bytes: up to the end of the segment, of the read or the next
		// unflushed chunk, read from the object in one call.
		seg := pos / f.segSize
		runEnd := min(end, (seg+1)*f.segSize)
		if anyDirty {
			for c++; c*vault.ChunkSize < runEnd; c++ {
				if f.dirtyChunk(c) != nil {
					runEnd = c * vault.ChunkSize
					break
				}
			}
		}
		dst := p[done : done+int(runEnd-pos)]
		n, err := f.readStoredAhead(ctx, seg, dst, pos-seg*f.segSize)
		done += n
		if err != nil {
			return done, err
		}
	}
	if seq {
		f.readAhead(end)
	}
	return done, nil
}

// readStored fills dst from segment seg's stored state at offset rel within the segment:
// the object up to its valid length, zeros past it and in holes. f.mu must be held.
func (f *File) readStored(ctx context.Context, seg int64, dst []byte, rel int64) (int, error) {
	i, ok := findSeg(f.segs, seg)
	if !ok {
		clear(dst)
		return len(dst), nil
	}
	return f.readObject(ctx, f.segs[i], dst, rel)
}

// readStoredAhead is readStored for ReadAt: it takes what it can from the read-ahead
// windows and reads the rest from the object. f.mu must be held.
func (f *File) readStoredAhead(ctx context.Context, seg int64, dst []byte, rel int64) (int, error) {
	i, ok := findSeg(f.segs, seg)
	if !ok {
		clear(dst)
		return len(dst), nil
	}
	e := f.segs[i]
	if len(e.patches) > 0 {
		return f.readPatched(ctx, e, dst, rel) // read-ahead knows only whole objects
	}
	// Only the valid part of the object comes from it, ahead or not.
	v := int(max(0, min(int64(len(dst)), e.valid-rel)))
	k := 0
	if v > 0 {
		k = f.serveAhead(e, dst[:v], rel)
	}
	n, err := f.readObject(ctx, e, dst[k:], rel+int64(k))
	return k + n, err
}

// readObject fills dst from segment e at offset rel within the segment.
func (f *File) readObject(ctx context.Context, e segState, dst []byte, rel int64) (int, error) {
	if len(e.patches) > 0 {
		return f.readPatched(ctx, e, dst, rel)
	}
	v := int(max(0, min(int64(len(dst)), e.valid-rel)))
	if v > 0 {
		o, err := f.acquire(ctx, e)
		if err != nil {
			return 0, err
		}
		n, err := o.r.ReadAt(dst[:v], rel)
		f.release(o)
		if n < v {
			if err == nil {
				err = fmt.Errorf("%w: short read", ErrIntegrity)
			}
			return n, fmt.Errorf("read file %s segment %d: %w", f.id, e.index, err)
		}
	}
	clear(dst[v:])
	return len(dst), nil
}

// WriteAt writes p at off, growing the file if needed; a gap before off reads as zeros.
// The data stays in memory until the next flush; when more than MaxDirty bytes are
// waiting, WriteAt flushes by itself. If that flush fails, WriteAt returns its error, but
// the bytes written are kept and a later flush retries them.
func (f *File) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("write file %s: negative offset %d", f.id, off)
	}
	if off > MaxSize || int64(len(p)) > MaxSize-off {
		return 0, fmt.Errorf("write file %s: %d bytes at %d: %w", f.id, len(p), off, ErrTooLarge)
	}
	done := 0
	// usable checks, with f.mu held, what may have changed while it was let go (a relief
	// of the budget, a flush): a Close, or a Forget, after which no chunk may be made dirty
	// (no flush of a forgotten File would write it, and a merge needs the key).
	usable := func() error {
		if f.closed {
			return ErrClosed
		}
		return f.needKey()
	}
	f.mu.Lock()
	// Segment by segment, so that the dirty limit holds even for one huge write.
	for done < len(p) {
		if err := usable(); err != nil {
			f.mu.Unlock()
			return done, err
		}
		if f.store.budget.over() {
			// The writers of all open files together hold too much: flush the largest
			// holder (perhaps this File) before taking more.
			f.mu.Unlock()
			f.store.budget.relieve(ctx)
			f.mu.Lock()
			if err := usable(); err != nil {
				f.mu.Unlock()
				return done, err
			}
		}
		pos := off + int64(done)
		seg := pos / f.segSize
		if f.wantAutoFlush(seg) {
			// Over the limit before writing: the last automatic flush failed, or other
			// writers filled the buffers meanwhile. Refusing the write if this flush fails
			// too is what keeps memory bounded while the store is failing.
			f.mu.Unlock()
			if err := f.flush(ctx, seg); err != nil {
				return done, err
			}
			f.mu.Lock()
			if err := usable(); err != nil {
				f.mu.Unlock()
				return done, err
			}
		}
		n := int(min(int64(len(p)-done), (seg+1)*f.segSize-pos))
		k, err := f.writeLocked(ctx, p[done:done+n], pos)
		done += k
		if err != nil {
			f.mu.Unlock()
			return done, err
		}
		if f.wantAutoFlush(seg) {
			f.mu.Unlock()
			if err := f.flush(ctx, seg); err != nil {
				// The bytes are written and stay dirty; the error tells the writer that
				// the store is failing.
				return done, err
			}
			f.mu.Lock()
		}
	}
	f.mu.Unlock()
	return done, nil
}

// writeLocked copies p to the chunk buffers at pos. f.mu must be held.
func (f *File) writeLocked(ctx context.Context, p []byte, pos int64) (int, error) {
	done := 0
	for done < len(p) {
		at := pos + int64(done)
		c := at / vault.ChunkSize
		in := int(at - c*vault.ChunkSize)
		n := min(len(p)-done, vault.ChunkSize-in)
		b := f.dirty[c]
		if b == nil {
			var err error
			if b, err = f.newDirty(ctx, c, in, in+n); err != nil {
				return done, err
			}
		} else if err := f.loadEdges(ctx, c, b, in, in+n); err != nil {
			return done, err
		}
		copy(b.data[in:], p[done:done+n])
		b.markDirty(in, in+n)
		b.n = max(b.n, in+n)
		done += n
		f.size = max(f.size, at+int64(n))
	}
	return done, nil
}

// newDirty makes chunk c dirty before bytes [from, to) of it are overwritten. Of the
// stored content, only the blocks the write covers in part are read now (see chunkBuf).
// f.mu must be held.
func (f *File) newDirty(ctx context.Context, c int64, from, to int) (*chunkBuf, error) {
	b := f.store.getChunk(f)
	start := c * vault.ChunkSize
	if fb := f.flushing[c]; fb != nil {
		// A flush is writing this chunk: copy, and leave its buffer unchanged.
		b.n = copy(b.data[:], fb.data[:fb.n])
		b.loaded = fb.loaded
	} else if have := int(max(0, min(vault.ChunkSize, f.size-start))); have > 0 {
		// Blocks past the stored content are zeros, known without a read.
		stored, _ := blocksIn(0, have)
		b.loaded = allBlocks &^ stored
		b.n = have
	} else {
		b.loaded = allBlocks
	}
	if err := f.loadEdges(ctx, c, b, from, to); err != nil {
		f.store.putChunk(b)
		return nil, err
	}
	f.dirty[c] = b
	f.dirtySegs[c/f.segChunks]++
	return b, nil
}

// loadEdges reads in the blocks that bytes [from, to) of dirty chunk c touch without
// covering them whole, unless loaded: what a write there keeps of them. f.mu must be held
// for writing.
func (f *File) loadEdges(ctx context.Context, c int64, b *chunkBuf, from, to int) error {
	touched, whole := blocksIn(from, to)
	return f.loadBlocks(ctx, c, b, touched&^whole&^b.loaded)
}

// loadBlocks reads the blocks of mask into dirty chunk c from the stored state, each run of
// them with one read. f.mu must be held for writing.
func (f *File) loadBlocks(ctx context.Context, c int64, b *chunkBuf, mask uint16) error {
	start := c * vault.ChunkSize
	seg := start / f.segSize
	for k := 0; k < blocksPerChunk; {
		if mask&(1<<k) == 0 {
			k++
			continue
		}
		j := k
		for j < blocksPerChunk && mask&(1<<j) != 0 {
			j++
		}
		from, to := k*vault.BlockSize, min(j*vault.BlockSize, b.n)
		if from < to {
			if _, err := f.readStored(ctx, seg, b.data[from:to], start+int64(from)-seg*f.segSize); err != nil {
				clear(b.data[from:to])
				return fmt.Errorf("write file %s: read chunk %d to merge: %w", f.id, c, err)
			}
		}
		for ; k < j; k++ {
			b.loaded |= 1 << k
		}
	}
	return nil
}

// readDirty copies len(dst) bytes at in of unflushed chunk c into dst: loaded blocks from
// the buffer, the others from the stored state. f.mu must be held.
func (f *File) readDirty(ctx context.Context, c int64, b *chunkBuf, dst []byte, in int) (int, error) {
	if b.loaded == allBlocks {
		return copy(dst, b.data[in:]), nil
	}
	start := c * vault.ChunkSize
	seg := start / f.segSize
	done := 0
	for done < len(dst) {
		pos := in + done
		k := pos / vault.BlockSize
		loaded := b.loaded&(1<<k) != 0
		end := pos
		for end < in+len(dst) && (b.loaded&(1<<(end/vault.BlockSize)) != 0) == loaded {
			end = min((end/vault.BlockSize+1)*vault.BlockSize, in+len(dst))
		}
		if loaded {
			done += copy(dst[done:done+end-pos], b.data[pos:end])
			continue
		}
		n, err := f.readStored(ctx, seg, dst[done:done+end-pos], start+int64(pos)-seg*f.segSize)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// dropDirty frees dirty chunk c. f.mu must be held.
func (f *File) dropDirty(c int64, b *chunkBuf) {
	delete(f.dirty, c)
	s := c / f.segChunks
	if f.dirtySegs[s]--; f.dirtySegs[s] <= 0 {
		delete(f.dirtySegs, s)
	}
	f.store.putChunk(b)
}

// heldBytes is the memory in chunk buffers: unflushed and being flushed. f.mu must be held.
func (f *File) heldBytes() int64 {
	return int64(len(f.dirty)+len(f.flushing)) * vault.ChunkSize
}

// wantAutoFlush reports whether the write that just went into segment seg should flush.
// Over MaxDirty it does, unless the segment being written may be left out of the flush
// (see keepable) and the rest is too little to be worth a flush: then the writer goes on
// filling that one segment, which bounds memory at MaxDirty plus a segment, and the
// segment is written once, whole, rather than again at every flush. f.mu must be held.
func (f *File) wantAutoFlush(seg int64) bool {
	held := f.heldBytes()
	if held <= f.maxDirty {
		return false
	}
	if _, ok := f.keepable(seg); !ok {
		return true
	}
	rest := held - int64(f.dirtySegs[seg])*vault.ChunkSize
	return rest > 0 && rest >= f.maxDirty/2
}

// keepable reports whether a flush may leave segment seg's dirty chunks out and still
// commit a consistent state, and the size that state has. That is so when seg's stored
// object (if any) is untouched by truncation and keeps the length it has in the state:
// seg is then either not the last segment and full (or a hole), or the last one, and the
// state ends where its stored part ends. The state must not be smaller than the last
// committed one, whose bytes a crash would otherwise lose. f.mu must be held.
func (f *File) keepable(seg int64) (int64, bool) {
	start := seg * f.segSize
	if start >= f.size {
		return 0, false
	}
	var e *segState
	if i, ok := findSeg(f.segs, seg); ok {
		e = &f.segs[i]
		if e.valid != e.objLen {
			return 0, false
		}
	}
	if (f.size-1)/f.segSize != seg {
		if e != nil && e.objLen != f.segSize {
			return 0, false
		}
		return f.size, true
	}
	size := start
	if e != nil {
		size += e.objLen
	}
	if size < f.committedSize {
		return 0, false
	}
	return size, true
}

// Truncate sets the file's size. Growing adds zeros; shrinking discards the bytes past
// the new end for good: they never reappear if the file grows again. It waits for a
// running flush.
func (f *File) Truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return fmt.Errorf("truncate file %s: negative size %d", f.id, size)
	}
	if size > MaxSize {
		return fmt.Errorf("truncate file %s to %d bytes: %w", f.id, size, ErrTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("truncate file %s: %w", f.id, err)
	}
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if err := f.needKey(); err != nil {
		return err
	}
	if size < f.size {
		if err := f.cut(ctx, size); err != nil {
			return fmt.Errorf("truncate file %s: %w", f.id, err)
		}
	}
	f.size = size
	return nil
}

// cut discards everything at and past size. f.mu and f.flushMu must be held, so there
// are no flushing buffers. It fails, having changed nothing of the file's content, only
// when a block cut in part cannot be read in.
func (f *File) cut(ctx context.Context, size int64) error {
	for c, b := range f.dirty {
		start := c * vault.ChunkSize
		if start < size && start+int64(b.n) > size {
			// What is left of the block cut in part must be in the buffer.
			if err := f.loadEdges(ctx, c, b, int(size-start), b.n); err != nil {
				return err
			}
		}
	}
	for c, b := range f.dirty {
		start := c * vault.ChunkSize
		switch {
		case start >= size:
			f.dropDirty(c, b)
		case start+int64(b.n) > size:
			in := int(size - start)
			clear(b.data[in:b.n])
			// The blocks past the new end hold nothing of the file any more: known zeros,
			// and nothing to write (a patch must not reach past the segment's end). The
			// block the end falls in keeps its state, read in above: its bytes past the end
			// are never stored.
			touched, _ := blocksIn(in, b.n)
			b.loaded |= touched
			past := uint16(allBlocks) << ((in + vault.BlockSize - 1) / vault.BlockSize)
			b.dirty &^= past
			b.n = in
		}
	}
	// Only the last segment left can reach past the new end. segs may be shared with
	// committed: change a copy.
	i, _ := findSeg(f.segs, segCount(size, f.segSize))
	clip := i > 0 && f.segs[i-1].index*f.segSize+f.segs[i-1].valid > size
	if i == len(f.segs) && !clip {
		return nil
	}
	segs := slices.Clone(f.segs[:i])
	if clip {
		last := &segs[i-1]
		last.valid = size - last.index*f.segSize
	}
	f.segs = segs
	f.segsChanged = true
	f.resetReadAhead()
	return nil
}

// Close discards the file's unflushed data, cached objects and cipher; the caller flushes
// first. It returns how many bytes of unflushed chunks were discarded (counted from each
// chunk's start; an unflushed change of size alone counts as none). It waits for a running flush. Every method fails with
// ErrClosed afterwards; a second Close returns 0.
func (f *File) Close() int64 {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0
	}
	f.closed = true
	f.store.budget.forget(f)
	// The workers must be gone before the cache is emptied: they put objects in it.
	f.stopReadAhead()
	var lost int64
	for c, b := range f.dirty {
		lost += int64(b.n)
		f.dropDirty(c, b)
	}
	f.evict(nil)
	// The cipher holds the key schedule, which cannot be wiped; dropping it is what is left.
	f.cipher = nil
	f.segs, f.committed = nil, nil
	return lost
}
