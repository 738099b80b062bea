package content

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"dsh/blob"
	"dsh/vault"
)

// Flush writes every dirty segment as a new object, merging the segment's old object with
// the dirty chunks (a segment dirty throughout is written without reading the old one),
// commits the objects in the blob store and then calls the File's CommitFunc. When that
// returns nil, the new objects are the file's state. When anything fails, the new objects
// are deleted and the dirty data is kept for the next flush, so nothing is lost. Flush is
// a no-op that does not call the CommitFunc when nothing is dirty.
//
// Flushes of one File run one at a time. Reads go on while a flush runs; writes go on too
// and stay dirty for the next flush.
func (f *File) Flush(ctx context.Context) error {
	return f.flush(ctx, -1)
}

// flushPlan is a flush's snapshot of the File. Nothing in it changes while the flush runs:
// segs and committed are replaced, never modified, and Truncate waits for the flush.
type flushPlan struct {
	size      int64 // of the staged state
	todo      []int64
	segs      []segState
	committed []segState
	chunks    map[int64]*chunkBuf // the File's flushing map
	cipher    *vault.ContentCipher
	fileID    vault.FileID // the objects' file ID: the File's, or a new one (seals.go)
}

// flush writes out the File's changes. keep is the segment WriteAt is filling, which an
// automatic flush leaves dirty when it can (see keepable); -1 flushes everything.
func (f *File) flush(ctx context.Context, keep int64) error {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrClosed
	}
	if f.cipher == nil {
		// Forgotten: Forget flushed everything, and every change needs the key first. Data
		// that is dirty all the same must not be reported durable.
		dirty := len(f.dirty) > 0 || f.size != f.committedSize || f.segsChanged
		f.mu.Unlock()
		if dirty {
			return ErrLocked
		}
		return nil
	}
	plan, ok := f.snapshot(keep)
	f.mu.Unlock()
	if !ok {
		return nil
	}

	written, created, err := f.writeSegments(ctx, &plan)
	if err != nil {
		return f.abort(ctx, &plan, created, fmt.Errorf("flush file %s: %w", f.id, err))
	}
	list := mergeSegments(plan.segs, written, segCount(plan.size, f.segSize))
	st := Staged{
		Size:     plan.size,
		Segments: make([]Segment, len(list)),
		New:      make([]blob.ID, len(created)),
		Changed:  make([]uint64, len(plan.todo)),
		FileID:   f.id,
		Key:      f.wrapped,
		Seals:    f.seals + sealed(created),
	}
	for i, e := range list {
		st.Segments[i] = stagedSegment(e)
	}
	for i, e := range created {
		st.New[i] = e.obj
	}
	for i, s := range plan.todo {
		st.Changed[i] = uint64(s)
	}
	st.Dropped = droppedObjects(plan.committed, list)
	if err := f.commit(ctx, st); err != nil {
		return f.abort(ctx, &plan, created, fmt.Errorf("flush file %s: commit: %w", f.id, err))
	}
	f.seals = st.Seals
	f.publish(&plan, list, st.Dropped)
	return nil
}

// droppedObjects returns the objects of the committed segments that the new list no
// longer names. An object belongs to one segment (its chunks are sealed with their absolute
// index, and open refuses an object two segments name), so only a segment whose state
// changed can drop one, and it can only be kept by the same segment's new state. A flush
// of a file with thousands of patches thus costs what its changed segments hold, not the
// whole file's patch lists.
func droppedObjects(committed, list []segState) []blob.ID {
	var dropped []blob.ID
	j := 0
	for _, e := range committed {
		for j < len(list) && list[j].index < e.index {
			j++
		}
		var now *segState
		if j < len(list) && list[j].index == e.index {
			now = &list[j]
			if sameState(e, *now) {
				continue
			}
		}
		kept := map[blob.ID]struct{}{}
		if now != nil {
			for _, id := range now.objects() {
				kept[id] = struct{}{}
			}
		}
		for _, id := range e.objects() {
			if _, ok := kept[id]; !ok {
				dropped = append(dropped, id)
			}
		}
	}
	return dropped
}

// sameState reports whether two states of a segment are the one state: the same object
// and the same patch list (lists are replaced, never changed in place).
func sameState(a, b segState) bool {
	if a.obj != b.obj || a.valid != b.valid || len(a.patches) != len(b.patches) {
		return false
	}
	return len(a.patches) == 0 || &a.patches[0] == &b.patches[0]
}

// snapshot decides what the flush writes and moves the dirty chunks it covers to the
// flushing map. It reports false when there is nothing to commit. f.mu and f.flushMu must
// be held.
func (f *File) snapshot(keep int64) (flushPlan, bool) {
	size, exclude := f.size, int64(-1)
	if keep >= 0 {
		if s, ok := f.keepable(keep); ok {
			size, exclude = s, keep
		}
	}
	n := segCount(size, f.segSize)
	var todo []int64
	for s := range f.dirtySegs {
		if s != exclude {
			todo = append(todo, s)
		}
	}
	// Stored segments that changed without a write: cut by Truncate, or whose length the
	// new size changes (the old last segment of a file that grew).
	for _, e := range f.segs {
		if e.index >= n {
			break
		}
		if e.index != exclude && f.dirtySegs[e.index] == 0 &&
			(e.valid != e.objLen || e.objLen != segLen(e.index, size, f.segSize)) {
			todo = append(todo, e.index)
		}
	}
	if len(todo) == 0 && size == f.committedSize && !f.segsChanged {
		return flushPlan{}, false
	}
	slices.Sort(todo)

	fl := f.spare
	f.spare = nil
	if fl == nil {
		fl = make(map[int64]*chunkBuf, len(f.dirty))
	}
	for c, b := range f.dirty {
		if c/f.segChunks != exclude {
			fl[c] = b
			delete(f.dirty, c)
		}
	}
	for s := range f.dirtySegs {
		if s != exclude {
			delete(f.dirtySegs, s)
		}
	}
	f.flushing = fl
	return flushPlan{size: size, todo: todo, segs: f.segs, committed: f.committed, chunks: fl, cipher: f.cipher, fileID: f.id}, true
}

// flushWorkers is how many segments a flush writes at once: sealing one while another
// waits for its fsync keeps both the CPU and the disk busy. Each worker holds a scratch
// chunk and the blob store's write buffer, so memory grows little.
const flushWorkers = 4

// flushJob is one object a flush writes: a whole segment, or a run of one as a patch.
type flushJob struct {
	whole segState  // when run.to == 0: the segment's new object
	old   *segState // its stored state, to merge from
	seg   int64
	run   patchRun
}

// writeSegments writes the plan's segments, each whole or as patches (patch.go), several
// objects at once. It returns the new state of each segment written and every object it
// may have created, even on error, so that abort can delete them.
func (f *File) writeSegments(ctx context.Context, plan *flushPlan) (written, created []segState, err error) {
	total := 0
	for _, e := range plan.segs {
		total += len(e.patches)
	}
	// IDs are drawn up front, so that on failure the caller knows every object that may
	// exist, whichever worker stopped where.
	var jobs []flushJob
	written = make([]segState, len(plan.todo))
	for i, s := range plan.todo {
		var old *segState
		if k, ok := findSeg(plan.segs, s); ok {
			old = &plan.segs[k]
		}
		if runs, ok := f.patchable(plan, s, old, &total); ok {
			for j := range runs {
				runs[j].obj = blob.NewSmallIDFor(f.blobs)
				jobs = append(jobs, flushJob{seg: s, run: runs[j]})
				created = append(created, segState{index: s, obj: runs[j].obj,
					objLen: patchLen(runs[j].from, runs[j].to-runs[j].from, segLen(s, plan.size, f.segSize))})
			}
			written[i] = withPatches(*old, runs, segLen(s, plan.size, f.segSize))
			continue
		}
		l := segLen(s, plan.size, f.segSize)
		w := segState{index: s, obj: blob.NewIDFor(f.blobs), objLen: l, valid: l, to: f.segChunks * blocksPerChunk}
		jobs = append(jobs, flushJob{seg: s, whole: w, old: old})
		created = append(created, w)
		written[i] = w
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		errMu    sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	work := func() {
		scratch := f.store.getChunk(nil)
		defer func() {
			scratch.n = vault.ChunkSize // it held plaintext of old objects: wipe it all
			f.store.putChunk(scratch)
		}()
		for {
			i := int(next.Add(1) - 1)
			if i >= len(jobs) || ctx.Err() != nil {
				return
			}
			j := jobs[i]
			var err error
			var obj blob.ID
			if j.run.to > 0 {
				obj = j.run.obj
				err = f.writeRun(ctx, plan, j.seg, j.run)
			} else {
				obj = j.whole.obj
				err = f.writeObject(ctx, plan, j.whole, j.old, scratch)
			}
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("segment %d: object %s: %w", j.seg, obj, err)
				}
				errMu.Unlock()
				cancel() // the others stop at their next object
				return
			}
		}
	}
	workers := min(flushWorkers, len(jobs))
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return written, created, firstErr
}

// writeObject writes the new object w: chunk by chunk from the flushing buffers, the
// segment's old object old, or zeros.
func (f *File) writeObject(ctx context.Context, plan *flushPlan, w segState, old *segState, scratch *chunkBuf) error {
	s, l, id := w.index, w.objLen, w.obj
	p, err := f.blobs.Create(ctx, id)
	if err != nil {
		return err
	}
	defer p.Abort() // a no-op once committed
	h := vault.ObjectHeader{FileID: plan.fileID, ObjectID: vault.ObjectID(id), FirstChunk: uint64(s * f.segChunks)}
	ow, err := vault.NewObjectWriter(p, plan.cipher, h)
	if err != nil {
		return err
	}
	first := s * f.segChunks
	for rel := int64(0); rel < l; rel += vault.ChunkSize {
		n := int(min(vault.ChunkSize, l-rel))
		src := zeroChunk[:n]
		if b := plan.chunks[first+rel/vault.ChunkSize]; b != nil {
			src = b.data[:n]
			if b.loaded != allBlocks && old != nil && rel < old.valid {
				// Blocks never read in hold what the old object holds there.
				src = scratch.data[:n]
				if _, err := f.readObject(ctx, *old, src, rel); err != nil {
					ow.Close()
					return fmt.Errorf("read old object to merge: %w", err)
				}
				for k := range blocksPerChunk {
					if b.loaded&(1<<k) != 0 {
						from := k * vault.BlockSize
						copy(src[min(from, n):min(from+vault.BlockSize, n)], b.data[from:])
					}
				}
			}
		} else if old != nil && rel < old.valid {
			src = scratch.data[:n]
			if _, err := f.readObject(ctx, *old, src, rel); err != nil {
				ow.Close()
				return fmt.Errorf("read old object to merge: %w", err)
			}
		}
		if _, err := ow.Write(src); err != nil {
			ow.Close()
			return err
		}
	}
	if err := ow.Close(); err != nil {
		return err
	}
	return p.Commit(ctx)
}

// mergeSegments returns the segment list after a flush: old with the written segments
// replacing or joining it, cut to n segments.
func mergeSegments(old, written []segState, n int64) []segState {
	list := make([]segState, 0, len(old)+len(written))
	i, j := 0, 0
	for i < len(old) || j < len(written) {
		switch {
		case j == len(written) || (i < len(old) && old[i].index < written[j].index):
			if old[i].index < n {
				list = append(list, old[i])
			}
			i++
		case i == len(old) || written[j].index < old[i].index:
			list = append(list, written[j])
			j++
		default:
			list = append(list, written[j])
			i++
			j++
		}
	}
	return list
}

// publish makes a committed flush the File's state. f.flushMu must be held.
func (f *File) publish(plan *flushPlan, list []segState, dropped []blob.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.segs, f.committed = list, list
	f.committedSize = plan.size
	f.segsChanged = false
	f.releaseFlushing()
	f.resetReadAhead()
	if len(dropped) > 0 {
		f.evict(func(id blob.ID) bool { return slices.Contains(dropped, id) })
	}
}

// abort undoes a failed flush: the flushed chunks become dirty again, unless a write made
// a newer copy meanwhile, and the objects written are deleted. It returns err, joined with
// any failure to delete (the objects are then unreferenced and collected later).
func (f *File) abort(ctx context.Context, plan *flushPlan, written []segState, err error) error {
	f.mu.Lock()
	for c, b := range plan.chunks {
		if nb := f.dirty[c]; nb != nil {
			// The newer copy started from this one's content: its blocks that this flush
			// did not get to the disk are still to be written.
			nb.dirty |= b.dirty
			f.store.putChunk(b)
			continue
		}
		f.dirty[c] = b
		f.dirtySegs[c/f.segChunks]++
	}
	clear(plan.chunks)
	f.spare, f.flushing = plan.chunks, nil
	f.mu.Unlock()

	// The flush may have failed because ctx ended; the cleanup must still run.
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, e := range written {
		if derr := f.blobs.Delete(ctx, e.obj); derr != nil && !errors.Is(derr, blob.ErrNotFound) {
			errs = append(errs, derr)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (and removing its new objects: %w)", err, errors.Join(errs...))
	}
	return err
}

// releaseFlushing frees the buffers of a committed flush. f.mu must be held.
func (f *File) releaseFlushing() {
	for _, b := range f.flushing {
		f.store.putChunk(b)
	}
	clear(f.flushing)
	f.spare, f.flushing = f.flushing, nil
}
