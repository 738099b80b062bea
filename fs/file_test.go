package fs

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"dsh/blob"
	"dsh/content"
	"dsh/kv"
	"dsh/kv/kvtest"
	"dsh/meta"
	"dsh/vault"
)

// fileBackend is a Backend over db and a blob folder of the test, with share s1 and its key.
func fileBackend(t *testing.T, db kv.Store) (*Backend, meta.Attr, *vault.Key) {
	t.Helper()
	t.Cleanup(func() { db.Close() })
	local, err := blob.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	be := &Backend{Meta: meta.New(db, meta.Options{}), Content: content.New(local, content.Options{}), Blobs: local}
	root, err := be.Meta.ShareRoot(bg, "s1", 0o770)
	if err != nil {
		t.Fatal(err)
	}
	shareKey, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return be, root, &shareKey
}

// createFile creates file name in the share root with a fresh content key.
func createFile(t *testing.T, be *Backend, root meta.Attr, shareKey *vault.Key, name string) meta.Attr {
	t.Helper()
	id, wrapped, err := be.Content.NewFile("s1", shareKey)
	if err != nil {
		t.Fatal(err)
	}
	a, err := be.Meta.Create(bg, root.Ino, name, meta.KindFile, 0o640, "", meta.Content{FileID: id, Key: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// openFileOf opens a's data as the file table would, with unsynced as its flag (or nil).
func openFileOf(be *Backend, shareKey *vault.Key, a meta.Attr, unsynced *atomic.Bool) (*openFile, error) {
	of := &openFile{ino: a.Ino, share: "s1", be: be}
	if unsynced == nil {
		unsynced = &of.unsynced
	}
	var err error
	of.f, err = be.Content.Open("s1", shareKey, a.Content.FileID, a.Content.Key, 0, nil, commitTo(be, a.Ino, a.Content.FileID, a.Content.Key, unsynced))
	return of, err
}

// TestFlushMakesLazyCreateDurable checks the bargain of a lazy create (meta.CreateOpen):
// the handle's flush makes the file durable before close returns, with exactly one sync or
// durable commit, whether or not anything was written.
func TestFlushMakesLazyCreateDurable(t *testing.T) {
	db := &kvtest.Counting{Store: kv.NewMem()}
	be, root, shareKey := fileBackend(t, db)
	open := func(name string) *openFile {
		t.Helper()
		id, wrapped, err := be.Content.NewFile("s1", shareKey)
		if err != nil {
			t.Fatal(err)
		}
		a, err := be.Meta.CreateOpen(bg, root.Ino, name, 0o640, meta.Content{FileID: id, Key: wrapped})
		if err != nil {
			t.Fatal(err)
		}
		of, err := openFileOf(be, shareKey, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { of.f.Close() })
		of.unsynced.Store(true) // as node.Create does
		return of
	}
	counts := func() (int32, int32) { return db.Durable.Load(), db.Syncs.Load() }

	// Nothing written: the flush syncs, once; a second flush costs nothing.
	empty := open("empty")
	d0, s0 := counts()
	if err := empty.flush(bg); err != nil {
		t.Fatal(err)
	}
	if d, s := counts(); d != d0 || s != s0+1 {
		t.Fatalf("flush of an empty new file: %d durable commits, %d syncs; want 0 and 1", d-d0, s-s0)
	}
	if err := empty.flush(bg); err != nil {
		t.Fatal(err)
	}
	if d, s := counts(); d != d0 || s != s0+1 {
		t.Fatal("a second flush of a durable file synced again")
	}

	// Data written: its durable commit covers the create; no extra sync.
	full := open("full")
	if _, err := full.f.WriteAt(bg, []byte("four kibibytes, near enough"), 0); err != nil {
		t.Fatal(err)
	}
	d0, s0 = counts()
	if err := full.flush(bg); err != nil {
		t.Fatal(err)
	}
	if d, s := counts(); d != d0+1 || s != s0 {
		t.Fatalf("flush of a written new file: %d durable commits, %d syncs; want 1 and 0", d-d0, s-s0)
	}
	if full.unsynced.Load() {
		t.Fatal("the content commit did not clear unsynced")
	}
}

// TestOrphanReapedAtLastClose checks that a file losing its last name while open is kept
// for its handles and deleted, objects and all, by the last close, and only then.
func TestOrphanReapedAtLastClose(t *testing.T) {
	be, root, shareKey := fileBackend(t, kv.NewMem())
	g := New(Options{Log: slog.New(slog.DiscardHandler)})
	garbage := func() int {
		n := 0
		if err := be.Meta.Garbage(bg, 100, func(blob.ID) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, opens := range []int{0, 1, 2} {
		name := "f" + string(rune('0'+opens))
		a := createFile(t, be, root, shareKey, name)
		var of *openFile
		var err error
		for range opens {
			of, err = g.files.acquire(a.Ino, func() (*openFile, error) { return openFileOf(be, shareKey, a, new(atomic.Bool)) })
			if err != nil {
				t.Fatal(err)
			}
		}
		if opens > 0 {
			if _, err := of.f.WriteAt(bg, []byte("kept for its readers"), 0); err != nil {
				t.Fatal(err)
			}
			if err := of.flush(bg); err != nil {
				t.Fatal(err)
			}
		}
		g0 := garbage()
		u, err := be.Meta.Unlink(bg, root.Ino, name)
		if err != nil {
			t.Fatal(err)
		}
		g.reapIfUnused(bg, be, u.Ino, u.Nlink)
		_, gerr := be.Meta.GetAttr(bg, a.Ino)
		if opens == 0 {
			if !errors.Is(gerr, meta.ErrNotFound) {
				t.Fatalf("unlink of a closed file: inode still there (%v)", gerr)
			}
			continue
		}
		if gerr != nil {
			t.Fatalf("unlink of an open file deleted it under its handle: %v", gerr)
		}
		for i := range opens {
			if _, err := g.closeData(bg, of); err != nil {
				t.Fatal(err)
			}
			_, gerr := be.Meta.GetAttr(bg, a.Ino)
			if last := i == opens-1; last != errors.Is(gerr, meta.ErrNotFound) {
				t.Fatalf("%d of %d handles closed: inode lookup %v", i+1, opens, gerr)
			}
		}
		if garbage() != g0+1 {
			t.Errorf("the orphan's object is not on the garbage list")
		}
	}

	// A failed unlink may or may not have been applied: the open file is marked anyway,
	// and its last close must keep it while it still has its name.
	a := createFile(t, be, root, shareKey, "named")
	of, err := g.files.acquire(a.Ino, func() (*openFile, error) { return openFileOf(be, shareKey, a, new(atomic.Bool)) })
	if err != nil {
		t.Fatal(err)
	}
	if !g.files.markOrphan(a.Ino) {
		t.Fatal("an open file was not marked")
	}
	if _, err := g.closeData(bg, of); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Meta.GetAttr(bg, a.Ino); err != nil {
		t.Fatalf("a file still named was reaped at its last close: %v", err)
	}
}
