package meta

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"dsh/blob"
)

func testShareRoot(t *testing.T, e *env) {
	r := e.root
	if r.Kind != KindDir || r.Mode != 0o770 || r.Nlink != 2 || r.Share != "s1" || r.Ino < FirstIno {
		t.Fatalf("root %+v", r)
	}
	// A second call returns the same root and keeps its mode.
	again := e.ok2(e.s.ShareRoot(ctx, "s1", 0o700))
	if !reflect.DeepEqual(again, r) {
		t.Fatalf("second call %+v, first %+v", again, r)
	}
	if got := e.attr(r.Ino); !reflect.DeepEqual(got, r) {
		t.Fatalf("getattr %+v", got)
	}
	_, err := e.s.ShareRoot(ctx, "", 0o770)
	e.is(err, ErrInvalid)
	_, err = e.s.ShareRoot(ctx, "a/b", 0o770)
	e.is(err, ErrInvalid)

	// Concurrent first uses agree on one inode.
	var wg sync.WaitGroup
	inos := make([]Ino, 16)
	for i := range inos {
		wg.Go(func() {
			a, err := e.s.ShareRoot(ctx, "s2", 0o770)
			if err != nil {
				t.Error(err)
			}
			inos[i] = a.Ino
		})
	}
	wg.Wait()
	for _, ino := range inos {
		if ino != inos[0] || ino == r.Ino {
			t.Fatalf("concurrent roots %v (s1 is %d)", inos, r.Ino)
		}
	}
	if n, _ := e.usage(); n != 2 {
		t.Fatalf("usage counts %d inodes, want 2 roots", n)
	}
	e.check()
}

func testCreateLookup(t *testing.T, e *env) {
	root := e.root
	c := newContent(t)
	f := e.ok2(e.s.Create(ctx, root.Ino, "file", KindFile, 0o100644, "", c))
	want := Attr{Ino: f.Ino, Share: "s1", Kind: KindFile, Mode: 0o644, Nlink: 1,
		Atime: f.Atime, Mtime: f.Atime, Ctime: f.Atime, Content: Content{FileID: c.FileID, Key: c.Key}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("created %+v\nwant %+v", f, want)
	}
	if f.Atime <= root.Mtime {
		t.Fatalf("times %d not after root's %d", f.Atime, root.Mtime)
	}
	if got := e.lookup(root.Ino, "file"); !reflect.DeepEqual(got, f) {
		t.Fatalf("lookup %+v", got)
	}
	p := e.attr(root.Ino)
	if p.Nlink != 2 || p.Mtime <= root.Mtime || p.Ctime != p.Mtime {
		t.Fatalf("parent after file create %+v", p)
	}

	d := e.dir(root.Ino, "dir")
	if d.Kind != KindDir || d.Nlink != 2 || d.Size != 0 || d.Mode != 0o750 || d.Ino == f.Ino {
		t.Fatalf("dir %+v", d)
	}
	if p := e.attr(root.Ino); p.Nlink != 3 {
		t.Fatalf("parent nlink %d after mkdir", p.Nlink)
	}
	l := e.ok2(e.s.Create(ctx, d.Ino, "link", KindSymlink, 0o777, "../file", Content{}))
	if l.Kind != KindSymlink || l.Target != "../file" || l.Size != 7 || l.Nlink != 1 {
		t.Fatalf("symlink %+v", l)
	}
	if got := e.lookup(d.Ino, "link"); !reflect.DeepEqual(got, l) {
		t.Fatalf("lookup symlink %+v", got)
	}

	// Errors.
	_, err := e.s.Create(ctx, root.Ino, "file", KindDir, 0o755, "", Content{})
	e.is(err, ErrExists)
	_, err = e.s.Create(ctx, 999999, "x", KindFile, 0o644, "", Content{})
	e.is(err, ErrNotFound)
	_, err = e.s.Create(ctx, f.Ino, "x", KindFile, 0o644, "", Content{})
	e.is(err, ErrNotDir)
	_, err = e.s.Create(ctx, root.Ino, "x", Kind(9), 0o644, "", Content{})
	e.is(err, ErrInvalid)
	_, err = e.s.Create(ctx, root.Ino, "x", KindSymlink, 0o777, "", Content{})
	e.is(err, ErrInvalid)
	_, err = e.s.Create(ctx, root.Ino, "x", KindSymlink, 0o777, strings.Repeat("a", MaxTargetLen+1), Content{})
	e.is(err, ErrNameTooLong)
	_, err = e.s.Create(ctx, root.Ino, "x", KindFile, 0o644, "", Content{Segments: segs(1)})
	e.is(err, ErrInvalid)
	e.gone(root.Ino, "x")
	_, err = e.s.Lookup(ctx, f.Ino, "x")
	e.is(err, ErrNotDir)
	_, err = e.s.Lookup(ctx, 999999, "x")
	e.is(err, ErrNotFound)
	e.ok2(e.s.Create(ctx, root.Ino, "long", KindSymlink, 0o777, strings.Repeat("a", MaxTargetLen), Content{}))
	e.check()
}

func testNameRules(t *testing.T, e *env) {
	bad := map[string]error{
		"":                                     ErrInvalid,
		".":                                    ErrInvalid,
		"..":                                   ErrInvalid,
		"a/b":                                  ErrInvalid,
		"/":                                    ErrInvalid,
		"a\x00b":                               ErrInvalid,
		strings.Repeat("n", MaxNameLen+1):      ErrNameTooLong,
		strings.Repeat("é", MaxNameLen/2+1):    ErrNameTooLong,
		strings.Repeat("n", 4*MaxNameLen) + "": ErrNameTooLong,
	}
	f := e.file(e.root.Ino, "f")
	for name, want := range bad {
		_, err := e.s.Create(ctx, e.root.Ino, name, KindFile, 0o644, "", Content{})
		e.is(err, want)
		_, err = e.s.Lookup(ctx, e.root.Ino, name)
		e.is(err, want)
		_, err = e.s.Unlink(ctx, e.root.Ino, name)
		e.is(err, want)
		e.is(e.s.Rmdir(ctx, e.root.Ino, name), want)
		_, err = e.s.Link(ctx, f.Ino, e.root.Ino, name)
		e.is(err, want)
		_, err = e.s.Rename(ctx, e.root.Ino, "f", e.root.Ino, name, 0)
		e.is(err, want)
		_, err = e.s.Rename(ctx, e.root.Ino, name, e.root.Ino, "g", 0)
		e.is(err, want)
	}
	// At the limits, and any other byte, is fine.
	for _, name := range []string{strings.Repeat("n", MaxNameLen), "...", ".a", "a\nb", "\xff\xfe", " "} {
		a := e.file(e.root.Ino, name)
		if got := e.lookup(e.root.Ino, name); got.Ino != a.Ino {
			t.Fatalf("lookup %q: %d, want %d", name, got.Ino, a.Ino)
		}
	}
	e.check()
}

func testGetSetAttr(t *testing.T, e *env) {
	f := e.file(e.root.Ino, "f")
	_, err := e.s.GetAttr(ctx, 999999)
	e.is(err, ErrNotFound)

	// No field: nothing changes, not even ctime.
	if got := e.ok2(e.s.SetAttr(ctx, f.Ino, SetAttr{})); !reflect.DeepEqual(got, f) {
		t.Fatalf("empty setattr changed %+v to %+v", f, got)
	}
	mode := uint32(0o104755)
	got := e.ok2(e.s.SetAttr(ctx, f.Ino, SetAttr{Mode: &mode}))
	if got.Mode != 0o4755 || got.Ctime <= f.Ctime || got.Mtime != f.Mtime || got.Atime != f.Atime {
		t.Fatalf("chmod: %+v (before %+v)", got, f)
	}
	at, mt := int64(12345), int64(-67890)
	got2 := e.ok2(e.s.SetAttr(ctx, f.Ino, SetAttr{Atime: &at, Mtime: &mt}))
	if got2.Atime != at || got2.Mtime != mt || got2.Ctime <= got.Ctime || got2.Mode != 0o4755 {
		t.Fatalf("utimes: %+v", got2)
	}
	if a := e.attr(f.Ino); !reflect.DeepEqual(a, got2) {
		t.Fatalf("getattr %+v, setattr returned %+v", a, got2)
	}
	// Directories too.
	d := e.dir(e.root.Ino, "d")
	if a := e.ok2(e.s.SetAttr(ctx, d.Ino, SetAttr{Mode: &mode})); a.Mode != 0o4755 || a.Kind != KindDir {
		t.Fatalf("chmod dir %+v", a)
	}
	_, err = e.s.SetAttr(ctx, 999999, SetAttr{Mode: &mode})
	e.is(err, ErrNotFound)
	e.check()
}

func testUnlink(t *testing.T, e *env) {
	root := e.root.Ino
	f := e.file(root, "f")
	d := e.dir(root, "d")
	before := e.attr(root)
	a := e.ok2(e.s.Unlink(ctx, root, "f"))
	if a.Ino != f.Ino || a.Nlink != 0 || a.Ctime <= f.Ctime {
		t.Fatalf("unlink returned %+v", a)
	}
	e.gone(root, "f")
	// The orphan is still there for open handles.
	if got := e.attr(f.Ino); got.Nlink != 0 || got.Content.FileID != f.Content.FileID {
		t.Fatalf("orphan %+v", got)
	}
	if p := e.attr(root); p.Mtime <= before.Mtime || p.Nlink != before.Nlink {
		t.Fatalf("parent %+v, before %+v", p, before)
	}
	_, err := e.s.Unlink(ctx, root, "f")
	e.is(err, ErrNotFound)
	_, err = e.s.Unlink(ctx, root, "d")
	e.is(err, ErrIsDir)
	e.lookup(root, "d")
	_, err = e.s.Unlink(ctx, d.Ino+999999, "x")
	e.is(err, ErrNotFound)
	s := e.ok2(e.s.Create(ctx, d.Ino, "s", KindSymlink, 0o777, "t", Content{}))
	if a := e.ok2(e.s.Unlink(ctx, d.Ino, "s")); a.Ino != s.Ino || a.Nlink != 0 {
		t.Fatalf("unlink symlink %+v", a)
	}
	g := e.file(d.Ino, "g")
	_, err = e.s.Unlink(ctx, g.Ino, "x")
	e.is(err, ErrNotDir)

	// UnlinkInode removes the name only while it names the inode the caller saw.
	h := e.file(root, "h")
	e.ok2(e.s.Unlink(ctx, root, "h"))
	h2 := e.file(root, "h")
	_, err = e.s.UnlinkInode(ctx, root, "h", h.Ino)
	e.is(err, ErrNotFound)
	if got := e.lookup(root, "h"); got.Ino != h2.Ino {
		t.Fatalf("UnlinkInode of a name now holding another inode changed it: %+v", got)
	}
	_, err = e.s.UnlinkInode(ctx, root, "h", 0)
	e.is(err, ErrInvalid)
	if a := e.ok2(e.s.UnlinkInode(ctx, root, "h", h2.Ino)); a.Ino != h2.Ino || a.Nlink != 0 {
		t.Fatalf("UnlinkInode %+v", a)
	}
	e.gone(root, "h")
	e.check()
}

func testRmdir(t *testing.T, e *env) {
	root := e.root.Ino
	d := e.dir(root, "d")
	sub := e.dir(d.Ino, "sub")
	e.file(root, "f")
	e.ok(e.s.SetXattr(ctx, sub.Ino, "user.x", []byte("v"), 0))
	e.is(e.s.Rmdir(ctx, root, "d"), ErrNotEmpty)
	e.is(e.s.Rmdir(ctx, root, "f"), ErrNotDir)
	e.is(e.s.Rmdir(ctx, root, "nope"), ErrNotFound)
	e.is(e.s.Rmdir(ctx, 999999, "d"), ErrNotFound)
	if a := e.attr(d.Ino); a.Nlink != 3 {
		t.Fatalf("d nlink %d with one subdir", a.Nlink)
	}
	e.ok(e.s.Rmdir(ctx, d.Ino, "sub"))
	if a := e.attr(d.Ino); a.Nlink != 2 {
		t.Fatalf("d nlink %d after rmdir", a.Nlink)
	}
	_, err := e.s.GetAttr(ctx, sub.Ino)
	e.is(err, ErrNotFound)
	e.ok(e.s.Rmdir(ctx, root, "d"))
	e.gone(root, "d")
	if a := e.attr(root); a.Nlink != 2 {
		t.Fatalf("root nlink %d", a.Nlink)
	}
	// A file in a removed directory cannot be created.
	_, err = e.s.Create(ctx, d.Ino, "x", KindFile, 0o644, "", Content{})
	e.is(err, ErrNotFound)
	// A directory emptied by unlinks can go.
	d2 := e.dir(root, "d2")
	e.file(d2.Ino, "a")
	e.ok2(e.s.Unlink(ctx, d2.Ino, "a"))
	e.ok(e.s.Rmdir(ctx, root, "d2"))
	if n, _ := e.usage(); n != 3 { // root, f, and the orphan of d2/a
		t.Fatalf("usage %d inodes", n)
	}
	e.check()
}

func testLink(t *testing.T, e *env) {
	root := e.root.Ino
	d := e.dir(root, "d")
	f := e.file(root, "f")
	a := e.ok2(e.s.Link(ctx, f.Ino, d.Ino, "f2"))
	if a.Nlink != 2 || a.Ctime <= f.Ctime {
		t.Fatalf("link: %+v", a)
	}
	if got := e.lookup(d.Ino, "f2"); got.Ino != f.Ino || got.Nlink != 2 {
		t.Fatalf("lookup link: %+v", got)
	}
	if p := e.attr(d.Ino); p.Nlink != 2 || p.Mtime <= d.Mtime {
		t.Fatalf("link parent %+v", p)
	}
	// Losing one name leaves the other.
	if a := e.ok2(e.s.Unlink(ctx, root, "f")); a.Nlink != 1 {
		t.Fatalf("after unlink: %+v", a)
	}
	e.check()

	_, err := e.s.Link(ctx, d.Ino, root, "dlink")
	e.is(err, ErrIsDir)
	_, err = e.s.Link(ctx, f.Ino, d.Ino, "f2")
	e.is(err, ErrExists)
	_, err = e.s.Link(ctx, f.Ino, f.Ino, "x")
	e.is(err, ErrNotDir)
	_, err = e.s.Link(ctx, 999999, d.Ino, "x")
	e.is(err, ErrNotFound)
	_, err = e.s.Link(ctx, f.Ino, 999999, "x")
	e.is(err, ErrNotFound)
	other := e.ok2(e.s.ShareRoot(ctx, "s2", 0o770))
	_, err = e.s.Link(ctx, f.Ino, other.Ino, "x")
	e.is(err, ErrCrossShare)
	// An orphan cannot get a name back.
	e.ok2(e.s.Unlink(ctx, d.Ino, "f2"))
	_, err = e.s.Link(ctx, f.Ino, d.Ino, "again")
	e.is(err, ErrNotFound)
	// Symlinks can be linked.
	s := e.ok2(e.s.Create(ctx, root, "s", KindSymlink, 0o777, "t", Content{}))
	if a := e.ok2(e.s.Link(ctx, s.Ino, d.Ino, "s2")); a.Nlink != 2 || a.Target != "t" {
		t.Fatalf("symlink link %+v", a)
	}
	e.check()
}

func testSetContent(t *testing.T, e *env) {
	f := e.file(e.root.Ino, "f")
	s1 := segs(3) // A B C
	a := e.ok2(e.s.SetContent(ctx, f.Ino, 3000, Content{FileID: f.Content.FileID, Key: f.Content.Key, Segments: s1}, 777))
	if a.Size != 3000 || a.Mtime != 777 || a.Ctime != 777 || !reflect.DeepEqual(a.Content.Segments, s1) {
		t.Fatalf("set content: %+v", a)
	}
	if g := e.garbage(); len(g) != 0 {
		t.Fatalf("garbage %v after first write", g)
	}
	// Rewrite segment 1, drop segment 2 (truncate), keep segment 0.
	s2 := []Segment{s1[0], {Index: 1, Object: blob.NewID()}}
	a = e.ok2(e.s.SetContent(ctx, f.Ino, 1500, Content{FileID: f.Content.FileID, Key: f.Content.Key, Segments: s2}, 888))
	if a.Size != 1500 || !reflect.DeepEqual(a.Content.Segments, s2) {
		t.Fatalf("rewrite: %+v", a)
	}
	if g := e.garbage(); len(g) != 2 || !g[s1[1].Object] || !g[s1[2].Object] {
		t.Fatalf("garbage %v, want B and C", g)
	}
	if got := e.attr(f.Ino); !reflect.DeepEqual(got, a) {
		t.Fatalf("getattr %+v\nwant %+v", got, a)
	}
	if _, b := e.usage(); b != 1500 {
		t.Fatalf("usage %d bytes", b)
	}
	// The caller's slice is not kept.
	s2[0].Index = 99
	if got := e.attr(f.Ino); got.Content.Segments[0].Index != 0 {
		t.Fatal("SetContent kept the caller's slice")
	}

	// Errors change nothing.
	_, err := e.s.SetContent(ctx, f.Ino, -1, Content{}, 1)
	e.is(err, ErrInvalid)
	_, err = e.s.SetContent(ctx, f.Ino, 1, Content{Segments: []Segment{{Index: 2}, {Index: 1}}}, 1)
	e.is(err, ErrInvalid)
	_, err = e.s.SetContent(ctx, f.Ino, 1, Content{Segments: []Segment{{Index: 1}, {Index: 1}}}, 1)
	e.is(err, ErrInvalid)
	_, err = e.s.SetContent(ctx, e.root.Ino, 1, Content{}, 1)
	e.is(err, ErrInvalid)
	if got := e.attr(f.Ino); got.Size != 1500 {
		t.Fatalf("size %d after failed calls", got.Size)
	}

	// Written to a file deleted meanwhile: its new objects go to the garbage list.
	e.ok2(e.s.Unlink(ctx, e.root.Ino, "f"))
	e.ok(e.s.Reap(ctx, f.Ino))
	late := segs(2)
	_, err = e.s.SetContent(ctx, f.Ino, 10, Content{Segments: late}, 1)
	e.is(err, ErrNotFound)
	g := e.garbage()
	for _, s := range append(late, s2[1], s1[0]) {
		if !g[s.Object] {
			t.Fatalf("object of segment %d not on the garbage list", s.Index)
		}
	}
	if _, b := e.usage(); b != 0 {
		t.Fatalf("usage %d bytes after reap", b)
	}
	// A file of MaxSegments segments can be rewritten whole, and reaped, in one transaction
	// each; one more segment is refused.
	big := e.file(e.root.Ino, "big")
	full := segs(MaxSegments)
	for i := range full {
		full[i].Index = uint64(i) << 40 // the longest varints that are likely
	}
	e.ok2(e.s.SetContent(ctx, big.Ino, 1<<40, Content{FileID: big.Content.FileID, Key: big.Content.Key, Segments: full}, 1))
	full2 := segs(MaxSegments)
	e.ok2(e.s.SetContent(ctx, big.Ino, 1<<41, Content{FileID: big.Content.FileID, Key: big.Content.Key, Segments: full2}, 1))
	_, err = e.s.SetContent(ctx, big.Ino, 1<<41, Content{Segments: segs(MaxSegments + 1)}, 1)
	e.is(err, ErrTooBig)
	e.is(err, ErrInvalid)
	if got := e.attr(big.Ino); len(got.Content.Segments) != MaxSegments {
		t.Fatalf("%d segments after refused write", len(got.Content.Segments))
	}
	if g := e.garbage(); !g[full[0].Object] || !g[full[MaxSegments-1].Object] {
		t.Fatal("replaced segments not on the garbage list")
	}
	e.ok2(e.s.Unlink(ctx, e.root.Ino, "big"))
	e.ok(e.s.Reap(ctx, big.Ino))
	if g := e.garbage(); !g[full2[0].Object] || !g[full2[MaxSegments-1].Object] {
		t.Fatal("reaped segments not on the garbage list")
	}
	e.check()
}

func testOrphansAndReap(t *testing.T, e *env) {
	root := e.root.Ino
	f := e.file(root, "f")
	s := segs(2)
	e.ok2(e.s.SetContent(ctx, f.Ino, 100, Content{Segments: s}, 1))
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("1"), 0))
	e.ok2(e.s.Link(ctx, f.Ino, root, "g"))

	// Reap of a named inode, of a directory or of nothing does nothing.
	e.ok(e.s.Reap(ctx, f.Ino))
	e.ok(e.s.Reap(ctx, root))
	e.ok(e.s.Reap(ctx, 999999))
	e.attr(f.Ino)
	e.attr(root)

	e.ok2(e.s.Unlink(ctx, root, "f"))
	e.ok(e.s.Reap(ctx, f.Ino))
	if a := e.attr(f.Ino); a.Nlink != 1 {
		t.Fatalf("reaped a linked inode: %+v", a)
	}
	if a := e.ok2(e.s.Unlink(ctx, root, "g")); a.Nlink != 0 {
		t.Fatalf("last unlink %+v", a)
	}
	// An orphan still reads, writes and keeps its attributes while open.
	if v := e.ok3(e.s.GetXattr(ctx, f.Ino, "user.a")); string(v) != "1" {
		t.Fatalf("xattr of orphan %q", v)
	}
	s = append(s, Segment{Index: 5, Object: blob.NewID()})
	e.ok2(e.s.SetContent(ctx, f.Ino, 200, Content{Segments: s}, 2))
	if i, b := e.usage(); i != 2 || b != 200 {
		t.Fatalf("usage with orphan %d %d", i, b)
	}
	e.check()

	e.ok(e.s.Reap(ctx, f.Ino))
	_, err := e.s.GetAttr(ctx, f.Ino)
	e.is(err, ErrNotFound)
	_, err = e.s.GetXattr(ctx, f.Ino, "user.a")
	e.is(err, ErrNotFound)
	g := e.garbage()
	for _, seg := range s {
		if !g[seg.Object] {
			t.Fatalf("segment %d not on garbage list", seg.Index)
		}
	}
	if i, b := e.usage(); i != 1 || b != 0 {
		t.Fatalf("usage after reap %d %d", i, b)
	}
	e.ok(e.s.Reap(ctx, f.Ino)) // again: nothing
	e.check()
}

func (e *env) ok3(v []byte, err error) []byte {
	e.t.Helper()
	e.ok(err)
	return v
}

func testReapAll(t *testing.T, e *env) {
	root := e.root.Ino
	const n = 600 // more than one batch
	var all []Segment
	for i := range n {
		name := string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		f := e.file(root, name)
		sg := segs(1)
		all = append(all, sg...)
		e.ok2(e.s.SetContent(ctx, f.Ino, 10, Content{Segments: sg}, 1))
		if i%2 == 0 {
			e.ok2(e.s.Unlink(ctx, root, name))
		}
	}
	e.file(root, "kept")
	got, err := e.s.ReapAll(ctx)
	e.ok(err)
	if got != n/2 {
		t.Fatalf("reaped %d, want %d", got, n/2)
	}
	if i, b := e.usage(); i != 1+n/2+1 || b != 10*n/2 {
		t.Fatalf("usage %d %d", i, b)
	}
	if g := e.garbage(); len(g) != n/2 {
		t.Fatalf("%d objects on garbage list", len(g))
	}
	if got, err := e.s.ReapAll(ctx); err != nil || got != 0 {
		t.Fatalf("second ReapAll: %d %v", got, err)
	}
	e.check()
}

func testGarbageList(t *testing.T, e *env) {
	f := e.file(e.root.Ino, "f")
	s := segs(10)
	e.ok2(e.s.SetContent(ctx, f.Ino, 1, Content{Segments: s}, 1))
	e.ok2(e.s.SetContent(ctx, f.Ino, 0, Content{}, 1))
	var first []blob.ID
	e.ok(e.s.Garbage(ctx, 4, func(id blob.ID) error {
		first = append(first, id)
		return nil
	}))
	if len(first) != 4 {
		t.Fatalf("Garbage(4) gave %d", len(first))
	}
	e.ok(e.s.Garbage(ctx, 0, func(blob.ID) error { t.Fatal("called with max 0"); return nil }))
	boom := errors.New("boom")
	calls := 0
	err := e.s.Garbage(ctx, 10, func(blob.ID) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("error of fn: %v after %d calls", err, calls)
	}
	e.ok(e.s.Collected(ctx, first))
	e.ok(e.s.Collected(ctx, first)) // again: ignored
	g := e.garbage()
	if len(g) != 6 {
		t.Fatalf("%d left", len(g))
	}
	for _, id := range first {
		if g[id] {
			t.Fatal("collected object still listed")
		}
	}
	// Many at once (more than one batch).
	many := make([]blob.ID, 0, 3000)
	for id := range g {
		many = append(many, id)
	}
	for range 3000 - len(many) {
		many = append(many, blob.NewID())
	}
	e.ok(e.s.Collected(ctx, many))
	if g := e.garbage(); len(g) != 0 {
		t.Fatalf("%d left", len(g))
	}
}

func testReferenced(t *testing.T, e *env) {
	want := map[blob.ID]bool{}
	for i := range 300 { // more than one batch of inodes
		f := e.file(e.root.Ino, strings.Repeat("f", i%200+1)+string(rune('a'+i/200)))
		s := segs(i % 3)
		for _, seg := range s {
			want[seg.Object] = true
		}
		e.ok2(e.s.SetContent(ctx, f.Ino, 1, Content{Segments: s}, 1))
		if i%7 == 0 {
			e.ok2(e.s.Unlink(ctx, e.root.Ino, strings.Repeat("f", i%200+1)+string(rune('a'+i/200)))) // orphans count
		}
	}
	got := map[blob.ID]bool{}
	e.ok(e.s.Referenced(ctx, func(id blob.ID) error {
		if got[id] {
			t.Fatal("object reported twice")
		}
		got[id] = true
		return nil
	}))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("referenced %d objects, want %d", len(got), len(want))
	}
	boom := errors.New("boom")
	if err := e.s.Referenced(ctx, func(blob.ID) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("error of fn: %v", err)
	}
}

func testUsage(t *testing.T, e *env) {
	root := e.root.Ino
	check := func(inodes, bytes uint64) {
		t.Helper()
		i, b := e.usage()
		if i != inodes || b != bytes {
			t.Fatalf("usage %d inodes %d bytes, want %d %d", i, b, inodes, bytes)
		}
		e.check()
	}
	check(1, 0)
	d := e.dir(root, "d")
	f := e.file(d.Ino, "f")
	e.ok2(e.s.Create(ctx, d.Ino, "s", KindSymlink, 0o777, "target", Content{}))
	check(4, 0)
	e.ok2(e.s.SetContent(ctx, f.Ino, 1000, Content{Segments: segs(1)}, 1))
	check(4, 1000)
	e.ok2(e.s.SetContent(ctx, f.Ino, 10, Content{Segments: segs(1)}, 1))
	check(4, 10)
	e.ok2(e.s.Unlink(ctx, d.Ino, "f"))
	check(4, 10)
	e.ok(e.s.Reap(ctx, f.Ino))
	check(3, 0)
	e.ok2(e.s.Unlink(ctx, d.Ino, "s"))
	e.ok(e.s.Reap(ctx, 0)) // nothing
	n, err := e.s.ReapAll(ctx)
	e.ok(err)
	if n != 1 {
		t.Fatalf("reaped %d", n)
	}
	e.ok(e.s.Rmdir(ctx, root, "d"))
	check(1, 0)
}
