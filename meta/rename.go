package meta

import (
	"context"
	"fmt"
)

// maxDepth bounds the walk up a directory's ancestors; a deeper chain can only be a loop in
// a damaged store, and must not hang the caller.
const maxDepth = 1 << 16

// Rename moves oldName in oldParent to newName in newParent, in one transaction.
//
// Over an existing target a file or symlink replaces a file or symlink (the replaced inode
// loses a link and may become an orphan), and a directory replaces an empty directory
// (ErrNotEmpty otherwise); other mixes give ErrIsDir or ErrNotDir. RenameNoReplace gives
// ErrExists when the target exists; RenameExchange swaps two existing names. Moving a
// directory into itself or its own subtree gives ErrInvalid, and renaming between shares
// ErrCrossShare. Renaming a name onto another name of the same inode does nothing. The
// link counts of the directories and the mtime and ctime of both parents change.
//
// It returns the inodes that became orphans (none or one), for the caller to Reap once no
// handle holds them. A replaced directory is deleted at once, like Rmdir.
func (s *Store) Rename(ctx context.Context, oldParent Ino, oldName string, newParent Ino, newName string, flags RenameFlags) (orphaned []Ino, err error) {
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return nil, fmt.Errorf("meta: rename: flags %#x: %w", flags, ErrInvalid)
	}
	if err := checkName(oldName); err != nil {
		return nil, fmt.Errorf("meta: rename from %d: %w", oldParent, err)
	}
	if err := checkName(newName); err != nil {
		return nil, fmt.Errorf("meta: rename to %d: %w", newParent, err)
	}
	err = s.update(ctx, []Ino{oldParent, newParent}, newParent, func(o *op) error {
		orphaned = nil
		r := rename{o: o, oldParent: oldParent, oldName: oldName, newParent: newParent, newName: newName}
		gone, err := r.run(flags)
		if gone != 0 {
			orphaned = []Ino{gone}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("meta: rename from %d to %d: %w", oldParent, newParent, err)
	}
	return orphaned, nil
}

// rename is one attempt of Rename.
type rename struct {
	o                    *op
	oldParent, newParent Ino
	oldName, newName     string
	oldDir, newDir       *inode // the parents: one object when they are the same
	se, de               dirent // the source entry, and the target entry when it exists
	src, dst             *inode // dst is nil when the target name is free
}

// run does the rename and returns the inode it made an orphan, or 0.
func (r *rename) run(flags RenameFlags) (orphan Ino, err error) {
	o := r.o
	if r.oldDir, err = o.dir(r.oldParent); err != nil {
		return 0, err
	}
	if r.newDir, err = o.dir(r.newParent); err != nil {
		return 0, err
	}
	if r.oldDir.share != r.newDir.share {
		return 0, ErrCrossShare
	}
	se, ok, err := o.entry(r.oldParent, r.oldName)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("no such name in %d: %w", r.oldParent, ErrNotFound)
	}
	de, exists, err := o.entry(r.newParent, r.newName)
	if err != nil {
		return 0, err
	}
	switch {
	case flags&RenameNoReplace != 0 && exists:
		return 0, fmt.Errorf("target name taken: %w", ErrExists)
	case flags&RenameExchange != 0 && !exists:
		return 0, fmt.Errorf("no such name in %d: %w", r.newParent, ErrNotFound)
	case exists && de.ino == se.ino:
		return 0, nil // two names of one inode: rename(2) leaves both
	}
	r.se, r.de = se, de
	if r.src, err = o.get(se.ino); err != nil {
		return 0, err
	}
	if exists {
		if r.dst, err = o.get(de.ino); err != nil {
			return 0, err
		}
	}
	if r.oldParent != r.newParent {
		// A directory moving to another parent must not end up under itself.
		if r.src.kind == KindDir {
			if err := r.checkNotUnder(r.newParent, r.src.ino); err != nil {
				return 0, err
			}
		}
		if flags&RenameExchange != 0 && r.dst.kind == KindDir {
			if err := r.checkNotUnder(r.oldParent, r.dst.ino); err != nil {
				return 0, err
			}
		}
	}
	if flags&RenameExchange != 0 {
		return 0, r.exchange()
	}
	return r.move()
}

// checkNotUnder fails with ErrInvalid when dir is anc or lies below it. The ancestors are
// read with Get, so a concurrent move of any of them makes this attempt run again, and two
// opposite moves cannot both pass. They are also written back unchanged: kv allows a later
// backend to detect only write-write conflicts, and the other move writes the directory it
// moves, which is one of these ancestors whenever the two moves could make a loop.
func (r *rename) checkNotUnder(dir, anc Ino) error {
	for depth := 0; dir != 0; depth++ {
		if dir == anc {
			return fmt.Errorf("directory %d into its own subtree: %w", anc, ErrInvalid)
		}
		if depth == maxDepth {
			return fmt.Errorf("directory %d: ancestors deeper than %d: %w", dir, maxDepth, errCorrupt)
		}
		n, err := r.o.dir(dir)
		if err != nil {
			return err
		}
		r.o.mark(n)
		dir = n.parent
	}
	return nil
}

// move is a rename without RenameExchange.
func (r *rename) move() (orphan Ino, err error) {
	o, src, dst := r.o, r.src, r.dst
	if dst != nil {
		switch {
		case src.kind == KindDir && dst.kind != KindDir:
			return 0, fmt.Errorf("inode %d: %w", dst.ino, ErrNotDir)
		case src.kind != KindDir && dst.kind == KindDir:
			return 0, fmt.Errorf("inode %d: %w", dst.ino, ErrIsDir)
		case dst.kind == KindDir:
			if empty, err := o.isEmpty(dst.ino); err != nil {
				return 0, err
			} else if !empty {
				return 0, fmt.Errorf("inode %d: %w", dst.ino, ErrNotEmpty)
			}
		}
	}
	if err := o.deleteEntry(r.oldParent, r.oldName, r.se); err != nil {
		return 0, err
	}
	if dst == nil {
		if err := o.addEntry(r.newDir, r.newName, src); err != nil {
			return 0, err
		}
	} else {
		// The target name keeps its sequence number: it exists throughout, so a ReadDir in
		// progress must neither lose it nor see it twice.
		if err := o.setEntry(r.newParent, r.newName, dirent{ino: src.ino, kind: src.kind, seq: r.de.seq}); err != nil {
			return 0, err
		}
		if dst.kind == KindDir {
			r.newDir.nlink--
			if err := o.remove(dst); err != nil {
				return 0, err
			}
		} else {
			if err := o.dropLink(dst); err != nil {
				return 0, err
			}
			if dst.nlink == 0 {
				orphan = dst.ino
			}
		}
	}
	if src.kind == KindDir && r.oldParent != r.newParent {
		r.oldDir.nlink--
		r.newDir.nlink++
		src.parent = r.newParent
	}
	src.ctime = o.now
	o.mark(src)
	o.touch(r.oldDir)
	o.touch(r.newDir)
	return orphan, nil
}

// exchange swaps the inodes behind the two names; each name keeps its sequence number.
func (r *rename) exchange() error {
	o, src, dst := r.o, r.src, r.dst
	if err := o.setEntry(r.oldParent, r.oldName, dirent{ino: dst.ino, kind: dst.kind, seq: r.se.seq}); err != nil {
		return err
	}
	if err := o.setEntry(r.newParent, r.newName, dirent{ino: src.ino, kind: src.kind, seq: r.de.seq}); err != nil {
		return err
	}
	if r.oldParent != r.newParent {
		if src.kind == KindDir {
			r.oldDir.nlink--
			r.newDir.nlink++
			src.parent = r.newParent
		}
		if dst.kind == KindDir {
			r.newDir.nlink--
			r.oldDir.nlink++
			dst.parent = r.oldParent
		}
	}
	src.ctime, dst.ctime = o.now, o.now
	o.mark(src)
	o.mark(dst)
	o.touch(r.oldDir)
	o.touch(r.newDir)
	return nil
}
