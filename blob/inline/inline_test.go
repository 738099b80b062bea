package inline_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"dsh/blob"
	"dsh/blob/blobtest"
	"dsh/blob/inline"
	"dsh/kv"
	"dsh/vault"
)

var ctx = context.Background()

func openBadger(t *testing.T) *kv.Badger {
	t.Helper()
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := kv.OpenBadger(t.TempDir(), &k, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openLocal(t *testing.T, dir string) *blob.Local {
	t.Helper()
	l, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestConformance runs the blob.Store suite with a small limit, so that its objects land
// in both stores, over real Badger and a real folder.
func TestConformance(t *testing.T) {
	for _, max := range []int{1, 4 << 10, inline.DefaultMax} {
		t.Run("", func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store {
				return inline.New(openBadger(t), openLocal(t, t.TempDir()), max)
			})
		})
	}
}

func put(t *testing.T, s blob.Store, id blob.ID, data []byte) {
	t.Helper()
	p, err := s.Create(ctx, id)
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

// TestSplit checks which store holds what: up to the limit in kv (no file), one byte more in
// the folder, and that both read back and list.
func TestSplit(t *testing.T) {
	const max = 8 << 10
	db, dir := openBadger(t), t.TempDir()
	s := inline.New(db, openLocal(t, dir), max)
	small, large := blob.NewID(), blob.NewID()
	smallData := bytes.Repeat([]byte{1}, max)
	largeData := bytes.Repeat([]byte{2}, max+1)
	put(t, s, small, smallData)
	if n := objectFiles(t, dir); n != 0 {
		t.Fatalf("an object of %d bytes (limit %d) made %d files", max, max, n)
	}
	put(t, s, large, largeData)
	if n := objectFiles(t, dir); n != 1 {
		t.Fatalf("an object of %d bytes (limit %d) made %d files, want 1", max+1, max, n)
	}
	for id, want := range map[blob.ID][]byte{small: smallData, large: largeData} {
		o, err := s.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		o.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("object %s: %d bytes, %v", id, len(got), err)
		}
	}
	seen := map[blob.ID]int64{}
	if err := s.List(ctx, func(in blob.Info) error { seen[in.ID] = in.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[small] != max || seen[large] != max+1 {
		t.Fatalf("List saw %v", seen)
	}
	// A deleted inline object is gone from kv, and the folder is not asked.
	if err := s.Delete(ctx, small); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, small); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after Delete: %v", err)
	}
	err := db.View(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte(inline.Prefix), nil, func(k, _ []byte) (bool, error) {
			return false, errors.New("an inline record survived its Delete")
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReopen checks that an inline object committed and then covered by a durable Update
// reads back after the store is closed and opened again.
func TestReopen(t *testing.T) {
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kvDir, blobDir := t.TempDir(), t.TempDir()
	db, err := kv.OpenBadger(kvDir, &k, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := inline.New(db, openLocal(t, blobDir), 0)
	id := blob.NewID()
	data := []byte("sealed bytes of a small file")
	put(t, s, id, data)
	// The metadata commit that names it.
	if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("inode/1"), id[:]) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = kv.OpenBadger(kvDir, &k, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = inline.New(db, openLocal(t, blobDir), 0)
	o, err := s.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, o.Size())
	if _, err := o.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after reopen: %q, %v", got, err)
	}
}

// TestAbortLarge checks that an object aborted after it moved to the folder leaves nothing.
func TestAbortLarge(t *testing.T) {
	dir := t.TempDir()
	s := inline.New(openBadger(t), openLocal(t, dir), 100)
	p, err := s.Create(ctx, blob.NewID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(); err != nil {
		t.Fatal(err)
	}
	if n := objectFiles(t, dir); n != 0 {
		t.Fatalf("%d objects after Abort", n)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("tmp/ after Abort: %d entries, %v", len(entries), err)
	}
}
