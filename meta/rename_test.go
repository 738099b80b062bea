package meta

import (
	"reflect"
	"testing"
)

func testRenameMove(t *testing.T, e *env) {
	root := e.root.Ino
	a := e.dir(root, "a")
	b := e.dir(root, "b")
	f := e.file(a.Ino, "f")

	// Within one directory.
	orph, err := e.s.Rename(ctx, a.Ino, "f", a.Ino, "g", 0)
	e.ok(err)
	if len(orph) != 0 {
		t.Fatalf("orphans %v", orph)
	}
	e.gone(a.Ino, "f")
	if got := e.lookup(a.Ino, "g"); got.Ino != f.Ino || got.Ctime <= f.Ctime {
		t.Fatalf("moved file %+v", got)
	}
	// Across directories: both parents change.
	pa, pb := e.attr(a.Ino), e.attr(b.Ino)
	_, err = e.s.Rename(ctx, a.Ino, "g", b.Ino, "h", 0)
	e.ok(err)
	e.gone(a.Ino, "g")
	e.lookup(b.Ino, "h")
	if na, nb := e.attr(a.Ino), e.attr(b.Ino); na.Mtime <= pa.Mtime || nb.Mtime <= pb.Mtime || nb.Ctime != nb.Mtime {
		t.Fatalf("parents' times %+v %+v", na, nb)
	}
	// A directory across directories: link counts and its parent follow.
	c := e.dir(a.Ino, "c")
	e.file(c.Ino, "inside")
	_, err = e.s.Rename(ctx, a.Ino, "c", b.Ino, "c", 0)
	e.ok(err)
	if na, nb := e.attr(a.Ino), e.attr(b.Ino); na.Nlink != 2 || nb.Nlink != 3 {
		t.Fatalf("nlink a %d b %d", na.Nlink, nb.Nlink)
	}
	if got := e.names(c.Ino); !reflect.DeepEqual(got, []string{"inside"}) {
		t.Fatalf("moved dir lists %v", got)
	}
	e.check()
	// And then its old parent can go, and it can move under a sibling.
	e.ok(e.s.Rmdir(ctx, root, "a"))
	_, err = e.s.Rename(ctx, b.Ino, "c", root, "c2", 0)
	e.ok(err)
	_, err = e.s.Rename(ctx, root, "b", c.Ino, "b", 0)
	e.ok(err)
	if got := e.names(root); !reflect.DeepEqual(got, []string{"c2"}) {
		t.Fatalf("root lists %v", got)
	}
	e.check()
}

func testRenameReplace(t *testing.T, e *env) {
	root := e.root.Ino
	d := e.dir(root, "d")
	f := e.file(root, "f")
	g := e.file(d.Ino, "g")

	// A file over a file: the replaced one becomes an orphan and is returned.
	orph, err := e.s.Rename(ctx, root, "f", d.Ino, "g", 0)
	e.ok(err)
	if !reflect.DeepEqual(orph, []Ino{g.Ino}) {
		t.Fatalf("orphans %v, want [%d]", orph, g.Ino)
	}
	if a := e.attr(g.Ino); a.Nlink != 0 {
		t.Fatalf("replaced %+v", a)
	}
	if a := e.lookup(d.Ino, "g"); a.Ino != f.Ino {
		t.Fatalf("target now %d, want %d", a.Ino, f.Ino)
	}
	e.check()

	// A file with another name left is not an orphan.
	h := e.file(root, "h")
	e.ok2(e.s.Link(ctx, h.Ino, root, "h2"))
	e.file(root, "x")
	orph, err = e.s.Rename(ctx, root, "x", root, "h", 0)
	e.ok(err)
	if len(orph) != 0 {
		t.Fatalf("orphans %v", orph)
	}
	if a := e.attr(h.Ino); a.Nlink != 1 {
		t.Fatalf("nlink %d", a.Nlink)
	}
	// A symlink replaces a file.
	e.ok2(e.s.Create(ctx, root, "sl", KindSymlink, 0o777, "t", Content{}))
	orph, err = e.s.Rename(ctx, root, "sl", root, "h2", 0)
	e.ok(err)
	if !reflect.DeepEqual(orph, []Ino{h.Ino}) {
		t.Fatalf("orphans %v", orph)
	}

	// A directory over an empty directory: the replaced one is deleted.
	src := e.dir(root, "src")
	e.file(src.Ino, "content")
	empty := e.dir(d.Ino, "empty")
	e.ok(e.s.SetXattr(ctx, empty.Ino, "user.x", []byte("1"), 0))
	nroot, nd := e.attr(root).Nlink, e.attr(d.Ino).Nlink
	orph, err = e.s.Rename(ctx, root, "src", d.Ino, "empty", 0)
	e.ok(err)
	if len(orph) != 0 {
		t.Fatalf("orphans %v", orph)
	}
	_, err = e.s.GetAttr(ctx, empty.Ino)
	e.is(err, ErrNotFound)
	if got := e.attr(root).Nlink; got != nroot-1 {
		t.Fatalf("root nlink %d, was %d", got, nroot)
	}
	if got := e.attr(d.Ino).Nlink; got != nd {
		t.Fatalf("d nlink %d, was %d", got, nd)
	}
	if a := e.lookup(d.Ino, "empty"); a.Ino != src.Ino {
		t.Fatalf("target is %d", a.Ino)
	}
	e.check()

	// A directory over a non-empty one, and kind mismatches.
	e.dir(root, "d2")
	_, err = e.s.Rename(ctx, root, "d2", root, "d", 0)
	e.is(err, ErrNotEmpty)
	_, err = e.s.Rename(ctx, root, "d2", d.Ino, "g", 0)
	e.is(err, ErrNotDir)
	_, err = e.s.Rename(ctx, d.Ino, "g", root, "d2", 0)
	e.is(err, ErrIsDir)
	e.check()
}

func testRenameNoReplace(t *testing.T, e *env) {
	root := e.root.Ino
	f := e.file(root, "f")
	g := e.file(root, "g")
	_, err := e.s.Rename(ctx, root, "f", root, "g", RenameNoReplace)
	e.is(err, ErrExists)
	if e.lookup(root, "f").Ino != f.Ino || e.lookup(root, "g").Ino != g.Ino {
		t.Fatal("failed rename changed something")
	}
	// Even onto itself, as renameat2 does.
	_, err = e.s.Rename(ctx, root, "f", root, "f", RenameNoReplace)
	e.is(err, ErrExists)
	_, err = e.s.Rename(ctx, root, "f", root, "h", RenameNoReplace)
	e.ok(err)
	e.gone(root, "f")
	e.lookup(root, "h")
	e.check()
}

func testRenameExchange(t *testing.T, e *env) {
	root := e.root.Ino
	a := e.dir(root, "a")
	b := e.dir(root, "b")
	f := e.file(a.Ino, "f")
	d := e.dir(b.Ino, "d")
	e.file(d.Ino, "inside")

	orph, err := e.s.Rename(ctx, a.Ino, "f", b.Ino, "d", RenameExchange)
	e.ok(err)
	if len(orph) != 0 {
		t.Fatalf("orphans %v", orph)
	}
	if e.lookup(a.Ino, "f").Ino != d.Ino || e.lookup(b.Ino, "d").Ino != f.Ino {
		t.Fatal("names not swapped")
	}
	if na, nb := e.attr(a.Ino).Nlink, e.attr(b.Ino).Nlink; na != 3 || nb != 2 {
		t.Fatalf("nlink a %d b %d", na, nb)
	}
	if got := e.attr(f.Ino); got.Nlink != 1 || got.Ctime <= f.Ctime {
		t.Fatalf("file %+v", got)
	}
	e.check()
	// Within one directory, two directories.
	e.dir(a.Ino, "g")
	_, err = e.s.Rename(ctx, a.Ino, "f", a.Ino, "g", RenameExchange)
	e.ok(err)
	if e.lookup(a.Ino, "g").Ino != d.Ino {
		t.Fatal("not swapped")
	}
	e.check()
	// The target must exist; the flags exclude each other.
	_, err = e.s.Rename(ctx, a.Ino, "f", a.Ino, "nope", RenameExchange)
	e.is(err, ErrNotFound)
	_, err = e.s.Rename(ctx, a.Ino, "f", a.Ino, "g", RenameExchange|RenameNoReplace)
	e.is(err, ErrInvalid)
	_, err = e.s.Rename(ctx, a.Ino, "f", a.Ino, "x", 4)
	e.is(err, ErrInvalid)
	e.check()
}

func testRenameSubtree(t *testing.T, e *env) {
	root := e.root.Ino
	a := e.dir(root, "a")
	b := e.dir(a.Ino, "b")
	c := e.dir(b.Ino, "c")
	x := e.dir(root, "x")
	for _, tc := range []struct {
		newParent Ino
		name      string
	}{{a.Ino, "a2"}, {b.Ino, "a2"}, {c.Ino, "a2"}} {
		_, err := e.s.Rename(ctx, root, "a", tc.newParent, tc.name, 0)
		e.is(err, ErrInvalid)
		_, err = e.s.Rename(ctx, root, "a", tc.newParent, tc.name, RenameNoReplace)
		e.is(err, ErrInvalid)
	}
	// Exchange in either direction.
	e.dir(c.Ino, "y")
	_, err := e.s.Rename(ctx, root, "a", c.Ino, "y", RenameExchange)
	e.is(err, ErrInvalid)
	_, err = e.s.Rename(ctx, c.Ino, "y", root, "a", RenameExchange)
	e.is(err, ErrInvalid)
	// Onto an ancestor: not empty.
	_, err = e.s.Rename(ctx, b.Ino, "c", root, "a", 0)
	e.is(err, ErrNotEmpty)
	// Beside, fine; and x can go under c.
	_, err = e.s.Rename(ctx, root, "x", c.Ino, "x", 0)
	e.ok(err)
	_, err = e.s.Rename(ctx, root, "a", x.Ino, "a", 0)
	e.is(err, ErrInvalid) // x is now under a
	e.check()
}

func testRenameCrossShare(t *testing.T, e *env) {
	other := e.ok2(e.s.ShareRoot(ctx, "s2", 0o770))
	e.file(e.root.Ino, "f")
	e.file(other.Ino, "g")
	_, err := e.s.Rename(ctx, e.root.Ino, "f", other.Ino, "f", 0)
	e.is(err, ErrCrossShare)
	_, err = e.s.Rename(ctx, e.root.Ino, "f", other.Ino, "g", RenameExchange)
	e.is(err, ErrCrossShare)
	e.lookup(e.root.Ino, "f")
	d := e.dir(other.Ino, "d")
	if d.Share != "s2" {
		t.Fatalf("share %q", d.Share)
	}
	e.check()
}

func testRenameSameInode(t *testing.T, e *env) {
	root := e.root.Ino
	f := e.file(root, "f")
	e.ok2(e.s.Link(ctx, f.Ino, root, "g"))
	before := e.attr(root)
	for _, names := range [][2]string{{"f", "f"}, {"f", "g"}} {
		for _, flags := range []RenameFlags{0, RenameExchange} {
			orph, err := e.s.Rename(ctx, root, names[0], root, names[1], flags)
			e.ok(err)
			if len(orph) != 0 {
				t.Fatalf("orphans %v", orph)
			}
		}
	}
	if e.lookup(root, "f").Nlink != 2 || e.lookup(root, "g").Ino != f.Ino {
		t.Fatal("a no-op rename changed links")
	}
	if a := e.attr(root); !reflect.DeepEqual(a, before) {
		t.Fatalf("a no-op rename touched the parent: %+v", a)
	}
	d := e.dir(root, "d")
	_, err := e.s.Rename(ctx, root, "d", root, "d", 0)
	e.ok(err)
	_, err = e.s.Rename(ctx, root, "d", d.Ino, "d", 0)
	e.is(err, ErrInvalid)
	e.check()
}

func testRenameErrors(t *testing.T, e *env) {
	root := e.root.Ino
	f := e.file(root, "f")
	_, err := e.s.Rename(ctx, root, "nope", root, "x", 0)
	e.is(err, ErrNotFound)
	_, err = e.s.Rename(ctx, 999999, "f", root, "x", 0)
	e.is(err, ErrNotFound)
	_, err = e.s.Rename(ctx, root, "f", 999999, "x", 0)
	e.is(err, ErrNotFound)
	_, err = e.s.Rename(ctx, root, "f", f.Ino, "x", 0)
	e.is(err, ErrNotDir)
	_, err = e.s.Rename(ctx, f.Ino, "f", root, "x", 0)
	e.is(err, ErrNotDir)
	e.lookup(root, "f")
	e.check()
}
