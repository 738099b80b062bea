package fs

import (
	"testing"

	"dsh/blob"
	"dsh/content"
	"dsh/kv"
	"dsh/kv/kvtest"
	"dsh/meta"
	"dsh/vault"
)

// TestFlushMakesLazyCreateDurable checks the bargain of a lazy create (meta.CreateOpen):
// the handle's flush makes the file durable before close returns, with exactly one sync or
// durable commit, whether or not anything was written.
func TestFlushMakesLazyCreateDurable(t *testing.T) {
	db := &kvtest.Counting{Store: kv.NewMem()}
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
	open := func(name string) *openFile {
		t.Helper()
		id, wrapped, err := be.Content.NewFile("s1", &shareKey)
		if err != nil {
			t.Fatal(err)
		}
		a, err := be.Meta.CreateOpen(bg, root.Ino, name, 0o640, meta.Content{FileID: id, Key: wrapped})
		if err != nil {
			t.Fatal(err)
		}
		of := &openFile{ino: a.Ino, share: "s1", be: be}
		of.f, err = be.Content.Open("s1", &shareKey, id, wrapped, 0, nil, commitTo(be, a.Ino, id, wrapped, &of.unsynced))
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
