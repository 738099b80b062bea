package fs

import (
	"bytes"
	"testing"

	"dsh/content"
	"dsh/kv"
)

// TestLayoutCacheFollowsCommits opens a file with patches again and again, as a database
// does: an unchanged file reuses its checked layout, and every commit in between (a new
// patch, a truncate) is seen by the next open, never an older layout.
func TestLayoutCacheFollowsCommits(t *testing.T) {
	be, root, shareKey := fileBackend(t, kv.NewMem())
	a := createFile(t, be, root, shareKey, "db")
	id, wrapped := a.Content.FileID, a.Content.Key
	model := bytes.Repeat([]byte("0123456789abcdef"), (content.SegmentSize+500_000)/16)
	// open opens the file's current state as openData does, through the cache.
	open := func() (*openFile, *content.Layout) {
		t.Helper()
		cur, err := be.Meta.GetAttr(bg, a.Ino)
		if err != nil {
			t.Fatal(err)
		}
		l, err := layoutOf(bg, be, &cur)
		if err != nil {
			t.Fatal(err)
		}
		of := &openFile{ino: a.Ino, share: "s1", be: be}
		of.f, err = be.Content.Open("s1", shareKey, id, wrapped, cur.Size, nil, commitTo(be, a.Ino, id, wrapped, nil), content.WithLayout(l))
		if err != nil {
			t.Fatal(err)
		}
		return of, l
	}
	check := func(of *openFile, what string) {
		t.Helper()
		got := make([]byte, len(model)+10)
		n, _ := of.f.ReadAt(bg, got, 0)
		if !bytes.Equal(got[:n], model) {
			t.Fatalf("%s: the file reads other bytes than were written (%d of %d bytes)", what, n, len(model))
		}
	}
	of, _ := open()
	if _, err := of.f.WriteAt(bg, model, 0); err != nil {
		t.Fatal(err)
	}
	if err := of.flush(bg); err != nil {
		t.Fatal(err)
	}
	of.f.Close()

	var last *content.Layout
	for i := range 6 {
		of, l := open()
		check(of, "reopened")
		if i > 0 && l == last {
			t.Fatalf("round %d: a commit later, the open got the layout of before it", i)
		}
		// Opened again unchanged: the same layout, once the file has patches.
		of2, l2 := open()
		check(of2, "reopened unchanged")
		of2.f.Close()
		if i > 0 && l2 != l {
			t.Fatalf("round %d: an unchanged file with patches was checked again", i)
		}
		// A small write in place (a patch), or a truncate, then the next round reopens.
		off := int64(i) * 700_001 % int64(len(model)-10)
		p := []byte{byte('A' + i), byte('a' + i)}
		if i == 4 {
			model = model[:len(model)-70_000]
			if err := of.f.Truncate(bg, int64(len(model))); err != nil {
				t.Fatal(err)
			}
		} else {
			if _, err := of.f.WriteAt(bg, p, off); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], p)
		}
		if err := of.flush(bg); err != nil {
			t.Fatal(err)
		}
		of.f.Close()
		last = l2
	}
	if be.layouts.items == 0 || be.layouts.items > layoutsMax {
		t.Fatalf("the cache counts %d patches and segments", be.layouts.items)
	}
}
