package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"dsh/blob"
	"dsh/kv"
)

// ShareRoot returns the root directory of share, creating it with mode on first use, in one
// transaction; concurrent callers get the same inode. An existing root keeps its mode.
func (s *Store) ShareRoot(ctx context.Context, share string, mode uint32) (Attr, error) {
	if err := checkName(share); err != nil {
		return Attr{}, fmt.Errorf("meta: share root: %w", err)
	}
	// Every lookup at the mount's root asks; a root never changes once made.
	if ino, ok := s.roots.m.Load(share); ok {
		a, err := s.GetAttr(ctx, ino.(Ino))
		if err != nil {
			return Attr{}, fmt.Errorf("meta: share root: %w", err)
		}
		return a, nil
	}
	a, found, err := s.viewRoot(ctx, share)
	if found {
		s.roots.m.Store(share, a.Ino)
	}
	if err != nil || found {
		return a, err
	}
	ino, err := s.allocIno(ctx)
	if err != nil {
		return Attr{}, err
	}
	used := false
	err = s.update(ctx, []Ino{ino}, ino, func(o *op) error {
		used = false
		v, err := o.tx.Get(rootKey(share))
		if err == nil {
			// Created by someone else since the read above.
			rootIno, err := decodeIno(v)
			if err != nil {
				return err
			}
			n, err := o.get(rootIno)
			if err != nil {
				return err
			}
			a = n.attr()
			return nil
		}
		if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		n := &inode{
			ino: ino, kind: KindDir, mode: mode & 0o7777, nlink: 2,
			atime: o.now, mtime: o.now, ctime: o.now,
			share: share, nextSeq: 1,
		}
		o.create(n)
		if err := o.tx.Set(rootKey(share), encodeIno(ino)); err != nil {
			return err
		}
		a, used = n.attr(), true
		return nil
	})
	if !used {
		s.releaseIno(ino)
	}
	if err != nil {
		return Attr{}, fmt.Errorf("meta: share root: %w", err)
	}
	s.roots.m.Store(share, a.Ino)
	return a, nil
}

func (s *Store) viewRoot(ctx context.Context, share string) (a Attr, found bool, err error) {
	err = s.db.View(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(rootKey(share))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ino, err := decodeIno(v)
		if err != nil {
			return err
		}
		n, err := loadInode(tx, ino)
		if err != nil {
			return err
		}
		a, found = n.attr(), true
		return nil
	})
	if err != nil {
		return Attr{}, false, fmt.Errorf("meta: share root: %w", err)
	}
	return a, found, nil
}

// Lookup returns the inode named name in parent.
func (s *Store) Lookup(ctx context.Context, parent Ino, name string) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, fmt.Errorf("meta: lookup in %d: %w", parent, err)
	}
	var a Attr
	err := s.db.View(ctx, func(tx kv.Txn) error {
		e, ok, err := loadEntry(tx, parent, name)
		if err != nil {
			return err
		}
		if !ok {
			// Only a miss pays for telling a missing name from a missing directory.
			if _, err := loadDir(tx, parent); err != nil {
				return err
			}
			return fmt.Errorf("no such name: %w", ErrNotFound)
		}
		// A cached inode is at least as new as this snapshot. One read here is not
		// cached: the cache's rule wants the shard's generation from before the read
		// transaction started, and the inode was not known then.
		if c, ok, _ := s.cache.get(e.ino); ok {
			a = c
			return nil
		}
		n, err := loadInode(tx, e.ino)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("entry names missing inode %d: %w", e.ino, errCorrupt)
		}
		if err != nil {
			return err
		}
		a = n.attr()
		return nil
	})
	if err != nil {
		return Attr{}, fmt.Errorf("meta: lookup in %d: %w", parent, err)
	}
	return a, nil
}

// GetAttr returns the attributes of ino. Content.Segments of the result may be shared
// with other callers and must not be modified.
func (s *Store) GetAttr(ctx context.Context, ino Ino) (Attr, error) {
	a, ok, gen := s.cache.get(ino)
	if ok {
		return a, nil
	}
	err := s.db.View(ctx, func(tx kv.Txn) error {
		n, err := loadInode(tx, ino)
		if err != nil {
			return err
		}
		a = n.attr()
		return nil
	})
	if err != nil {
		return Attr{}, fmt.Errorf("meta: getattr: %w", err)
	}
	s.cache.put(a, gen)
	return a, nil
}

// SetAttr changes the attributes given in in; ctime is set to now when any is.
func (s *Store) SetAttr(ctx context.Context, ino Ino, in SetAttr) (Attr, error) {
	var a Attr
	err := s.update(ctx, []Ino{ino}, ino, func(o *op) error {
		n, err := o.get(ino)
		if err != nil {
			return err
		}
		if in.Mode == nil && in.Atime == nil && in.Mtime == nil {
			a = n.attr()
			return nil
		}
		if in.Mode != nil {
			n.mode = *in.Mode & 0o7777
		}
		if in.Atime != nil {
			n.atime = *in.Atime
		}
		if in.Mtime != nil {
			n.mtime = *in.Mtime
		}
		n.ctime = o.now
		o.mark(n)
		a = n.attr()
		return nil
	})
	if err != nil {
		return Attr{}, fmt.Errorf("meta: setattr: %w", err)
	}
	return a, nil
}

// SetContent records a new size and content for a regular file, after its data was written
// to new objects, and sets its mtime and ctime to mtime. c replaces the file's content
// entirely: objects referenced before and not in c go to the garbage list in the same
// transaction. The caller serialises the writers of one file, or a later SetContent would
// drop the objects of an earlier one it did not know of.
//
// If the inode no longer exists (deleted meanwhile), the objects in c go to the garbage list
// and ErrNotFound is returned. Reap already listed the objects the inode referenced, so
// some may be listed twice; the collector ignores objects already deleted.
func (s *Store) SetContent(ctx context.Context, ino Ino, size int64, c Content, mtime int64) (Attr, error) {
	if size < 0 {
		return Attr{}, fmt.Errorf("meta: set content of %d: negative size: %w", ino, ErrInvalid)
	}
	if err := checkSegments(c.Segments); err != nil {
		return Attr{}, fmt.Errorf("meta: set content of %d: %w", ino, err)
	}
	if err := checkPatches(c); err != nil {
		return Attr{}, fmt.Errorf("meta: set content of %d: %w", ino, err)
	}
	c.Segments = slices.Clone(c.Segments)
	var (
		a    Attr
		gone bool
	)
	err := s.update(ctx, []Ino{ino}, ino, func(o *op) error {
		gone = false
		n, err := o.get(ino)
		if errors.Is(err, ErrNotFound) {
			gone = true
			for _, seg := range c.Segments {
				o.garbage(seg.Object)
			}
			for _, ps := range c.Patches {
				for _, p := range ps {
					o.garbage(p.Object)
				}
			}
			return nil
		}
		if err != nil {
			return err
		}
		if n.kind != KindFile {
			return fmt.Errorf("inode %d is a %v: %w", ino, n.kind, ErrInvalid)
		}
		if err := o.setPatches(n, &c); err != nil {
			return err
		}
		keep := make(map[blob.ID]struct{}, len(c.Segments))
		for _, seg := range c.Segments {
			keep[seg.Object] = struct{}{}
		}
		for _, seg := range n.content.Segments {
			if _, ok := keep[seg.Object]; !ok {
				o.garbage(seg.Object)
			}
		}
		o.usage.bytes += size - n.size
		c.Patches = nil
		n.size, n.content = size, c
		n.mtime, n.ctime = mtime, mtime
		o.mark(n)
		a = n.attr()
		return nil
	})
	if err == nil && gone {
		err = fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	if err != nil {
		return Attr{}, fmt.Errorf("meta: set content: %w", err)
	}
	return a, nil
}

// Create makes a new file (with content c: FileID and Key set, no Segments), directory or
// symlink (to target) named name in parent. The name must be free (else ErrExists). The
// parent's mtime and ctime change, and its link count for a directory.
func (s *Store) Create(ctx context.Context, parent Ino, name string, kind Kind, mode uint32, target string, c Content) (Attr, error) {
	return s.create(ctx, s.db.Update, parent, name, kind, mode, target, c)
}

// CreateOpen is Create for a regular file that the caller opens at once, and it does not
// wait for the disk: the new file survives a crash of the machine only once a later
// durable change returns (its first SetContent, any other change of the store) or Sync
// does. The FUSE layer's create uses it and calls Sync when the file is flushed with nothing
// to write, so that a closed file is durable as always, at one sync instead of two.
func (s *Store) CreateOpen(ctx context.Context, parent Ino, name string, mode uint32, c Content) (Attr, error) {
	return s.create(ctx, s.db.UpdateLazy, parent, name, KindFile, mode, "", c)
}

// Sync returns once every change that returned before it is durable.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.db.Sync(ctx); err != nil {
		return fmt.Errorf("meta: sync: %w", err)
	}
	return nil
}

func (s *Store) create(ctx context.Context, commit func(context.Context, func(kv.Txn) error) error, parent Ino, name string, kind Kind, mode uint32, target string, c Content) (Attr, error) {
	if err := checkCreate(name, kind, target, c); err != nil {
		return Attr{}, fmt.Errorf("meta: create in %d: %w", parent, err)
	}
	ino, err := s.allocIno(ctx)
	if err != nil {
		return Attr{}, err
	}
	var a Attr
	err = s.updateWith(ctx, commit, []Ino{parent}, parent, func(o *op) error {
		p, err := o.dir(parent)
		if err != nil {
			return err
		}
		if _, ok, err := o.entry(parent, name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("name taken: %w", ErrExists)
		}
		n := &inode{
			ino: ino, kind: kind, mode: mode & 0o7777, nlink: 1,
			atime: o.now, mtime: o.now, ctime: o.now, share: p.share,
		}
		switch kind {
		case KindDir:
			n.nlink, n.parent, n.nextSeq = 2, parent, 1
			p.nlink++
		case KindSymlink:
			n.target = target
		case KindFile:
			n.content = Content{FileID: c.FileID, Key: c.Key}
		}
		o.create(n)
		if err := o.addEntry(p, name, n); err != nil {
			return err
		}
		o.touch(p)
		a = n.attr()
		return nil
	})
	if err != nil {
		s.releaseIno(ino)
		return Attr{}, fmt.Errorf("meta: create in %d: %w", parent, err)
	}
	return a, nil
}

func checkCreate(name string, kind Kind, target string, c Content) error {
	if err := checkName(name); err != nil {
		return err
	}
	switch kind {
	case KindFile:
		if len(c.Segments) != 0 {
			return fmt.Errorf("a new file has no segments: %w", ErrInvalid)
		}
	case KindDir, KindFIFO, KindSocket:
	case KindSymlink:
		if target == "" {
			return fmt.Errorf("empty symlink target: %w", ErrInvalid)
		}
		if len(target) > MaxTargetLen {
			return fmt.Errorf("symlink target of %d bytes, limit %d: %w", len(target), MaxTargetLen, ErrNameTooLong)
		}
	default:
		return fmt.Errorf("kind %d: %w", kind, ErrInvalid)
	}
	return nil
}

// Unlink removes a name of a file or symlink (ErrIsDir for a directory). When the inode's
// last name goes it becomes an orphan, kept with Nlink 0 until Reap, because the FUSE layer
// may still have it open. It returns the inode's attributes after the change.
func (s *Store) Unlink(ctx context.Context, parent Ino, name string) (Attr, error) {
	return s.unlink(ctx, parent, name, 0)
}

// UnlinkInode is Unlink of name only while it names inode want: if the name is gone, or
// now names another inode (deleted and made again since the caller looked), it fails with
// ErrNotFound and changes nothing. For deletions decided from an earlier look, such as
// the retention sweep's.
func (s *Store) UnlinkInode(ctx context.Context, parent Ino, name string, want Ino) (Attr, error) {
	if want == 0 {
		return Attr{}, fmt.Errorf("meta: unlink in %d: inode 0: %w", parent, ErrInvalid)
	}
	return s.unlink(ctx, parent, name, want)
}

// unlink is Unlink, of inode want only unless want is 0.
func (s *Store) unlink(ctx context.Context, parent Ino, name string, want Ino) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, fmt.Errorf("meta: unlink in %d: %w", parent, err)
	}
	var a Attr
	err := s.update(ctx, []Ino{parent}, parent, func(o *op) error {
		p, err := o.dir(parent)
		if err != nil {
			return err
		}
		e, ok, err := o.entry(parent, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no such name: %w", ErrNotFound)
		}
		if want != 0 && e.ino != want {
			return fmt.Errorf("the name now holds inode %d, not %d: %w", e.ino, want, ErrNotFound)
		}
		n, err := o.get(e.ino)
		if err != nil {
			return err
		}
		if n.kind == KindDir {
			return fmt.Errorf("inode %d: %w", n.ino, ErrIsDir)
		}
		if err := o.deleteEntry(parent, name, e); err != nil {
			return err
		}
		if err := o.dropLink(n); err != nil {
			return err
		}
		o.touch(p)
		a = n.attr()
		return nil
	})
	if err != nil {
		return Attr{}, fmt.Errorf("meta: unlink in %d: %w", parent, err)
	}
	return a, nil
}

// Rmdir removes an empty directory (ErrNotEmpty if it has entries, ErrNotDir for anything
// else). The directory is deleted at once: it has no data for an open handle to read.
func (s *Store) Rmdir(ctx context.Context, parent Ino, name string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("meta: rmdir in %d: %w", parent, err)
	}
	err := s.update(ctx, []Ino{parent}, parent, func(o *op) error {
		p, err := o.dir(parent)
		if err != nil {
			return err
		}
		e, ok, err := o.entry(parent, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no such name: %w", ErrNotFound)
		}
		// Read with Get, and written below: a create inside it conflicts with this.
		n, err := o.dir(e.ino)
		if err != nil {
			return err
		}
		if empty, err := o.isEmpty(n.ino); err != nil {
			return err
		} else if !empty {
			return fmt.Errorf("inode %d: %w", n.ino, ErrNotEmpty)
		}
		if err := o.deleteEntry(parent, name, e); err != nil {
			return err
		}
		p.nlink--
		o.touch(p)
		return o.remove(n)
	})
	if err != nil {
		return fmt.Errorf("meta: rmdir in %d: %w", parent, err)
	}
	return nil
}

// Link adds the name newName in newParent to a file or symlink (ErrIsDir for a directory,
// ErrCrossShare across shares, ErrNotFound for an orphan).
func (s *Store) Link(ctx context.Context, ino Ino, newParent Ino, newName string) (Attr, error) {
	if err := checkName(newName); err != nil {
		return Attr{}, fmt.Errorf("meta: link %d into %d: %w", ino, newParent, err)
	}
	var a Attr
	err := s.update(ctx, []Ino{ino, newParent}, newParent, func(o *op) error {
		n, err := o.get(ino)
		if err != nil {
			return err
		}
		if n.kind == KindDir {
			return fmt.Errorf("inode %d: %w", ino, ErrIsDir)
		}
		if n.nlink == 0 {
			// Like linkat of an unlinked file: an orphan stays one until Reap.
			return fmt.Errorf("inode %d has no name left: %w", ino, ErrNotFound)
		}
		if n.nlink == ^uint32(0) {
			return fmt.Errorf("inode %d: link count at its limit: %w", ino, ErrInvalid)
		}
		p, err := o.dir(newParent)
		if err != nil {
			return err
		}
		if p.share != n.share {
			return ErrCrossShare
		}
		if _, ok, err := o.entry(newParent, newName); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("name taken: %w", ErrExists)
		}
		n.nlink++
		n.ctime = o.now
		o.mark(n)
		if err := o.addEntry(p, newName, n); err != nil {
			return err
		}
		o.touch(p)
		a = n.attr()
		return nil
	})
	if err != nil {
		return Attr{}, fmt.Errorf("meta: link %d into %d: %w", ino, newParent, err)
	}
	return a, nil
}
