package content

import (
	"context"
	"fmt"
	"slices"

	"dsh/blob"
	"dsh/vault"
)

// zeros is what a punched range that is not a whole segment is written with.
var zeros [vault.ChunkSize]byte

// Allocate is fallocate(2) without a hole: the file grows to off+length if it is shorter
// (the new bytes read as zeros and cost nothing stored), unless keepSize. dsh stores
// nothing ahead, so there is nothing else to reserve; a write that later finds the disk
// full fails then.
func (f *File) Allocate(ctx context.Context, off, length int64, keepSize bool) error {
	end, err := rangeEnd(f.id, off, length)
	if err != nil {
		return err
	}
	if keepSize || end <= f.Size() {
		return nil
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
	f.size = max(f.size, end)
	return nil
}

// PunchHole makes bytes [off, off+length) read as zeros, within the file's current size,
// which it never changes. Whole segments in the range become holes: their objects are
// dropped at the next flush and nothing replaces them. The parts of the range that do not
// cover a whole segment are overwritten with zeros, as a write would.
func (f *File) PunchHole(ctx context.Context, off, length int64) error {
	end, err := rangeEnd(f.id, off, length)
	if err != nil {
		return err
	}
	first, last, err := f.dropSegments(off, end)
	if err != nil {
		return err
	}
	// Zero the pieces before the first and after the last whole segment dropped.
	pieces := [][2]int64{{off, min(end, first)}, {max(off, last), end}}
	if first >= last {
		pieces = [][2]int64{{off, end}}
	}
	for _, pc := range pieces {
		for pos := pc[0]; pos < min(pc[1], f.Size()); {
			n := min(pc[1], f.Size()) - pos
			n = min(n, vault.ChunkSize-pos%vault.ChunkSize)
			if _, err := f.WriteAt(ctx, zeros[:n], pos); err != nil {
				return fmt.Errorf("punch hole in file %s: %w", f.id, err)
			}
			pos += n
		}
	}
	return nil
}

// dropSegments turns the segments that lie whole inside [off, end) into holes, with their
// unflushed chunks; the segment holding the end of the file counts as whole when the range
// reaches the end. It returns the byte range [first, last) those segments span (first ≥
// last when there are none).
func (f *File) dropSegments(off, end int64) (first, last int64, err error) {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, 0, ErrClosed
	}
	if err := f.needKey(); err != nil {
		return 0, 0, err
	}
	end = min(end, f.size)
	firstSeg := (off + f.segSize - 1) / f.segSize
	lastSeg := end / f.segSize // exclusive
	if end == f.size {
		lastSeg = segCount(f.size, f.segSize)
	}
	if firstSeg >= lastSeg {
		return 0, 0, nil
	}
	for c, b := range f.dirty {
		if s := c / f.segChunks; s >= firstSeg && s < lastSeg {
			f.dropDirty(c, b)
		}
	}
	var dropped []blob.ID
	segs := make([]segState, 0, len(f.segs))
	for _, e := range f.segs {
		if e.index >= firstSeg && e.index < lastSeg {
			dropped = append(dropped, e.obj)
			continue
		}
		segs = append(segs, e)
	}
	if len(dropped) > 0 {
		// segs may be shared with committed: the new list is a copy.
		f.segs = segs
		f.segsChanged = true
		f.resetReadAhead()
		f.evict(func(id blob.ID) bool { return slices.Contains(dropped, id) })
	}
	return firstSeg * f.segSize, min(lastSeg*f.segSize, f.size), nil
}

func rangeEnd(id vault.FileID, off, length int64) (int64, error) {
	if off < 0 || length <= 0 {
		return 0, fmt.Errorf("file %s: range of %d bytes at %d: %w", id, length, off, ErrInvalidRange)
	}
	if off > MaxSize || length > MaxSize-off {
		return 0, fmt.Errorf("file %s: %d bytes at %d: %w", id, length, off, ErrTooLarge)
	}
	return off + length, nil
}
