package fs

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"dsh/acl"
	"dsh/blob"
	"dsh/content"
	"dsh/meta"
)

// writeShareFile writes data as the whole content of file ino of share, as a flush would.
func writeShareFile(t *testing.T, h *harness, share string, a meta.Attr, data []byte) {
	t.Helper()
	key, err := h.be.ACL.ShareKey(bg, share)
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	cur, err := h.be.Meta.GetAttr(bg, a.Ino)
	if err != nil {
		t.Fatal(err)
	}
	f, err := h.be.Content.Open(share, &key, cur.Content.FileID, cur.Content.Key, cur.Size, contentSegments(&cur),
		commitTo(h.be, a.Ino, cur.Content.FileID, cur.Content.Key, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(bg, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bg, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(bg); err != nil {
		t.Fatal(err)
	}
}

// shareHarness is a harness with project p1 and its share s1, whose root it returns.
func shareHarness(t *testing.T) (*harness, meta.Attr) {
	t.Helper()
	h := newHarness(t)
	op := acl.Actor{UID: 0, Operator: true}
	if _, err := h.be.ACL.CreateProject(bg, op, "p1", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.be.ACL.CreateShare(bg, op, "s1", "p1"); err != nil {
		t.Fatal(err)
	}
	root, err := h.be.Meta.ShareRoot(bg, "s1", shareRootMode)
	if err != nil {
		t.Fatal(err)
	}
	return h, root
}

func readAll(t *testing.T, h *harness, share string, ff FrozenFile) ([]byte, error) {
	t.Helper()
	rc, err := OpenFrozen(bg, h.be, share, ff)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Frozen content outlives the file's later writes and its deletion, through the collector
// of both kinds (the garbage list and the sweep of unreferenced objects), until unpinned.
func TestFrozenSurvivesCollection(t *testing.T) {
	h, root := shareHarness(t)
	dir, err := h.be.Meta.Create(bg, root.Ino, "out", meta.KindDir, 0o755, "", meta.Content{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := h.be.ACL.ShareKey(bg, "s1")
	id, wrapped, err := h.be.Content.NewFile("s1", &key)
	key.Wipe()
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.be.Meta.Create(bg, dir.Ino, "t.csv", meta.KindFile, 0o644, "", meta.Content{FileID: id, Key: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	orig := randomBytes(content.SegmentSize + 12345) // two objects
	writeShareFile(t, h, "s1", a, orig)

	if _, err := Freeze(bg, h.be, "s1", "egress/x", []string{"out/missing"}); !errors.Is(err, ErrNoFile) {
		t.Fatalf("freeze of a missing file: %v", err)
	}
	if _, err := Freeze(bg, h.be, "s1", "egress/x", []string{"out"}); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("freeze of a folder: %v", err)
	}
	ff, err := Freeze(bg, h.be, "s1", "egress/x", []string{"out/t.csv"})
	if err != nil || len(ff) != 1 || ff[0].Size != int64(len(orig)) || len(ff[0].Objects()) != 2 {
		t.Fatalf("freeze: %+v %v", ff, err)
	}
	// The file moves on: rewritten, then deleted; the collector runs both ways.
	writeShareFile(t, h, "s1", a, []byte("new"))
	ua, err := h.be.Meta.Unlink(bg, dir.Ino, "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	h.g.reapIfUnused(bg, h.be, ua.Ino, ua.Nlink)
	if err := h.g.collectGarbage(bg, h.be); err != nil {
		t.Fatal(err)
	}
	if _, err := h.g.sweepUnreferenced(bg, h.be, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, h, "s1", ff[0])
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("frozen content after collection: %d bytes, %v", len(got), err)
	}
	// Unpinned, the objects go; the frozen record no longer reads.
	if err := h.be.Meta.Unpin(bg, "egress/x"); err != nil {
		t.Fatal(err)
	}
	if err := h.g.collectGarbage(bg, h.be); err != nil {
		t.Fatal(err)
	}
	for _, o := range ff[0].Content.Segments {
		if _, err := h.be.Blobs.Open(bg, o.Object); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("object %s after unpin and collection: %v", o.Object, err)
		}
	}
	if _, err := readAll(t, h, "s1", ff[0]); !errors.Is(err, content.ErrIntegrity) {
		t.Fatalf("read after unpin: %v", err)
	}
}

// A file whose small writes were stored as patches freezes with them: the frozen content
// reads the patched bytes after the file is rewritten, deleted and collected, and the
// patches' objects stay pinned until the pin goes.
func TestFrozenKeepsPatches(t *testing.T) {
	h, root := shareHarness(t)
	key, _ := h.be.ACL.ShareKey(bg, "s1")
	id, wrapped, err := h.be.Content.NewFile("s1", &key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.be.Meta.Create(bg, root.Ino, "db.bin", meta.KindFile, 0o644, "", meta.Content{FileID: id, Key: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	orig := randomBytes(content.SegmentSize + 4096)
	writeShareFile(t, h, "s1", a, orig)

	// A small write into the stored segment: a patch.
	cur, err := h.be.Meta.GetAttr(bg, a.Ino)
	if err != nil {
		t.Fatal(err)
	}
	segs, err := contentSegmentsOf(bg, h.be, &cur)
	if err != nil {
		t.Fatal(err)
	}
	f, err := h.be.Content.Open("s1", &key, cur.Content.FileID, cur.Content.Key, cur.Size, segs,
		commitTo(h.be, a.Ino, cur.Content.FileID, cur.Content.Key, nil))
	key.Wipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bg, []byte("PATCHED"), 100000); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(bg); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := append([]byte(nil), orig...)
	copy(want[100000:], "PATCHED")
	if cur, err = h.be.Meta.GetAttr(bg, a.Ino); err != nil || !cur.Content.Segments[0].Patched {
		t.Fatalf("the small write made no patch: %+v %v", cur.Content.Segments, err)
	}

	ff, err := Freeze(bg, h.be, "s1", "egress/p", []string{"db.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ff[0].Objects()); n < 3 {
		t.Fatalf("frozen objects: %v, want the two segments and the patch", ff[0].Objects())
	}
	writeShareFile(t, h, "s1", a, []byte("new"))
	ua, err := h.be.Meta.Unlink(bg, root.Ino, "db.bin")
	if err != nil {
		t.Fatal(err)
	}
	h.g.reapIfUnused(bg, h.be, ua.Ino, ua.Nlink)
	if err := h.g.collectGarbage(bg, h.be); err != nil {
		t.Fatal(err)
	}
	if _, err := h.g.sweepUnreferenced(bg, h.be, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, h, "s1", ff[0])
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("frozen patched content after collection: %d bytes, equal %v, %v", len(got), bytes.Equal(got, want), err)
	}
	// Without its patches the record would read the bytes from before the write.
	bare := ff[0]
	bare.Content.Patches = nil
	if got, err := readAll(t, h, "s1", bare); err == nil && bytes.Equal(got, want) {
		t.Fatal("the test proves nothing: the segment alone reads the patched bytes")
	}
	if err := h.be.Meta.Unpin(bg, "egress/p"); err != nil {
		t.Fatal(err)
	}
	if err := h.g.collectGarbage(bg, h.be); err != nil {
		t.Fatal(err)
	}
	for _, s := range ff[0].Content.Patches {
		for _, p := range s {
			if _, err := h.be.Blobs.Open(bg, p.Object); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("patch object %s after unpin and collection: %v", p.Object, err)
			}
		}
	}
}
