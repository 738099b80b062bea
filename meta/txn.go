package meta

import (
	"context"
	"errors"
	"fmt"

	"dsh/blob"
	"dsh/kv"
)

// op is one attempt of one mutation: a kv transaction, the inodes it has read (so that an
// inode reached twice, as a rename within one directory reaches its parent, is one object
// written once) and its usage delta. Every value the mutation depends on is read with Get
// inside the transaction, so a concurrent change makes kv run the attempt again.
type op struct {
	tx    kv.Txn
	now   int64
	nodes map[Ino]*inode
	shard int       // usage shard the delta goes to
	usage usage     // delta
	freed []blob.ID // objects for the garbage list
}

// update runs fn as one kv transaction holding the stripes of lockInos, and writes the
// inodes fn marked once it returns. The usage delta goes to the shard of shardIno, which
// should be one of lockInos, so that writers in this process do not conflict on it.
func (s *Store) update(ctx context.Context, lockInos []Ino, shardIno Ino, fn func(*op) error) error {
	return s.updateWith(ctx, s.db.Update, lockInos, shardIno, fn)
}

// updateWith is update committing through commit: kv.Store's Update, or UpdateLazy for a
// change that a durable one is sure to follow.
func (s *Store) updateWith(ctx context.Context, commit func(context.Context, func(kv.Txn) error) error, lockInos []Ino, shardIno Ino, fn func(*op) error) error {
	unlock := s.lock(lockInos...)
	defer unlock()
	var last *op
	err := commit(ctx, func(tx kv.Txn) error {
		o := &op{tx: tx, now: s.now().UnixNano(), nodes: make(map[Ino]*inode, 4), shard: stripe(shardIno)}
		last = o
		if err := fn(o); err != nil {
			return err
		}
		return o.flush()
	})
	// Only the last attempt can have committed (the others lost a conflict). Its inodes
	// are forgotten whatever the outcome: a failed commit may still have been applied.
	if last != nil {
		for ino, n := range last.nodes {
			if n.dirty || n.deleted {
				s.cache.invalidate(ino)
			}
		}
	}
	return err
}

// loadInode reads the record of ino; an absent one wraps ErrNotFound.
func loadInode(tx kv.Txn, ino Ino) (*inode, error) {
	v, err := tx.Get(inodeKey(ino))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read inode %d: %w", ino, err)
	}
	n, err := decodeInode(ino, v)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	return n, nil
}

// loadDir reads ino and checks that it is a directory.
func loadDir(tx kv.Txn, ino Ino) (*inode, error) {
	n, err := loadInode(tx, ino)
	if err != nil {
		return nil, err
	}
	if n.kind != KindDir {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrNotDir)
	}
	return n, nil
}

// loadEntry reads the entry name of dir; ok is false when there is none.
func loadEntry(tx kv.Txn, dir Ino, name string) (e dirent, ok bool, err error) {
	v, err := tx.Get(direntKey(dir, name))
	if errors.Is(err, kv.ErrNotFound) {
		return dirent{}, false, nil
	}
	if err != nil {
		return dirent{}, false, fmt.Errorf("read entry of directory %d: %w", dir, err)
	}
	if e, err = decodeDirent(v); err != nil {
		return dirent{}, false, fmt.Errorf("entry of directory %d: %w", dir, err)
	}
	return e, true, nil
}

func (o *op) get(ino Ino) (*inode, error) {
	if n, ok := o.nodes[ino]; ok {
		if n.deleted {
			return nil, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
		}
		return n, nil
	}
	n, err := loadInode(o.tx, ino)
	if err != nil {
		return nil, err
	}
	o.nodes[ino] = n
	return n, nil
}

func (o *op) dir(ino Ino) (*inode, error) {
	n, err := o.get(ino)
	if err != nil {
		return nil, err
	}
	if n.kind != KindDir {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrNotDir)
	}
	return n, nil
}

func (o *op) entry(dir Ino, name string) (dirent, bool, error) {
	return loadEntry(o.tx, dir, name)
}

// mark schedules n to be written by flush.
func (o *op) mark(n *inode) {
	n.dirty = true
	o.nodes[n.ino] = n
}

// touch sets a directory's mtime and ctime, as every change of its entries does.
func (o *op) touch(dir *inode) {
	dir.mtime, dir.ctime = o.now, o.now
	o.mark(dir)
}

// create adds a new inode.
func (o *op) create(n *inode) {
	o.usage.inodes++
	o.mark(n)
}

// addEntry gives n a new name in dir, with dir's next sequence number.
func (o *op) addEntry(dir *inode, name string, n *inode) error {
	e := dirent{ino: n.ino, kind: n.kind, seq: dir.nextSeq}
	if e.seq == 0 {
		return fmt.Errorf("directory %d: sequence number 0: %w", dir.ino, errCorrupt)
	}
	dir.nextSeq++
	o.mark(dir)
	return o.setEntry(dir.ino, name, e)
}

// setEntry writes both keys of an entry.
func (o *op) setEntry(dir Ino, name string, e dirent) error {
	if err := o.tx.Set(direntKey(dir, name), encodeDirent(e)); err != nil {
		return fmt.Errorf("write entry of directory %d: %w", dir, err)
	}
	if err := o.tx.Set(orderKey(dir, e.seq), encodeOrder(e.ino, e.kind, name)); err != nil {
		return fmt.Errorf("write entry of directory %d: %w", dir, err)
	}
	return nil
}

// deleteEntry removes both keys of an entry.
func (o *op) deleteEntry(dir Ino, name string, e dirent) error {
	if err := o.tx.Delete(direntKey(dir, name)); err != nil {
		return fmt.Errorf("delete entry of directory %d: %w", dir, err)
	}
	if err := o.tx.Delete(orderKey(dir, e.seq)); err != nil {
		return fmt.Errorf("delete entry of directory %d: %w", dir, err)
	}
	return nil
}

// dropLink takes one name from a file or symlink; its last name makes it an orphan.
func (o *op) dropLink(n *inode) error {
	if n.nlink == 0 {
		return fmt.Errorf("inode %d: named but has no links: %w", n.ino, errCorrupt)
	}
	n.nlink--
	n.ctime = o.now
	o.mark(n)
	if n.nlink == 0 {
		if err := o.tx.Set(orphanKey(n.ino), nil); err != nil {
			return fmt.Errorf("record orphan %d: %w", n.ino, err)
		}
	}
	return nil
}

// isEmpty reports whether dir has no entries.
func (o *op) isEmpty(dir Ino) (bool, error) {
	empty := true
	err := o.tx.Scan(direntDirPrefix(dir), nil, func(_, _ []byte) (bool, error) {
		empty = false
		return false, nil
	})
	if err != nil {
		return false, fmt.Errorf("list directory %d: %w", dir, err)
	}
	return empty, nil
}

// remove deletes n with its extended attributes and puts its objects on the garbage list.
// n must have no name left (an orphan, or a directory just taken out of its parent).
func (o *op) remove(n *inode) error {
	var names [][]byte
	err := o.tx.Scan(xattrInoPrefix(n.ino), nil, func(k, _ []byte) (bool, error) {
		names = append(names, append([]byte(nil), k...))
		// Bounded by MaxXattrs, unless the count in the record is damaged; stay inside
		// one transaction's limits either way.
		return len(names) < 4*MaxXattrs, nil
	})
	if err != nil {
		return fmt.Errorf("list attributes of inode %d: %w", n.ino, err)
	}
	for _, k := range names {
		if err := o.tx.Delete(k); err != nil {
			return fmt.Errorf("delete attribute of inode %d: %w", n.ino, err)
		}
	}
	if n.kind == KindFile {
		for _, seg := range n.content.Segments {
			o.garbage(seg.Object)
		}
		if err := o.removePatches(n); err != nil {
			return err
		}
		o.usage.bytes -= n.size
	}
	if n.kind != KindDir {
		if err := o.tx.Delete(orphanKey(n.ino)); err != nil {
			return fmt.Errorf("delete orphan %d: %w", n.ino, err)
		}
	}
	o.usage.inodes--
	n.deleted = true
	o.nodes[n.ino] = n
	return nil
}

// garbage puts an object on the garbage list when the transaction commits.
func (o *op) garbage(id blob.ID) {
	o.freed = append(o.freed, id)
}

// flush writes the marked inodes and the usage delta.
func (o *op) flush() error {
	for ino, n := range o.nodes {
		switch {
		case n.deleted:
			if err := o.tx.Delete(inodeKey(ino)); err != nil {
				return fmt.Errorf("delete inode %d: %w", ino, err)
			}
		case n.dirty:
			v, err := encodeInode(n)
			if err != nil {
				return err
			}
			if err := o.tx.Set(inodeKey(ino), v); err != nil {
				return fmt.Errorf("write inode %d: %w", ino, err)
			}
		}
	}
	if len(o.freed) > 0 {
		key, err := garbageKey()
		if err != nil {
			return err
		}
		if err := o.tx.Set(key, encodeGarbage(o.freed)); err != nil {
			return fmt.Errorf("record garbage: %w", err)
		}
	}
	if o.usage == (usage{}) {
		return nil
	}
	key := usageKey(o.shard)
	var u usage
	v, err := o.tx.Get(key)
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read usage: %w", err)
	default:
		if u, err = decodeUsage(v); err != nil {
			return err
		}
	}
	u.inodes += o.usage.inodes
	u.bytes += o.usage.bytes
	if err := o.tx.Set(key, encodeUsage(u)); err != nil {
		return fmt.Errorf("write usage: %w", err)
	}
	return nil
}
