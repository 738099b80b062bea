package meta

import (
	"testing"

	"dsh/kv/kvtest"
)

// TestCreateOpenIsLazy checks that CreateOpen, and only it, commits without waiting for the
// disk, that the file it makes is whole at once (entry, attributes, content key), and that
// Sync reaches the kv store.
func TestCreateOpenIsLazy(t *testing.T) {
	c := &kvtest.Counting{Store: openBadger(t)}
	e := newEnv(t, c)
	e.file(e.root.Ino, "warm") // reserves inode numbers (a durable change of its own)
	d0, l0 := c.Durable.Load(), c.Lazy.Load()
	want := newContent(t)
	a := e.ok2(e.s.CreateOpen(ctx, e.root.Ino, "new", 0o640, want))
	if d, l := c.Durable.Load()-d0, c.Lazy.Load()-l0; d != 0 || l != 1 {
		t.Fatalf("CreateOpen: %d durable and %d lazy commits, want 0 and 1", d, l)
	}
	got := e.lookup(e.root.Ino, "new")
	if got.Ino != a.Ino || got.Kind != KindFile || got.Mode != 0o640 || got.Content.FileID != want.FileID || got.Content.Key != want.Key {
		t.Fatalf("lookup after CreateOpen: %+v", got)
	}
	if _, err := e.s.CreateOpen(ctx, e.root.Ino, "new", 0o640, newContent(t)); err == nil {
		t.Fatal("CreateOpen over an existing name succeeded")
	}
	e.ok(e.s.Sync(ctx))
	if c.Syncs.Load() != 1 {
		t.Fatalf("%d kv syncs after Sync, want 1", c.Syncs.Load())
	}
	d1 := c.Durable.Load()
	e.dir(e.root.Ino, "d")
	if c.Durable.Load() != d1+1 {
		t.Fatal("Create of a folder did not commit durably")
	}
	e.check()
}
