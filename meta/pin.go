package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"dsh/blob"
	"dsh/kv"
)

// Pins keep objects from the collector after the files that referenced them have moved on:
// an egress request freezes the content its files had when it was submitted (the objects
// are immutable, so keeping them is keeping that content), while the files go on being
// written, replaced or deleted. An object stays while any pin names it; Garbage skips it and
// Referenced reports it, and it is collected once the last pin naming it is gone.
//
//	fs/k/<pin>          the pin's record: the objects it keeps (encodePin)
//	fs/b/<id><pin>      one key per object and pin, empty: "is id pinned" is a short scan
const (
	pinPrefix    = keyPrefix + "k/"
	pinObjPrefix = keyPrefix + "b/"
)

// MaxPinName bounds a pin's name.
const MaxPinName = 200

func pinKey(name string) []byte { return append([]byte(pinPrefix), name...) }

func pinObjKey(id blob.ID, name string) []byte {
	b := make([]byte, 0, len(pinObjPrefix)+blob.IDLen+len(name))
	b = append(b, pinObjPrefix...)
	b = append(b, id[:]...)
	return append(b, name...)
}

// encodePin has the garbage record's layout: version u8 | object IDs [16] each (none for a
// pin of empty files).
func encodePin(ids []blob.ID) []byte { return encodeGarbage(ids) }

func decodePin(b []byte) ([]blob.ID, error) {
	d := decoder{b: b, what: "pin record"}
	d.version()
	if d.err == nil && len(d.b)%blob.IDLen != 0 {
		d.failf("%d bytes of object IDs", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	ids := make([]blob.ID, len(d.b)/blob.IDLen)
	for i := range ids {
		copy(ids[i][:], d.take(blob.IDLen))
	}
	return ids, d.finish()
}

func checkPinName(name string) error {
	if name == "" || len(name) > MaxPinName {
		return fmt.Errorf("pin name of %d bytes: %w", len(name), ErrInvalid)
	}
	return nil
}

// Pin reads the regular files inos and keeps the objects their content references now from
// the collector, under name, until Unpin(name): all in one transaction, so the attributes
// returned are exactly the content kept, even while the files are being written. A name
// already in use gives ErrExists; an inode that is not a regular file ErrInvalid.
func (s *Store) Pin(ctx context.Context, name string, inos ...Ino) ([]Attr, error) {
	if err := checkPinName(name); err != nil {
		return nil, fmt.Errorf("meta: pin: %w", err)
	}
	var out []Attr
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		out = out[:0]
		if _, err := tx.Get(pinKey(name)); err == nil {
			return fmt.Errorf("pin record: %w", ErrExists)
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		var ids []blob.ID
		seen := map[blob.ID]struct{}{}
		for _, ino := range inos {
			n, err := loadInode(tx, ino)
			if err != nil {
				return err
			}
			if n.kind != KindFile {
				return fmt.Errorf("inode %d is a %v: %w", ino, n.kind, ErrInvalid)
			}
			pin := func(id blob.ID) error {
				if _, dup := seen[id]; dup {
					return nil
				}
				seen[id] = struct{}{}
				ids = append(ids, id)
				return tx.Set(pinObjKey(id, name), nil)
			}
			a := n.attr()
			for _, seg := range n.content.Segments {
				if err := pin(seg.Object); err != nil {
					return err
				}
				if !seg.Patched {
					continue
				}
				// A patched segment reads through its patches too: they are part of the
				// content, and a later flush that folds them away must not free them.
				ps, err := loadPatches(tx, ino, seg.Index)
				if err != nil {
					return err
				}
				for _, p := range ps {
					if err := pin(p.Object); err != nil {
						return err
					}
				}
				if a.Content.Patches == nil {
					a.Content.Patches = make(map[uint64][]Patch)
				}
				a.Content.Patches[seg.Index] = ps
			}
			// The inode is written back unchanged: a store that detects only write-write
			// conflicts then still orders this pin against a concurrent change of the file.
			v, err := tx.Get(inodeKey(ino))
			if err != nil {
				return err
			}
			if err := tx.Set(inodeKey(ino), v); err != nil {
				return err
			}
			out = append(out, a)
		}
		return tx.Set(pinKey(name), encodePin(ids))
	})
	if err != nil {
		return nil, fmt.Errorf("meta: pin: %w", err)
	}
	return out, nil
}

// Unpin drops the pin name: its objects go back to the collector, which deletes those that
// no inode and no other pin references. Unpinning an unknown name does nothing.
func (s *Store) Unpin(ctx context.Context, name string) error {
	if err := checkPinName(name); err != nil {
		return fmt.Errorf("meta: unpin: %w", err)
	}
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(pinKey(name))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ids, err := decodePin(v)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := tx.Delete(pinObjKey(id, name)); err != nil {
				return err
			}
		}
		return tx.Delete(pinKey(name))
	})
	if err != nil {
		return fmt.Errorf("meta: unpin: %w", err)
	}
	return nil
}

// Pinned calls fn with the objects of pin name (ErrNotFound if there is no such pin).
func (s *Store) Pinned(ctx context.Context, name string) ([]blob.ID, error) {
	var ids []blob.ID
	err := s.db.View(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(pinKey(name))
		if errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("pin: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		ids, err = decodePin(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("meta: pinned: %w", err)
	}
	return ids, nil
}

// pinnedSet returns every object some pin keeps, read in tx. Pins are few (one per live
// egress request), so the set is small.
func pinnedSet(tx kv.Txn) (map[blob.ID]struct{}, error) {
	set := map[blob.ID]struct{}{}
	err := tx.Scan([]byte(pinObjPrefix), nil, func(k, _ []byte) (bool, error) {
		rest := bytes.TrimPrefix(k, []byte(pinObjPrefix))
		if len(rest) <= blob.IDLen {
			return false, fmt.Errorf("pin key of %d bytes: %w", len(k), errCorrupt)
		}
		var id blob.ID
		copy(id[:], rest[:blob.IDLen])
		set[id] = struct{}{}
		return true, nil
	})
	return set, err
}

// Pins returns the names of the pins that start with prefix.
func (s *Store) Pins(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	err := s.db.View(ctx, func(tx kv.Txn) error {
		return tx.Scan(pinKey(prefix), nil, func(k, _ []byte) (bool, error) {
			out = append(out, string(k[len(pinPrefix):]))
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta: pins: %w", err)
	}
	return out, nil
}
