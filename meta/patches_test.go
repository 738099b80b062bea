package meta

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"dsh/blob"
	"dsh/kv"
)

func patch(from, to, first, chunks uint32) Patch {
	return Patch{From: from, To: to, First: first, Blocks: chunks, Object: blob.NewID()}
}

// Patches are kept per segment, written and deleted with the content that names them, and
// every object they stop naming goes on the garbage list, once.
func TestPatches(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open(t))
			f := e.file(e.root.Ino, "f")
			s := segs(3)
			e.ok2(e.s.SetContent(ctx, f.Ino, 3<<20, Content{Segments: s}, 1))

			// Two patches on segment 1, one on segment 2.
			p1, p2, p3 := patch(4, 5, 4, 1), patch(10, 12, 10, 2), patch(0, 1, 0, 1)
			s[1].Patched, s[2].Patched = true, true
			c := Content{Segments: s, Patches: map[uint64][]Patch{1: {p1, p2}, 2: {p3}}}
			e.ok2(e.s.SetContent(ctx, f.Ino, 3<<20, c, 2))
			got, err := patchLists(e.s.PatchesOf(ctx, f.Ino))
			e.ok(err)
			if !reflect.DeepEqual(got, map[uint64][]Patch{1: {p1, p2}, 2: {p3}}) {
				t.Fatalf("PatchesOf: %+v", got)
			}
			if a := e.attr(f.Ino); !a.Content.Segments[1].Patched || a.Content.Segments[0].Patched || a.Content.Patches != nil {
				t.Fatalf("GetAttr: %+v", a.Content)
			}

			// A patch over part of p2 splits it (its object stays, named by the rest); one
			// over all of p1 replaces it (its object goes).
			p4 := patch(4, 5, 4, 1)
			p5 := patch(11, 12, 11, 1)
			left := Patch{From: 10, To: 11, First: 10, Blocks: 2, Object: p2.Object}
			c = Content{Segments: s, Patches: map[uint64][]Patch{1: {p4, left, p5}}}
			e.ok2(e.s.SetContent(ctx, f.Ino, 3<<20, c, 3))
			if g := e.garbage(); len(g) != 1 || !g[p1.Object] {
				t.Fatalf("garbage after the split: %v", g)
			}
			got, _ = patchLists(e.s.PatchesOf(ctx, f.Ino))
			if !reflect.DeepEqual(got[1], []Patch{p4, left, p5}) || !reflect.DeepEqual(got[2], []Patch{p3}) {
				t.Fatalf("segment 2 was not to change: %+v", got)
			}

			// Referenced sees every object, patches included.
			refs := map[blob.ID]bool{}
			e.ok(e.s.Referenced(ctx, func(id blob.ID) error { refs[id] = true; return nil }))
			for _, id := range []blob.ID{s[0].Object, s[1].Object, s[2].Object, p4.Object, p2.Object, p5.Object, p3.Object} {
				if !refs[id] {
					t.Fatalf("Referenced misses %s", id)
				}
			}

			// A segment rewritten whole drops its patches; a truncation drops a segment
			// with its patches.
			s1 := Segment{Index: 1, Object: blob.NewID()}
			c = Content{Segments: []Segment{s[0], s1}, Patches: map[uint64][]Patch{1: nil}}
			e.ok2(e.s.SetContent(ctx, f.Ino, 2<<20, c, 4))
			g := e.garbage()
			for _, id := range []blob.ID{s[1].Object, s[2].Object, p4.Object, p2.Object, p5.Object, p3.Object} {
				if !g[id] {
					t.Fatalf("%s not on the garbage list", id)
				}
			}
			if got, _ := patchLists(e.s.PatchesOf(ctx, f.Ino)); got != nil {
				t.Fatalf("patches left: %+v", got)
			}

			// A file that goes takes its patches with it.
			s1.Patched = true
			p6 := patch(0, 2, 0, 2)
			e.ok2(e.s.SetContent(ctx, f.Ino, 2<<20, Content{Segments: []Segment{s[0], s1}, Patches: map[uint64][]Patch{1: {p6}}}, 5))
			// Read twice (the second from the cache), then gone with the file.
			for range 2 {
				if got, _ := patchLists(e.s.PatchesOf(ctx, f.Ino)); !reflect.DeepEqual(got, map[uint64][]Patch{1: {p6}}) {
					t.Fatalf("PatchesOf: %+v", got)
				}
			}
			e.ok2(e.s.Unlink(ctx, e.root.Ino, "f"))
			e.ok(e.s.Reap(ctx, f.Ino))
			if got, _ := patchLists(e.s.PatchesOf(ctx, f.Ino)); got != nil {
				t.Fatalf("patches of a reaped file: %+v", got)
			}
			if g := e.garbage(); !g[p6.Object] || !g[s1.Object] {
				t.Fatal("the patches of a deleted file are not on the garbage list")
			}
			e.ok(e.db.View(ctx, func(tx kv.Txn) error {
				return tx.Scan([]byte(patchPrefix), nil, func(k, _ []byte) (bool, error) {
					t.Fatalf("patch record %x left", k)
					return false, nil
				})
			}))
			e.check()
		})
	}
}

// Patches that break the rules are refused before anything is written.
func TestPatchesRefused(t *testing.T) {
	e := newEnv(t, openMem(t))
	f := e.file(e.root.Ino, "f")
	s := segs(2)
	for name, c := range map[string]Content{
		"unmarked":   {Segments: s, Patches: map[uint64][]Patch{1: {patch(0, 1, 0, 1)}}},
		"empty run":  {Segments: []Segment{s[0], {Index: 1, Object: s[1].Object, Patched: true}}, Patches: map[uint64][]Patch{1: {patch(2, 2, 2, 1)}}},
		"past obj":   {Segments: []Segment{s[0], {Index: 1, Object: s[1].Object, Patched: true}}, Patches: map[uint64][]Patch{1: {patch(2, 5, 2, 2)}}},
		"overlap":    {Segments: []Segment{s[0], {Index: 1, Object: s[1].Object, Patched: true}}, Patches: map[uint64][]Patch{1: {patch(2, 5, 2, 3), patch(4, 6, 4, 2)}}},
		"no segment": {Segments: s, Patches: map[uint64][]Patch{7: {patch(0, 1, 0, 1)}}},
	} {
		if _, err := e.s.SetContent(ctx, f.Ino, 2<<20, c, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A mark without its record is a damaged store, refused by the reader.
	if _, err := decodePatches(encodePatches(nil)); err == nil {
		t.Error("an empty patch record decoded")
	}
}

// Patch records of version 1 (in 64 KiB chunks) still read, in blocks; version 2 is what
// is written; a version 1 record whose chunks would overflow a segment's blocks, or an
// unknown version, is refused.
func TestPatchRecordVersion1(t *testing.T) {
	obj := blob.NewID()
	v1 := []byte{1, 1, 2, 5, 1, 4}
	v1 = append(v1, obj[:]...)
	ps, err := decodePatches(v1)
	if err != nil {
		t.Fatal(err)
	}
	want := []Patch{{From: 32, To: 80, First: 16, Blocks: 64, Object: obj}}
	if !reflect.DeepEqual(ps, want) {
		t.Fatalf("version 1 record read as %+v, want %+v", ps, want)
	}
	if b := encodePatches(ps); b[0] != 2 {
		t.Fatalf("record written in version %d", b[0])
	}
	if got, err := decodePatches(encodePatches(ps)); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("version 2 round trip: %+v, %v", got, err)
	}
	big := append([]byte{1, 1, 0, 0x81, 0x02, 0, 0x81, 0x02}, obj[:]...) // to = 257 chunks
	if _, err := decodePatches(big); err == nil {
		t.Error("a version 1 record past a segment's chunks decoded")
	}
	v3 := append([]byte{3}, v1[1:]...)
	if _, err := decodePatches(v3); err == nil {
		t.Error("a patch record of version 3 decoded")
	}
}

// Inode records of the first version (no segment flags) still read.
func TestInodeVersion1Reads(t *testing.T) {
	n := &inode{kind: KindFile, mode: 0o644, nlink: 1, share: "s", size: 5, content: Content{Segments: segs(2)}}
	b, err := encodeInode(n)
	if err != nil {
		t.Fatal(err)
	}
	// Version 1 is version 2 without the seal count (here 0: one byte) before the
	// segment count, and without the flags byte after each segment.
	fixed := b[1 : len(b)-2*(1+blob.IDLen+1)-2] // up to the wrapped key
	v1 := append(append([]byte{1}, fixed...), 2)
	for _, sg := range n.content.Segments {
		v1 = binary.AppendUvarint(v1, sg.Index)
		v1 = append(v1, sg.Object[:]...)
	}
	got, err := decodeInode(7, v1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.content.Segments, n.content.Segments) || got.size != 5 {
		t.Fatalf("version 1 record read as %+v", got.content)
	}
}

// patchLists is PatchesOf's lists, for comparing.
func patchLists(ps *PatchSet, err error) (map[uint64][]Patch, error) {
	if err != nil {
		return nil, err
	}
	return ps.Lists, nil
}
