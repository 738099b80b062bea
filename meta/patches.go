package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"dsh/blob"
	"dsh/kv"
)

// Patches. A small write into a big file writes the 4 KiB blocks it touched, in an object
// of their own, not the whole segment (package content decides). A segment's patches are kept
// in a record of their own, fs/p/<ino><index>, so that a change of one segment's patches
// writes that record and the inode's, however many other segments have patches. The inode
// record marks the segments that have a patch record (Segment.Patched), so that reading,
// deleting and collecting a file know which records to look at without a scan.

// checkPatches checks the patch lists c brings against the segments it lists.
func checkPatches(c Content) error {
	for idx, ps := range c.Patches {
		i, ok := slices.BinarySearchFunc(c.Segments, idx, func(s Segment, idx uint64) int {
			switch {
			case s.Index < idx:
				return -1
			case s.Index > idx:
				return 1
			}
			return 0
		})
		patched := ok && c.Segments[i].Patched
		if patched != (len(ps) > 0) {
			return fmt.Errorf("segment %d: %d patches, marked patched %v: %w", idx, len(ps), patched, ErrInvalid)
		}
		if len(ps) > MaxPatches {
			return fmt.Errorf("segment %d: %d patches, limit %d: %w", idx, len(ps), MaxPatches, ErrTooBig)
		}
		for j := range ps {
			if err := checkPatch(ps[:j+1]); err != nil {
				return fmt.Errorf("segment %d: %v: %w", idx, err, ErrInvalid)
			}
		}
	}
	return nil
}

// loadPatches reads the patches of segment index of ino; none when it has no record.
func loadPatches(tx kv.Txn, ino Ino, index uint64) ([]Patch, error) {
	v, err := tx.Get(patchKey(ino, index))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read patches of inode %d segment %d: %w", ino, index, err)
	}
	ps, err := decodePatches(v)
	if err != nil {
		return nil, fmt.Errorf("inode %d segment %d: %w", ino, index, err)
	}
	return ps, nil
}

// setPatches writes the patch records c changes, puts the objects they stop naming on the
// garbage list, and carries the marks of the segments whose patches c leaves alone. The
// segments of n that c no longer lists lose their patch records too.
func (o *op) setPatches(n *inode, c *Content) error {
	newSegs := make(map[uint64]*Segment, len(c.Segments))
	for i := range c.Segments {
		newSegs[c.Segments[i].Index] = &c.Segments[i]
	}
	keep := make(map[blob.ID]struct{})
	for _, seg := range c.Segments {
		keep[seg.Object] = struct{}{}
	}
	for _, ps := range c.Patches {
		for _, p := range ps {
			keep[p.Object] = struct{}{}
		}
	}
	for _, old := range n.content.Segments {
		if !old.Patched {
			continue
		}
		ns := newSegs[old.Index]
		ps, changed := c.Patches[old.Index]
		if ns != nil && !changed {
			// Untouched: its record stays, and so must its mark.
			if !ns.Patched {
				return fmt.Errorf("segment %d of inode %d has patches the new state drops without saying: %w", old.Index, n.ino, ErrInvalid)
			}
			continue
		}
		prev, err := loadPatches(o.tx, n.ino, old.Index)
		if err != nil {
			return err
		}
		for _, p := range prev {
			if _, ok := keep[p.Object]; !ok {
				o.garbage(p.Object)
				keep[p.Object] = struct{}{} // listed once
			}
		}
		if ns == nil || len(ps) == 0 {
			if err := o.tx.Delete(patchKey(n.ino, old.Index)); err != nil {
				return err
			}
		}
	}
	for idx, ps := range c.Patches {
		if len(ps) == 0 {
			continue
		}
		if err := o.tx.Set(patchKey(n.ino, idx), encodePatches(ps)); err != nil {
			return err
		}
	}
	return nil
}

// removePatches deletes the patch records of a file that goes, its objects on the garbage
// list.
func (o *op) removePatches(n *inode) error {
	for _, seg := range n.content.Segments {
		if !seg.Patched {
			continue
		}
		ps, err := loadPatches(o.tx, n.ino, seg.Index)
		if err != nil {
			return err
		}
		seen := map[blob.ID]struct{}{}
		for _, p := range ps {
			if _, ok := seen[p.Object]; !ok {
				seen[p.Object] = struct{}{}
				o.garbage(p.Object)
			}
		}
		if err := o.tx.Delete(patchKey(n.ino, seg.Index)); err != nil {
			return err
		}
	}
	return nil
}

// PatchSet is the patches of every segment of one file that has some, by segment index,
// as one committed state of the file holds them. A set is never changed once handed out:
// a change of the file's patches makes a new one. PatchesOf hands out the same *PatchSet
// for as long as that state stays cached, so a caller may keep what it derives from a set
// (a checked layout, say) keyed by the pointer, and hold the pointer so that it cannot be
// reused.
type PatchSet struct {
	Lists map[uint64][]Patch // nil when no segment has patches
}

// PatchesOf returns the patches of file ino (never a nil set). Every open of a patched
// file asks, so the sets of recent files are cached (cache.go); the set is shared and
// must not be changed.
func (s *Store) PatchesOf(ctx context.Context, ino Ino) (*PatchSet, error) {
	cached, ok, gen := s.cache.getPatches(ino)
	if ok {
		return cached, nil
	}
	var out map[uint64][]Patch
	err := s.db.View(ctx, func(tx kv.Txn) error {
		out = nil
		return tx.Scan(patchInoPrefix(ino), nil, func(k, v []byte) (bool, error) {
			idx, err := parsePatchKey(k)
			if err != nil {
				return false, err
			}
			ps, err := decodePatches(v)
			if err != nil {
				return false, fmt.Errorf("inode %d segment %d: %w", ino, idx, err)
			}
			if out == nil {
				out = make(map[uint64][]Patch)
			}
			out[idx] = ps
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta: patches of %d: %w", ino, err)
	}
	set := &PatchSet{Lists: out}
	s.cache.putPatches(ino, set, gen)
	return set, nil
}
