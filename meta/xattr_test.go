package meta

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func testXattr(t *testing.T, e *env) {
	f := e.file(e.root.Ino, "f")
	if names, err := e.s.ListXattr(ctx, f.Ino); err != nil || len(names) != 0 {
		t.Fatalf("list of none: %v %v", names, err)
	}
	_, err := e.s.GetXattr(ctx, f.Ino, "user.a")
	e.is(err, ErrNoAttr)

	e.ok(e.s.SetXattr(ctx, f.Ino, "user.b", []byte("two"), 0))
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("one"), XattrCreate))
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.empty", nil, 0))
	if v := e.ok3(e.s.GetXattr(ctx, f.Ino, "user.a")); string(v) != "one" {
		t.Fatalf("got %q", v)
	}
	if v := e.ok3(e.s.GetXattr(ctx, f.Ino, "user.empty")); v == nil || len(v) != 0 {
		t.Fatalf("empty value %q (nil %v)", v, v == nil)
	}
	names, err := e.s.ListXattr(ctx, f.Ino)
	e.ok(err)
	if !reflect.DeepEqual(names, []string{"user.a", "user.b", "user.empty"}) {
		t.Fatalf("list %v", names)
	}
	if a := e.attr(f.Ino); a.Ctime <= f.Ctime || a.Mtime != f.Mtime {
		t.Fatalf("times after setxattr %+v", a)
	}

	// Flags.
	e.is(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("x"), XattrCreate), ErrExists)
	e.is(e.s.SetXattr(ctx, f.Ino, "user.c", []byte("x"), XattrReplace), ErrNoAttr)
	e.is(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("x"), XattrCreate|XattrReplace), ErrInvalid)
	e.is(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("x"), 8), ErrInvalid)
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("uno"), XattrReplace))
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("ein"), 0))
	if v := e.ok3(e.s.GetXattr(ctx, f.Ino, "user.a")); string(v) != "ein" {
		t.Fatalf("got %q", v)
	}
	// The caller's buffer is not kept.
	buf := []byte("abc")
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.buf", buf, 0))
	buf[0] = 'X'
	if v := e.ok3(e.s.GetXattr(ctx, f.Ino, "user.buf")); string(v) != "abc" {
		t.Fatalf("got %q", v)
	}

	e.ok(e.s.RemoveXattr(ctx, f.Ino, "user.a"))
	e.is(e.s.RemoveXattr(ctx, f.Ino, "user.a"), ErrNoAttr)
	_, err = e.s.GetXattr(ctx, f.Ino, "user.a")
	e.is(err, ErrNoAttr)

	// Value sizes.
	big := bytes.Repeat([]byte{7}, MaxXattrValue)
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.big", big, 0))
	if v := e.ok3(e.s.GetXattr(ctx, f.Ino, "user.big")); !bytes.Equal(v, big) {
		t.Fatal("big value changed")
	}
	e.is(e.s.SetXattr(ctx, f.Ino, "user.big", append(big, 1), 0), ErrInvalid)

	// Names.
	e.is(e.s.SetXattr(ctx, f.Ino, "", nil, 0), ErrInvalid)
	e.is(e.s.SetXattr(ctx, f.Ino, "a\x00b", nil, 0), ErrInvalid)
	e.is(e.s.SetXattr(ctx, f.Ino, strings.Repeat("n", MaxXattrNameLen+1), nil, 0), ErrNameTooLong)
	e.ok(e.s.SetXattr(ctx, f.Ino, strings.Repeat("n", MaxXattrNameLen), nil, 0))
	_, err = e.s.GetXattr(ctx, f.Ino, "")
	e.is(err, ErrInvalid)
	e.is(e.s.RemoveXattr(ctx, f.Ino, ""), ErrInvalid)

	// A missing inode.
	_, err = e.s.GetXattr(ctx, 999999, "user.a")
	e.is(err, ErrNotFound)
	_, err = e.s.ListXattr(ctx, 999999)
	e.is(err, ErrNotFound)
	e.is(e.s.SetXattr(ctx, 999999, "user.a", nil, 0), ErrNotFound)
	e.is(e.s.RemoveXattr(ctx, 999999, "user.a"), ErrNotFound)

	// Directories and symlinks have them too, and an inode's attributes are its own.
	d := e.dir(e.root.Ino, "d")
	e.ok(e.s.SetXattr(ctx, d.Ino, "user.a", []byte("dir"), XattrCreate))
	if v := e.ok3(e.s.GetXattr(ctx, d.Ino, "user.a")); string(v) != "dir" {
		t.Fatalf("got %q", v)
	}
	e.check()
}

func testXattrLimits(t *testing.T, e *env) {
	f := e.file(e.root.Ino, "f")
	for i := range MaxXattrs {
		e.ok(e.s.SetXattr(ctx, f.Ino, fmt.Sprintf("user.%03d", i), []byte{byte(i)}, 0))
	}
	e.is(e.s.SetXattr(ctx, f.Ino, "user.more", nil, 0), ErrNoSpace)
	// Replacing one is still allowed, and removing one makes room.
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.000", []byte("x"), 0))
	e.ok(e.s.RemoveXattr(ctx, f.Ino, "user.000"))
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.more", nil, 0))
	names, err := e.s.ListXattr(ctx, f.Ino)
	e.ok(err)
	if len(names) != MaxXattrs {
		t.Fatalf("%d names", len(names))
	}
	e.check()
	// Reaping the inode removes them all in one transaction.
	e.ok2(e.s.Unlink(ctx, e.root.Ino, "f"))
	e.ok(e.s.Reap(ctx, f.Ino))
	e.check()
}
