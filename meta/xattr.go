package meta

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"dsh/kv"
)

// Extended attributes are stored one key each, beside the inode; the inode record counts
// them (to enforce MaxXattrs without a scan), and setting or removing one changes the
// inode's ctime, as on Linux. Their names are not interpreted: the FUSE layer decides
// which namespaces (user., security., ...) it lets through.

func checkXattrName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty attribute name: %w", ErrInvalid)
	case len(name) > MaxXattrNameLen:
		return fmt.Errorf("attribute name of %d bytes, limit %d: %w", len(name), MaxXattrNameLen, ErrNameTooLong)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("attribute name contains NUL: %w", ErrInvalid)
	}
	return nil
}

// GetXattr returns the value of the extended attribute name of ino (ErrNoAttr if unset).
func (s *Store) GetXattr(ctx context.Context, ino Ino, name string) ([]byte, error) {
	if err := checkXattrName(name); err != nil {
		return nil, fmt.Errorf("meta: getxattr on %d: %w", ino, err)
	}
	var val []byte
	err := s.db.View(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(xattrKey(ino, name))
		if errors.Is(err, kv.ErrNotFound) {
			// Only a miss pays for telling a missing attribute from a missing inode.
			if _, err := loadInode(tx, ino); err != nil {
				return err
			}
			return ErrNoAttr
		}
		if err != nil {
			return err
		}
		val, err = decodeXattr(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("meta: getxattr on %d: %w", ino, err)
	}
	return val, nil
}

// ListXattr returns the names of the extended attributes of ino, in byte order.
func (s *Store) ListXattr(ctx context.Context, ino Ino) ([]string, error) {
	var names []string
	err := s.db.View(ctx, func(tx kv.Txn) error {
		n, err := loadInode(tx, ino)
		if err != nil {
			return err
		}
		names = make([]string, 0, n.xattrs)
		return tx.Scan(xattrInoPrefix(ino), nil, func(k, _ []byte) (bool, error) {
			name, err := parseSuffix(k)
			if err != nil {
				return false, err
			}
			names = append(names, name)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta: listxattr on %d: %w", ino, err)
	}
	return names, nil
}

// SetXattr sets the extended attribute name of ino to value (at most MaxXattrValue bytes,
// else ErrInvalid). With XattrCreate it fails with ErrExists if the attribute is set; with
// XattrReplace, with ErrNoAttr if it is not. A new attribute beyond MaxXattrs on one inode
// gives ErrNoSpace.
func (s *Store) SetXattr(ctx context.Context, ino Ino, name string, value []byte, flags XattrFlags) error {
	if err := checkXattrName(name); err != nil {
		return fmt.Errorf("meta: setxattr on %d: %w", ino, err)
	}
	if flags&^(XattrCreate|XattrReplace) != 0 || flags == XattrCreate|XattrReplace {
		return fmt.Errorf("meta: setxattr on %d: flags %#x: %w", ino, flags, ErrInvalid)
	}
	if len(value) > MaxXattrValue {
		return fmt.Errorf("meta: setxattr on %d: value of %d bytes, limit %d: %w", ino, len(value), MaxXattrValue, ErrInvalid)
	}
	key := xattrKey(ino, name)
	enc := encodeXattr(value)
	err := s.update(ctx, []Ino{ino}, ino, func(o *op) error {
		n, err := o.get(ino)
		if err != nil {
			return err
		}
		_, err = o.tx.Get(key)
		exists := err == nil
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		switch {
		case exists && flags == XattrCreate:
			return ErrExists
		case !exists && flags == XattrReplace:
			return ErrNoAttr
		case !exists && n.xattrs >= MaxXattrs:
			return fmt.Errorf("%d attributes: %w", n.xattrs, ErrNoSpace)
		}
		if !exists {
			n.xattrs++
		}
		if err := o.tx.Set(key, enc); err != nil {
			return err
		}
		n.ctime = o.now
		o.mark(n)
		return nil
	})
	if err != nil {
		return fmt.Errorf("meta: setxattr on %d: %w", ino, err)
	}
	return nil
}

// RemoveXattr removes the extended attribute name of ino (ErrNoAttr if unset).
func (s *Store) RemoveXattr(ctx context.Context, ino Ino, name string) error {
	if err := checkXattrName(name); err != nil {
		return fmt.Errorf("meta: removexattr on %d: %w", ino, err)
	}
	key := xattrKey(ino, name)
	err := s.update(ctx, []Ino{ino}, ino, func(o *op) error {
		n, err := o.get(ino)
		if err != nil {
			return err
		}
		if _, err := o.tx.Get(key); errors.Is(err, kv.ErrNotFound) {
			return ErrNoAttr
		} else if err != nil {
			return err
		}
		if err := o.tx.Delete(key); err != nil {
			return err
		}
		if n.xattrs > 0 {
			n.xattrs--
		}
		n.ctime = o.now
		o.mark(n)
		return nil
	})
	if err != nil {
		return fmt.Errorf("meta: removexattr on %d: %w", ino, err)
	}
	return nil
}
