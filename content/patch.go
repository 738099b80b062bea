package content

import (
	"context"
	"fmt"
	"slices"

	"dsh/blob"
	"dsh/vault"
)

// Patches: small writes cost small.
//
// A segment is one object of up to 16 MiB, and rewriting it whole for every small write
// would make a database's 4 KiB write and fsync cost 16 MiB. So a flush may write the dirty
// blocks (vault.BlockSize, 4 KiB) of a segment as patches instead: each run of consecutive
// written blocks becomes an object of its own (the content format allows an object to
// start at any block), which reads over the segment's own object from then on. A later
// patch over part of an older one splits it (the older object stays, named by what it
// still covers); one over all of it drops it. A 4 KiB write and fsync then writes one
// sealed block and a few hundred bytes of metadata, whatever the file's size.
//
// A segment is written whole instead when it has no object yet (a new or sparse region),
// when its length or its stored bytes changed otherwise (it grew, or a truncate cut into
// it), or when the flush dirties more than patchDirtyMax of its 64 KiB chunks (a streaming
// write: one object is cheaper than many). Patches are also bounded per file
// (maxFilePatches), so that deleting or truncating a file still fits one metadata
// transaction; beyond it, a flush rewrites the segments it touches whole, which folds their
// patches back in. Files larger than patchSegmentsMax segments are always written whole.
const (
	patchDirtyMax    = 16
	maxFilePatches   = 4096
	patchSegmentsMax = 8192
)

// checkPatches turns a segment's stored patches into segStates, refusing a list no flush
// writes: unsorted, overlapping, outside the segment or its object, or naming an object
// another segment names (seen maps each patch object met so far to its segment, and each
// segment's own object to a negative number; the pieces of a split patch share their
// object within one segment). The last matters beyond reading:
// the metadata collects the patch objects a changed segment stops naming, so an object
// named by two segments would be deleted under the other one. Opens of a file that has
// not changed skip this (CheckLayout, cached by the filesystem).
func checkPatches(ps []Patch, idx, segLen, segSize int64, seen map[blob.ID]int64) ([]segState, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	blocks := (segLen + vault.BlockSize - 1) / vault.BlockSize
	// Patches recorded in whole chunks (before blocks, meta.ChunkPatch) may reach to the
	// end of the segment's last chunk, past its last block: they are cut to the last
	// block. Only those: a patch in blocks past the end is refused like any bad list.
	chunkEnd := (segLen + vault.ChunkSize - 1) / vault.ChunkSize * blocksPerChunk
	out := make([]segState, len(ps))
	for i, p := range ps {
		from, to, first, n := int64(p.From), int64(p.To), int64(p.First), int64(p.Blocks)
		inChunks := from%blocksPerChunk == 0 && to%blocksPerChunk == 0 && first%blocksPerChunk == 0 && n%blocksPerChunk == 0
		if inChunks && to > blocks && to <= chunkEnd {
			to = blocks
		}
		if from >= to || from < first || to > first+n || to > blocks || n > segSize/vault.BlockSize {
			return nil, fmt.Errorf("%w: segment %d: a patch over blocks [%d, %d) of an object of %d blocks from %d", ErrIntegrity, idx, from, to, n, first)
		}
		if i > 0 && ps[i-1].To > p.From {
			return nil, fmt.Errorf("%w: segment %d: patches overlap or are out of order", ErrIntegrity, idx)
		}
		if other, dup := seen[p.Object]; dup && other != idx {
			return nil, fmt.Errorf("%w: object %s is named by two segments", ErrIntegrity, p.Object)
		}
		seen[p.Object] = idx
		l := patchLen(first, n, segLen)
		out[i] = segState{index: idx, obj: p.Object, objLen: l, valid: l, first: first, from: from, to: to}
	}
	return out, nil
}

// patchLen is the plaintext length of a patch object holding n blocks from block first of
// a segment segLen bytes long: the last block of the file may be partial.
func patchLen(first, n, segLen int64) int64 {
	return min(n*vault.BlockSize, segLen-first*vault.BlockSize)
}

// patchAt returns the patch of e covering block c (relative to the segment), or, when none
// does, nil and the first block after c that a patch covers (to: the segment's end).
func (e *segState) patchAt(c int64) (*segState, int64) {
	i, _ := slices.BinarySearchFunc(e.patches, c, func(p segState, c int64) int {
		switch {
		case p.to <= c:
			return -1
		case p.from > c:
			return 1
		}
		return 0
	})
	if i < len(e.patches) && e.patches[i].from <= c {
		return &e.patches[i], 0
	}
	if i < len(e.patches) {
		return nil, e.patches[i].from
	}
	return nil, e.to
}

// readPatched is readObject for a segment with patches: each byte from the patch that
// covers its chunk, or from the segment's own object; zeros past valid.
func (f *File) readPatched(ctx context.Context, e segState, dst []byte, rel int64) (int, error) {
	v := int(max(0, min(int64(len(dst)), e.valid-rel)))
	done := 0
	for done < v {
		pos := rel + int64(done)
		c := pos / vault.BlockSize
		src, end := &e, int64(0)
		if p, next := e.patchAt(c); p != nil {
			src, end = p, p.to*vault.BlockSize
		} else {
			end = next * vault.BlockSize
		}
		n := int(min(int64(v-done), end-pos))
		o, err := f.acquire(ctx, *src)
		if err != nil {
			return done, err
		}
		k, err := o.r.ReadAt(dst[done:done+n], pos-src.first*vault.BlockSize)
		f.release(o)
		done += k
		if k < n {
			if err == nil {
				err = fmt.Errorf("%w: short read", ErrIntegrity)
			}
			return done, fmt.Errorf("read file %s segment %d: %w", f.id, e.index, err)
		}
	}
	clear(dst[v:])
	return len(dst), nil
}

// objects returns every object a segment state names, its own and its patches', each once.
// A patch split by a later one keeps its object in both pieces, so pieces repeat objects.
func (e *segState) objects() []blob.ID {
	ids := make([]blob.ID, 0, 1+len(e.patches))
	ids = append(ids, e.obj)
	if len(e.patches) <= 8 {
		for _, p := range e.patches {
			if !slices.Contains(ids, p.obj) {
				ids = append(ids, p.obj)
			}
		}
		return ids
	}
	seen := make(map[blob.ID]struct{}, len(e.patches)+1)
	seen[e.obj] = struct{}{}
	for _, p := range e.patches {
		if _, ok := seen[p.obj]; !ok {
			seen[p.obj] = struct{}{}
			ids = append(ids, p.obj)
		}
	}
	return ids
}

// patchRun is a run of consecutive written blocks of one segment, written as one patch.
type patchRun struct {
	from, to int64 // blocks, relative to the segment
	obj      blob.ID
}

// dirtyRuns returns the runs of consecutive written blocks of segment s in chunks, and
// how many chunks hold them.
func dirtyRuns(chunks map[int64]*chunkBuf, s, segChunks int64) ([]patchRun, int) {
	var rel []int64
	for c := range chunks {
		if c/segChunks == s {
			rel = append(rel, c-s*segChunks)
		}
	}
	slices.Sort(rel)
	var runs []patchRun
	for _, c := range rel {
		// A buffer whose blocks were all cut away by a truncate has nothing to write.
		mask := chunks[s*segChunks+c].dirty
		for k := range int64(blocksPerChunk) {
			if mask&(1<<k) == 0 {
				continue
			}
			b := c*blocksPerChunk + k
			if n := len(runs); n > 0 && runs[n-1].to == b {
				runs[n-1].to++
				continue
			}
			runs = append(runs, patchRun{from: b, to: b + 1})
		}
	}
	return runs, len(rel)
}

// patchable reports whether segment s of the plan may be written as patches (see above),
// with its runs; total is the number of patches of the file so far, to which the runs
// count if they go ahead.
func (f *File) patchable(plan *flushPlan, s int64, old *segState, total *int) ([]patchRun, bool) {
	if old == nil || old.valid != old.objLen || old.objLen != segLen(s, plan.size, f.segSize) ||
		segCount(plan.size, f.segSize) > patchSegmentsMax {
		return nil, false
	}
	runs, dirty := dirtyRuns(plan.chunks, s, f.segChunks)
	if len(runs) == 0 {
		// Only cut blocks: the segment is written whole, which is what a truncate needs.
		return nil, false
	}
	if last := runs[len(runs)-1]; last.to*vault.BlockSize-vault.BlockSize >= segLen(s, plan.size, f.segSize) {
		// A dirty block past the segment's end: no write leaves one (cut clears them), so
		// this is a bug; the whole segment is written rather than a patch of nothing.
		return nil, false
	}
	if dirty > patchDirtyMax || *total+len(old.patches)+2*len(runs) > maxFilePatches {
		return nil, false
	}
	*total += 2 * len(runs) // a run may split one patch in two
	return runs, true
}

// withPatches returns old with runs written over it: patches wholly under a run go, ones
// partly under it are cut to what is left (their objects stay), and the runs join.
func withPatches(old segState, runs []patchRun, segLen int64) segState {
	out := old
	out.patches = nil
	for _, p := range old.patches {
		pieces := []segState{p}
		for _, r := range runs {
			var next []segState
			for _, q := range pieces {
				if r.to <= q.from || r.from >= q.to {
					next = append(next, q)
					continue
				}
				if q.from < r.from {
					left := q
					left.to = r.from
					next = append(next, left)
				}
				if q.to > r.to {
					right := q
					right.from = r.to
					next = append(next, right)
				}
			}
			pieces = next
		}
		out.patches = append(out.patches, pieces...)
	}
	for _, r := range runs {
		l := patchLen(r.from, r.to-r.from, segLen)
		out.patches = append(out.patches, segState{index: old.index, obj: r.obj, objLen: l, valid: l,
			first: r.from, from: r.from, to: r.to})
	}
	slices.SortFunc(out.patches, func(a, b segState) int { return int(a.from - b.from) })
	out.staged = stagedPatches(out.patches)
	return out
}

// writeRun writes the blocks of run r of segment s as a patch object.
func (f *File) writeRun(ctx context.Context, plan *flushPlan, s int64, r patchRun) error {
	// The flush commits the metadata naming the patch right after: a store that keeps
	// small objects with the metadata lets that commit carry it.
	p, err := blob.CreateSmall(ctx, f.blobs, r.obj)
	if err != nil {
		return err
	}
	defer p.Abort() // a no-op once committed
	abs := uint64(s*f.segChunks*blocksPerChunk + r.from)
	h := vault.ObjectHeader{FileID: plan.fileID, ObjectID: vault.ObjectID(r.obj), FirstChunk: abs / blocksPerChunk, FirstBlock: uint8(abs % blocksPerChunk)}
	ow, err := vault.NewObjectWriter(p, plan.cipher, h)
	if err != nil {
		return err
	}
	sl := segLen(s, plan.size, f.segSize)
	for k := r.from; k < r.to; k++ {
		n := min(vault.BlockSize, sl-k*vault.BlockSize)
		if n <= 0 {
			ow.Close()
			return fmt.Errorf("patch block %d lies past the segment's end (%d bytes)", k, sl)
		}
		b := plan.chunks[s*f.segChunks+k/blocksPerChunk]
		in := k % blocksPerChunk * vault.BlockSize
		if _, err := ow.Write(b.data[in : in+n]); err != nil {
			ow.Close()
			return err
		}
	}
	if err := ow.Close(); err != nil {
		return err
	}
	return p.Commit(ctx)
}

// stagedSegment is the stored form of a segment state, patches included. The patch list
// is shared with the state, which never changes it.
func stagedSegment(e segState) Segment {
	return Segment{Index: uint64(e.index), Object: e.obj, Patches: e.staged}
}

// stagedPatches is the stored form of a patch list.
func stagedPatches(ps []segState) []Patch {
	if len(ps) == 0 {
		return nil
	}
	out := make([]Patch, 0, len(ps))
	for _, p := range ps {
		out = append(out, Patch{From: uint32(p.from), To: uint32(p.to), First: uint32(p.first),
			Blocks: uint32((p.objLen + vault.BlockSize - 1) / vault.BlockSize), Object: p.obj})
	}
	return out
}
