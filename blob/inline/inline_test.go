package inline_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"dsh/blob"
	"dsh/blob/blobtest"
	"dsh/blob/inline"
	"dsh/kv"
	"dsh/vault"
)

var ctx = context.Background()

func badgerAt(t *testing.T, dir string, k *vault.Key) *kv.Badger {
	t.Helper()
	b, err := kv.OpenBadger(dir, k, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openCarrier(t *testing.T) *kv.Carrier {
	t.Helper()
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c := kv.NewCarrier(badgerAt(t, t.TempDir(), &k))
	t.Cleanup(func() { c.Close() })
	return c
}

func openLocal(t *testing.T, dir string) *blob.Local {
	t.Helper()
	l, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func open(t *testing.T, db *kv.Carrier, dir string, o inline.Options) *inline.Store {
	t.Helper()
	s, err := inline.New(ctx, db, openLocal(t, dir), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// smallFirst starts every object with CreateSmall, so that the conformance suite's objects
// land inline (or, past the limits, in the folder).
type smallFirst struct{ *inline.Store }

func (s smallFirst) Create(ctx context.Context, id blob.ID) (blob.Pending, error) {
	return s.CreateSmall(ctx, id)
}

// TestConformance runs the blob.Store suite over real Badger and a real folder: objects
// started with Create, and with CreateSmall under limits that send them to either store.
func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return open(t, openCarrier(t), t.TempDir(), inline.Options{}) })
	for _, o := range []inline.Options{{Max: 1}, {Max: 4 << 10}, {}, {Budget: 10 << 10}} {
		t.Run("", func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store {
				return smallFirst{open(t, openCarrier(t), t.TempDir(), o)}
			})
		})
	}
}

func put(t *testing.T, s blob.Store, id blob.ID, data []byte) {
	t.Helper()
	p, err := blob.CreateSmall(ctx, s, id)
	if err != nil {
		t.Fatal(err)
	}
	// Uneven writes cross the limit in the middle of one.
	for len(data) > 0 {
		n := min(len(data), 1000)
		if _, err := p.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func objectFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "objects"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func read(t *testing.T, s blob.Store, id blob.ID) []byte {
	t.Helper()
	o, err := s.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSplit checks which store holds what: a small object up to the limit in kv (no file),
// one byte more in the folder, an object started with Create in the folder, and that all
// read back, list, and delete.
func TestSplit(t *testing.T) {
	const max = 8 << 10
	db, dir := openCarrier(t), t.TempDir()
	s := open(t, db, dir, inline.Options{Max: max})
	small, large, plain := blob.NewID(), blob.NewID(), blob.NewID()
	data := map[blob.ID][]byte{small: bytes.Repeat([]byte{1}, max), large: bytes.Repeat([]byte{2}, max+1), plain: []byte("x")}
	put(t, s, small, data[small])
	if n := objectFiles(t, dir); n != 0 || s.Used() != max {
		t.Fatalf("an object of %d bytes (limit %d) made %d files, %d bytes inline", max, max, n, s.Used())
	}
	put(t, s, large, data[large])
	p, err := s.Create(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	p.Write(data[plain])
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := objectFiles(t, dir); n != 2 {
		t.Fatalf("%d files, want 2 (one past the limit, one not small)", n)
	}
	for id, want := range data {
		if got := read(t, s, id); !bytes.Equal(got, want) {
			t.Fatalf("object %s: %d bytes", id, len(got))
		}
	}
	// Listed once it is committed by a metadata commit.
	if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("fs/i/1"), small[:]) }); err != nil {
		t.Fatal(err)
	}
	seen := map[blob.ID]int64{}
	if err := s.List(ctx, func(in blob.Info) error { seen[in.ID] = in.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[small] != max || seen[large] != max+1 {
		t.Fatalf("List saw %v", seen)
	}
	if err := s.Delete(ctx, small); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, small); !errors.Is(err, blob.ErrNotFound) || s.Used() != 0 {
		t.Fatalf("Stat after Delete: %v, %d bytes inline", err, s.Used())
	}
}

// TestCarriedByTheNamingCommit: a small object costs no commit of its own; the metadata
// commit that names it makes both durable, and they read back after a reopen, with the
// bytes kept inline counted again.
func TestCarriedByTheNamingCommit(t *testing.T) {
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kvDir, blobDir := t.TempDir(), t.TempDir()
	counting := &kvCounting{Store: badgerAt(t, kvDir, &k)}
	db := kv.NewCarrier(counting)
	s := open(t, db, blobDir, inline.Options{})
	id := blob.NewID()
	data := bytes.Repeat([]byte("sealed bytes of a patch "), 170)
	put(t, s, id, data)
	if counting.commits != 0 {
		t.Fatalf("a small object made %d commits of its own", counting.commits)
	}
	if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("fs/p/1"), id[:]) }); err != nil {
		t.Fatal(err)
	}
	if counting.commits != 1 {
		t.Fatalf("the naming commit and the object took %d commits", counting.commits)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = kv.NewCarrier(badgerAt(t, kvDir, &k))
	defer db.Close()
	s = open(t, db, blobDir, inline.Options{})
	if got := read(t, s, id); !bytes.Equal(got, data) {
		t.Fatalf("after reopen: %d bytes", len(got))
	}
	if s.Used() != int64(len(data)) {
		t.Fatalf("reopened store counts %d bytes inline, want %d", s.Used(), len(data))
	}
}

// kvCounting counts the commits that reach the store.
type kvCounting struct {
	kv.Store
	commits int
}

func (c *kvCounting) Update(ctx context.Context, fn func(kv.Txn) error) error {
	c.commits++
	return c.Store.Update(ctx, fn)
}

func (c *kvCounting) UpdateLazy(ctx context.Context, fn func(kv.Txn) error) error {
	c.commits++
	return c.Store.UpdateLazy(ctx, fn)
}

// TestBudget: past the budget, small objects go to the folder; deleting inline ones makes
// room again.
func TestBudget(t *testing.T) {
	db, dir := openCarrier(t), t.TempDir()
	s := open(t, db, dir, inline.Options{Budget: 10 << 10})
	a, b, c := blob.NewID(), blob.NewID(), blob.NewID()
	put(t, s, a, make([]byte, 6<<10))
	put(t, s, b, make([]byte, 6<<10))
	if n := objectFiles(t, dir); n != 1 || s.Used() != 6<<10 {
		t.Fatalf("over the budget: %d files, %d bytes inline", n, s.Used())
	}
	if err := s.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	put(t, s, c, make([]byte, 6<<10))
	if n := objectFiles(t, dir); n != 1 || s.Used() != 6<<10 {
		t.Fatalf("after a delete: %d files, %d bytes inline", n, s.Used())
	}
	if _, err := s.Stat(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// TestManyAtOnce: more small objects than a carrier holds before a commit still commit,
// each readable, and the next metadata commit leaves none carried.
func TestManyAtOnce(t *testing.T) {
	db, dir := openCarrier(t), t.TempDir()
	s := open(t, db, dir, inline.Options{})
	var ids []blob.ID
	for i := range 3 * kv.CarryWritesMax {
		id := blob.NewID()
		put(t, s, id, bytes.Repeat([]byte{byte(i)}, 100))
		ids = append(ids, id)
	}
	if n := objectFiles(t, dir); n != 0 {
		t.Fatalf("%d files", n)
	}
	for i, id := range ids {
		if got := read(t, s, id); len(got) != 100 || got[0] != byte(i) {
			t.Fatalf("object %d reads %d bytes", i, len(got))
		}
	}
	if err := db.Update(ctx, func(tx kv.Txn) error { return nil }); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.List(ctx, func(blob.Info) error { n++; return nil }); err != nil || n != len(ids) {
		t.Fatalf("List saw %d of %d, %v", n, len(ids), err)
	}
}

// TestAbortLarge checks that an object aborted after it moved to the folder leaves nothing.
func TestAbortLarge(t *testing.T) {
	dir := t.TempDir()
	s := open(t, openCarrier(t), dir, inline.Options{Max: 100})
	p, err := s.CreateSmall(ctx, blob.NewID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(); err != nil {
		t.Fatal(err)
	}
	if n := objectFiles(t, dir); n != 0 || s.Used() != 0 {
		t.Fatalf("%d objects, %d bytes inline after Abort", n, s.Used())
	}
}

// TestSpill: past seven eighths of the budget, objects move to the folder under their IDs
// until three quarters of it are used; every object reads back the same, and one that was
// moved deletes from the folder.
func TestSpill(t *testing.T) {
	db, dir := openCarrier(t), t.TempDir()
	s := open(t, db, dir, inline.Options{Budget: 64 << 10})
	defer s.Close()
	var ids []blob.ID
	for i := range 15 {
		id := blob.NewID()
		put(t, s, id, bytes.Repeat([]byte{byte(i)}, 4<<10))
		ids = append(ids, id)
		// The metadata commit naming it: only committed records are spilled.
		if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("fs/p/x"), id[:]) }); err != nil {
			t.Fatal(err)
		}
	}
	// Objects moving while they are read: every Stat finds each one, in either store.
	stop, lost := make(chan struct{}), make(chan error, 1)
	go func() {
		defer close(lost)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, id := range ids {
				if _, err := s.Stat(ctx, id); err != nil {
					lost <- err
					return
				}
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for s.Used() > 48<<10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	if err := <-lost; err != nil {
		t.Fatalf("an object was not found while the spiller moved it: %v", err)
	}
	if s.Used() > 48<<10 || s.Spilled() == 0 {
		t.Fatalf("after 15 objects of 4 KiB under a 64 KiB budget: %d bytes inline, %d spilled", s.Used(), s.Spilled())
	}
	if n := objectFiles(t, dir); uint64(n) != s.Spilled() {
		t.Fatalf("%d files for %d objects spilled", n, s.Spilled())
	}
	for i, id := range ids {
		if got := read(t, s, id); len(got) != 4<<10 || got[0] != byte(i) || got[len(got)-1] != byte(i) {
			t.Fatalf("object %d reads %d bytes after the spill", i, len(got))
		}
	}
	n := 0
	if err := s.List(ctx, func(blob.Info) error { n++; return nil }); err != nil || n != len(ids) {
		t.Fatalf("List saw %d of %d objects, %v", n, len(ids), err)
	}
	for _, id := range ids {
		if err := s.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := objectFiles(t, dir); n != 0 || s.Used() != 0 {
		t.Fatalf("after deleting everything: %d files, %d bytes inline", n, s.Used())
	}
}

// TestInBothStores: a crash between a spill's copy and the removal of its record leaves an
// object in both stores; it reads, and one Delete removes both.
func TestInBothStores(t *testing.T) {
	db, dir := openCarrier(t), t.TempDir()
	local := openLocal(t, dir)
	s, err := inline.New(ctx, db, local, inline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := blob.NewID()
	data := []byte("sealed bytes")
	put(t, s, id, data)
	p, err := local.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	p.Write(data)
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, id); !bytes.Equal(got, data) {
		t.Fatalf("reads %q", got)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after Delete: %v", err)
	}
	if n := objectFiles(t, dir); n != 0 {
		t.Fatalf("%d files after Delete", n)
	}
}

// TestCreateOverInlineObject: Create, which writes to the folder, refuses an ID kept
// inline at Commit, so no ID names two objects (found in review).
func TestCreateOverInlineObject(t *testing.T) {
	dir := t.TempDir()
	s := open(t, openCarrier(t), dir, inline.Options{})
	defer s.Close()
	id := blob.NewID()
	put(t, s, id, []byte("inline"))
	p, err := s.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	p.Write([]byte("large"))
	if err := p.Commit(ctx); !errors.Is(err, blob.ErrExists) {
		t.Fatalf("Commit over an inline object: %v, want ErrExists", err)
	}
	if got := read(t, s, id); string(got) != "inline" {
		t.Fatalf("the inline object now reads %q", got)
	}
	if n := objectFiles(t, dir); n != 0 {
		t.Fatalf("%d files", n)
	}
}
