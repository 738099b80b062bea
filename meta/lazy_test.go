package meta

import (
	"context"
	"sync/atomic"
	"testing"

	"dsh/kv"
)

// countingKV passes everything to a real store and counts how changes are committed.
type countingKV struct {
	kv.Store
	durable, lazy, syncs atomic.Int32
}

func (c *countingKV) Update(ctx context.Context, fn func(kv.Txn) error) error {
	c.durable.Add(1)
	return c.Store.Update(ctx, fn)
}

func (c *countingKV) UpdateLazy(ctx context.Context, fn func(kv.Txn) error) error {
	c.lazy.Add(1)
	return c.Store.UpdateLazy(ctx, fn)
}

func (c *countingKV) Sync(ctx context.Context) error {
	c.syncs.Add(1)
	return c.Store.Sync(ctx)
}

// TestCreateOpenIsLazy checks that CreateOpen, and only it, commits without waiting for the
// disk, that the file it makes is whole at once (entry, attributes, content key), and that
// Sync reaches the kv store.
func TestCreateOpenIsLazy(t *testing.T) {
	c := &countingKV{Store: openBadger(t)}
	e := newEnv(t, c)
	e.file(e.root.Ino, "warm") // reserves inode numbers (a durable change of its own)
	d0, l0 := c.durable.Load(), c.lazy.Load()
	want := newContent(t)
	a := e.ok2(e.s.CreateOpen(ctx, e.root.Ino, "new", 0o640, want))
	if d, l := c.durable.Load()-d0, c.lazy.Load()-l0; d != 0 || l != 1 {
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
	if c.syncs.Load() != 1 {
		t.Fatalf("%d kv syncs after Sync, want 1", c.syncs.Load())
	}
	d1 := c.durable.Load()
	e.dir(e.root.Ino, "d")
	if c.durable.Load() != d1+1 {
		t.Fatal("Create of a folder did not commit durably")
	}
	e.check()
}
