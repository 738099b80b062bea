package meta

import (
	"errors"
	"testing"

	"dsh/blob"
)

// A pin keeps the content a file had when it was pinned, while the file moves on: its
// objects stay off the collector's list until the pin goes.
func TestPin(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open(t))
			f := e.file(e.root.Ino, "result.csv")
			old := segs(2)
			e.ok2(e.s.SetContent(ctx, f.Ino, 5, Content{FileID: f.Content.FileID, Key: f.Content.Key, Segments: old}, 1))
			g := e.file(e.root.Ino, "other.csv")
			gs := segs(1)
			e.ok2(e.s.SetContent(ctx, g.Ino, 3, Content{FileID: g.Content.FileID, Key: g.Content.Key, Segments: gs}, 1))

			as, err := e.s.Pin(ctx, "req1", f.Ino, g.Ino)
			e.ok(err)
			if len(as) != 2 || as[0].Size != 5 || len(as[0].Content.Segments) != 2 || as[0].Content.Segments[0].Object != old[0].Object {
				t.Fatalf("pinned %+v", as)
			}
			if _, err := e.s.Pin(ctx, "req1", f.Ino); !errors.Is(err, ErrExists) {
				t.Fatalf("pin name reused: %v", err)
			}
			d := e.dir(e.root.Ino, "d")
			if _, err := e.s.Pin(ctx, "req2", d.Ino); !errors.Is(err, ErrInvalid) {
				t.Fatalf("pin of a directory: %v", err)
			}
			if _, err := e.s.Pin(ctx, "req2", 999999); !errors.Is(err, ErrNotFound) {
				t.Fatalf("pin of a missing inode: %v", err)
			}
			if _, err := e.s.Pin(ctx, ""); !errors.Is(err, ErrInvalid) {
				t.Fatalf("empty pin name: %v", err)
			}

			// The file is rewritten, the other deleted: their old objects are garbage, but pinned.
			e.ok2(e.s.SetContent(ctx, f.Ino, 9, Content{FileID: f.Content.FileID, Key: f.Content.Key, Segments: segs(1)}, 2))
			a := e.ok2(e.s.Unlink(ctx, e.root.Ino, "other.csv"))
			e.ok(e.s.Reap(ctx, a.Ino))
			garbage := e.garbage()
			for _, s := range append(old, gs...) {
				if garbage[s.Object] {
					t.Fatalf("pinned object %s offered to the collector", s.Object)
				}
			}
			refs := map[blob.ID]bool{}
			e.ok(e.s.Referenced(ctx, func(id blob.ID) error { refs[id] = true; return nil }))
			for _, s := range append(old, gs...) {
				if !refs[s.Object] {
					t.Fatalf("pinned object %s not referenced", s.Object)
				}
			}
			ids, err := e.s.Pinned(ctx, "req1")
			if err != nil || len(ids) != 3 {
				t.Fatalf("pinned objects %v, %v", ids, err)
			}

			// Unpinned, they go to the collector.
			e.ok(e.s.Unpin(ctx, "req1"))
			e.ok(e.s.Unpin(ctx, "req1"))
			garbage = e.garbage()
			for _, s := range append(old, gs...) {
				if !garbage[s.Object] {
					t.Fatalf("object %s not collected after unpin", s.Object)
				}
			}
			if _, err := e.s.Pinned(ctx, "req1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("pin after unpin: %v", err)
			}
			e.check()
		})
	}
}

func FuzzDecodePin(f *testing.F) {
	f.Add(encodePin([]blob.ID{{1}, {2}}))
	f.Add(encodePin(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := decodePin(b); err != nil {
			return
		}
	})
}
