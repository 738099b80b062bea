package content

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"dsh/blob"
	"dsh/vault"
)

// A small write into a big file, flushed, writes one chunk, not the segment; reads see it
// at once and after a reopen; patches over patches split and drop the older ones.
func TestSmallWritesArePatches(t *testing.T) {
	ms := newMemStore(false)
	e := newEnvOn(t, ms, 0, 0)
	f := e.open()
	r := rand.New(rand.NewPCG(3, 4))
	model := randBytes(r, 2*SegmentSize+12345)
	mustWrite(t, f, model, 0)
	mustFlush(t, f)
	base := ms.written
	writes := 0
	for i := range 200 {
		off := r.Int64N(int64(len(model)) - 4096)
		if i%10 == 0 {
			off = int64(len(model)) - 100 // the partial last chunk
		}
		p := randBytes(r, min(4096, len(model)-int(off)))
		mustWrite(t, f, p, off)
		copy(model[off:], p)
		before := ms.written
		mustFlush(t, f)
		writes++
		// One chunk, at most two when the write straddles a boundary.
		oneChunk, _ := vault.ObjectSize(vault.ChunkSize)
		if got := ms.written - before; got > 2*oneChunk {
			t.Fatalf("write %d: a 4 KiB write cost %d bytes of objects", i, got)
		}
		if i%25 == 0 {
			equalOrReport(t, "read with patches", readAll(t, f, 70_000), model)
		}
	}
	t.Logf("%d small writes wrote %d bytes of objects (%.0f per write)", writes, ms.written-base, float64(ms.written-base)/float64(writes))
	st := e.meta.current()
	patches := 0
	for _, sg := range st.Segments {
		patches += len(sg.Patches)
	}
	if patches == 0 {
		t.Fatal("no patches")
	}
	equalOrReport(t, "read with patches", readAll(t, f, 70_000), model)
	f.Close()
	g := e.open()
	equalOrReport(t, "reopened", readAll(t, g, 33_333), model)

	// A big write rewrites the segment whole, and drops its patches' objects.
	big := randBytes(r, 3*patchDirtyMax*vault.ChunkSize)
	mustWrite(t, g, big, 1000)
	copy(model[1000:], big)
	mustFlush(t, g)
	st = e.meta.current()
	if len(st.Segments[0].Patches) != 0 {
		t.Fatalf("segment 0 rewritten whole still has %d patches", len(st.Segments[0].Patches))
	}
	equalOrReport(t, "after a whole rewrite", readAll(t, g, 70_000), model)
	// A truncate into a patched segment rewrites it whole too.
	if err := g.Truncate(context.Background(), SegmentSize+5000); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, g)
	model = model[:SegmentSize+5000]
	st = e.meta.current()
	if len(st.Segments) != 2 || len(st.Segments[1].Patches) != 0 {
		t.Fatalf("after truncate: %+v", st.Segments)
	}
	equalOrReport(t, "after truncate", readAll(t, g, 70_000), model)
	g.Close()
}

// Stored patches that no flush writes are refused, as damaged metadata.
func TestBadPatchesRefused(t *testing.T) {
	e := newEnv(t, 0, 0)
	f := e.open()
	mustWrite(t, f, bytes.Repeat([]byte{1}, SegmentSize+10), 0)
	mustFlush(t, f)
	mustWrite(t, f, []byte{2}, 5)
	mustFlush(t, f)
	f.Close()
	st := e.meta.current()
	if len(st.Segments[0].Patches) != 1 {
		t.Fatalf("expected one patch: %+v", st.Segments)
	}
	good := st.Segments[0].Patches[0]
	for name, p := range map[string]Patch{
		"empty":         {From: 0, To: 0, First: 0, Chunks: 1, Object: good.Object},
		"past object":   {From: 0, To: 2, First: 0, Chunks: 1, Object: good.Object},
		"before object": {From: 0, To: 1, First: 1, Chunks: 1, Object: good.Object},
		"past segment":  {From: 300, To: 301, First: 300, Chunks: 1, Object: good.Object},
		// The metadata collects what a changed segment stops naming: an object named twice
		// would be deleted under the other name.
		"another's base": {From: 0, To: 1, First: 0, Chunks: 1, Object: st.Segments[1].Object},
		"its own base":   {From: 0, To: 1, First: 0, Chunks: 1, Object: st.Segments[0].Object},
	} {
		segs := []Segment{{Index: 0, Object: st.Segments[0].Object, Patches: []Patch{p}}, st.Segments[1]}
		_, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, segs, e.meta.commit)
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// One patch object named by two segments' patch lists.
	twice := []Segment{st.Segments[0], {Index: 1, Object: st.Segments[1].Object, Patches: []Patch{{From: 0, To: 1, First: 0, Chunks: 1, Object: good.Object}}}}
	if _, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, twice, e.meta.commit); !errors.Is(err, ErrIntegrity) {
		t.Errorf("a patch object of two segments: %v", err)
	}
	if _, err := e.store.CheckLayout(st.Size, twice); !errors.Is(err, ErrIntegrity) {
		t.Errorf("a patch object of two segments, checked as a layout: %v", err)
	}
	// A patch object replaced by another object of the file is refused when read.
	segs := []Segment{{Index: 0, Object: st.Segments[0].Object, Patches: []Patch{{From: 0, To: 1, First: 0, Chunks: 1, Object: blob.NewID()}}}, st.Segments[1]}
	g, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, segs, e.meta.commit)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("read of a missing patch object: %v", err)
	}
}
