package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"dsh/blob"
	"dsh/kv"
)

// Batch sizes of the maintenance walks: each batch is one short transaction, and the
// callbacks run between transactions.
const (
	reapBatch      = 256
	referenceBatch = 256
	collectBatch   = 1024      // garbage records rewritten per transaction
	collectBytes   = 512 << 10 // and their bytes
)

// Reap deletes ino if it is an orphan (a file or symlink with Nlink 0), with its extended
// attributes, putting its objects on the garbage list. It does nothing if the inode still
// has a name or is gone. The FUSE layer calls it when the last handle of an inode closes
// (and after an unlink or rename that orphaned an inode nobody has open).
func (s *Store) Reap(ctx context.Context, ino Ino) error {
	if _, err := s.reap(ctx, ino, false); err != nil {
		return fmt.Errorf("meta: reap %d: %w", ino, err)
	}
	return nil
}

// reap is Reap, reporting whether it deleted the inode. With stale it also drops an orphan
// key whose inode is gone or named again (which no mutation leaves behind; a damaged
// store could).
func (s *Store) reap(ctx context.Context, ino Ino, stale bool) (bool, error) {
	if !stale {
		// Some calls find the file still named (the last close of a file whose unlink
		// failed after it may have applied) or already gone: a read settles them without
		// taking the stripe or starting a write transaction.
		keep := false
		err := s.db.View(ctx, func(tx kv.Txn) error {
			n, err := loadInode(tx, ino)
			if errors.Is(err, ErrNotFound) {
				keep = true // already gone: nothing to do
				return nil
			}
			if err != nil {
				return err
			}
			keep = n.nlink > 0 || n.kind == KindDir
			return nil
		})
		if err != nil || keep {
			return false, err
		}
	}
	reaped := false
	err := s.update(ctx, []Ino{ino}, ino, func(o *op) error {
		reaped = false
		n, err := o.get(ino)
		if errors.Is(err, ErrNotFound) || err == nil && (n.nlink > 0 || n.kind == KindDir) {
			if stale {
				return o.tx.Delete(orphanKey(ino))
			}
			return nil
		}
		if err != nil {
			return err
		}
		reaped = true
		return o.remove(n)
	})
	return reaped, err
}

// ReapAll reaps every orphan and returns how many it deleted. It is for start-up, when no
// inode can be open.
func (s *Store) ReapAll(ctx context.Context) (int, error) {
	count := 0
	var start []byte
	for {
		inos := make([]Ino, 0, reapBatch)
		err := s.db.View(ctx, func(tx kv.Txn) error {
			return tx.Scan([]byte(orphanPrefix), start, func(k, _ []byte) (bool, error) {
				ino, err := parseInoKey(k)
				if err != nil {
					return false, err
				}
				inos = append(inos, ino)
				return len(inos) < reapBatch, nil
			})
		})
		if err != nil {
			return count, fmt.Errorf("meta: reap all: %w", err)
		}
		for _, ino := range inos {
			reaped, err := s.reap(ctx, ino, true)
			if err != nil {
				return count, fmt.Errorf("meta: reap all: inode %d: %w", ino, err)
			}
			if reaped {
				count++
			}
		}
		if len(inos) < reapBatch || inos[len(inos)-1] == math.MaxUint64 {
			return count, nil
		}
		start = orphanKey(inos[len(inos)-1] + 1)
	}
}

// Garbage calls fn with up to max objects of the garbage list that no pin keeps (pin.go),
// each once, stopping at the first error, which it returns. fn runs outside any transaction; the caller deletes the
// objects from the blob store and then passes them to Collected.
func (s *Store) Garbage(ctx context.Context, max int, fn func(blob.ID) error) error {
	if max <= 0 {
		return nil
	}
	var ids []blob.ID
	seen := map[blob.ID]struct{}{}
	err := s.db.View(ctx, func(tx kv.Txn) error {
		// A pinned object stays on the list, untouched, until its last pin goes.
		pinned, err := pinnedSet(tx)
		if err != nil {
			return err
		}
		return tx.Scan([]byte(garbagePrefix), nil, func(_, v []byte) (bool, error) {
			rec, err := decodeGarbage(v)
			if err != nil {
				return false, err
			}
			for _, id := range rec {
				if _, dup := seen[id]; dup {
					continue
				}
				if _, keep := pinned[id]; keep {
					continue
				}
				if len(ids) == max {
					return false, nil
				}
				seen[id] = struct{}{}
				ids = append(ids, id)
			}
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("meta: garbage: %w", err)
	}
	for _, id := range ids {
		if err := fn(id); err != nil {
			return fmt.Errorf("meta: garbage: %w", err)
		}
	}
	return nil
}

// Collected removes ids from the garbage list, once the caller deleted them from the blob
// store. Ids not on the list are ignored.
//
// Records are found by a scan from the front, where Garbage took the ids from, so the scan
// usually stops early; each is then rewritten without the ids, or deleted when emptied.
func (s *Store) Collected(ctx context.Context, ids []blob.ID) error {
	if len(ids) == 0 {
		return nil
	}
	want := make(map[blob.ID]struct{}, len(ids))
	for _, id := range ids {
		want[id] = struct{}{}
	}
	type found struct {
		key  []byte
		size int
	}
	var recs []found
	err := s.db.View(ctx, func(tx kv.Txn) error {
		missing := maps.Clone(want)
		return tx.Scan([]byte(garbagePrefix), nil, func(k, v []byte) (bool, error) {
			rec, err := decodeGarbage(v)
			if err != nil {
				return false, err
			}
			hit := false
			for _, id := range rec {
				if _, ok := want[id]; ok {
					hit = true
					delete(missing, id)
				}
			}
			if hit {
				recs = append(recs, found{key: bytes.Clone(k), size: len(v)})
			}
			return len(missing) > 0, nil
		})
	})
	if err != nil {
		return fmt.Errorf("meta: collected: %w", err)
	}
	// Rewrite in groups that stay well inside one transaction's limits.
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && n < collectBatch && (n == 0 || size+recs[n].size <= collectBytes) {
			size += recs[n].size
			n++
		}
		group := recs[:n]
		recs = recs[n:]
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			for _, r := range group {
				if err := dropGarbage(tx, r.key, want); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("meta: collected: %w", err)
		}
	}
	return nil
}

// dropGarbage removes the ids in want from the garbage record under key. The record is read
// with Get, so a concurrent Collected on it makes one of the two run again.
func dropGarbage(tx kv.Txn, key []byte, want map[blob.ID]struct{}) error {
	v, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	rec, err := decodeGarbage(v)
	if err != nil {
		return err
	}
	kept := slices.DeleteFunc(rec, func(id blob.ID) bool {
		_, ok := want[id]
		return ok
	})
	switch {
	case len(kept) == 0:
		return tx.Delete(key)
	case len(kept) < len(rec):
		return tx.Set(key, encodeGarbage(kept))
	}
	return nil
}

// Referenced calls fn for every object referenced by any inode, orphans included, or kept
// by a pin, stopping
// at the first error, which it returns. It is for a full collection: objects that neither an
// inode nor the garbage list knows were left by a crash between writing an object and
// committing the metadata. The walk is not one snapshot, so the caller must spare objects
// written since it started (for example by age).
func (s *Store) Referenced(ctx context.Context, fn func(blob.ID) error) error {
	var start []byte
	for {
		var (
			ids   []blob.ID
			count int
			last  Ino
		)
		err := s.db.View(ctx, func(tx kv.Txn) error {
			return tx.Scan([]byte(inodePrefix), start, func(k, v []byte) (bool, error) {
				ino, err := parseInoKey(k)
				if err != nil {
					return false, err
				}
				// A record that does not decode could hide references: stop rather than
				// let the collector delete what it points at.
				n, err := decodeInode(ino, v)
				if err != nil {
					return false, fmt.Errorf("inode %d: %w", ino, err)
				}
				for _, seg := range n.content.Segments {
					ids = append(ids, seg.Object)
					if seg.Patched {
						// Missing patch records hide references just as well: stop.
						ps, err := loadPatches(tx, ino, seg.Index)
						if err != nil {
							return false, err
						}
						for _, p := range ps {
							ids = append(ids, p.Object)
						}
					}
				}
				count++
				last = ino
				return count < referenceBatch, nil
			})
		})
		if err != nil {
			return fmt.Errorf("meta: referenced: %w", err)
		}
		for _, id := range ids {
			if err := fn(id); err != nil {
				return fmt.Errorf("meta: referenced: %w", err)
			}
		}
		if count < referenceBatch || last == math.MaxUint64 {
			break
		}
		start = inodeKey(last + 1)
	}
	// Pinned objects are referenced too, by the requests that froze them.
	var pinned map[blob.ID]struct{}
	if err := s.db.View(ctx, func(tx kv.Txn) (err error) {
		pinned, err = pinnedSet(tx)
		return err
	}); err != nil {
		return fmt.Errorf("meta: referenced: %w", err)
	}
	for id := range pinned {
		if err := fn(id); err != nil {
			return fmt.Errorf("meta: referenced: %w", err)
		}
	}
	return nil
}

// Usage returns the number of inodes (orphans included) and the sum of the sizes of regular
// files, for statfs. Both are exact; a damaged counter could make a sum negative, which is
// reported as 0.
func (s *Store) Usage(ctx context.Context) (inodes uint64, bytes uint64, err error) {
	var sum usage
	err = s.db.View(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte(usagePrefix), nil, func(_, v []byte) (bool, error) {
			u, err := decodeUsage(v)
			if err != nil {
				return false, err
			}
			sum.inodes += u.inodes
			sum.bytes += u.bytes
			return true, nil
		})
	})
	if err != nil {
		return 0, 0, fmt.Errorf("meta: usage: %w", err)
	}
	return uint64(max(sum.inodes, 0)), uint64(max(sum.bytes, 0)), nil
}
