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

// A small write into a big file, flushed, writes the blocks it touched, not the chunk or
// the segment; reads see it
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
		// The blocks it touched: one run of at most two, in one object.
		twoBlocks, _ := vault.ObjectSize(2 * vault.BlockSize)
		if got := ms.written - before; got > twoBlocks {
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

	// An aligned 4 KiB write costs one sealed block; two writes into one chunk, apart,
	// are two patches, and a third between them joins neither object but reads right.
	for _, off := range []int64{5 * vault.BlockSize, 9 * vault.BlockSize, 7 * vault.BlockSize} {
		p := randBytes(r, vault.BlockSize)
		mustWrite(t, g, p, SegmentSize+off)
		copy(model[SegmentSize+off:], p)
		before := ms.written
		mustFlush(t, g)
		if one, _ := vault.ObjectSize(vault.BlockSize); ms.written-before != one {
			t.Fatalf("an aligned 4 KiB write cost %d bytes of objects, want %d", ms.written-before, one)
		}
	}
	equalOrReport(t, "blocks of one chunk", readAll(t, g, 70_000), model)

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
		"empty":         {From: 0, To: 0, First: 0, Blocks: 1, Object: good.Object},
		"past object":   {From: 0, To: 2, First: 0, Blocks: 1, Object: good.Object},
		"before object": {From: 0, To: 1, First: 1, Blocks: 1, Object: good.Object},
		"past segment":  {From: 5000, To: 5001, First: 5000, Blocks: 1, Object: good.Object},
		// The metadata collects what a changed segment stops naming: an object named twice
		// would be deleted under the other name.
		"another's base": {From: 0, To: 1, First: 0, Blocks: 1, Object: st.Segments[1].Object},
		"its own base":   {From: 0, To: 1, First: 0, Blocks: 1, Object: st.Segments[0].Object},
	} {
		segs := []Segment{{Index: 0, Object: st.Segments[0].Object, Patches: []Patch{p}}, st.Segments[1]}
		_, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, segs, e.meta.commit)
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// One patch object named by two segments' patch lists.
	twice := []Segment{st.Segments[0], {Index: 1, Object: st.Segments[1].Object, Patches: []Patch{{From: 0, To: 1, First: 0, Blocks: 1, Object: good.Object}}}}
	if _, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, twice, e.meta.commit); !errors.Is(err, ErrIntegrity) {
		t.Errorf("a patch object of two segments: %v", err)
	}
	if _, err := e.store.CheckLayout(st.Size, twice); !errors.Is(err, ErrIntegrity) {
		t.Errorf("a patch object of two segments, checked as a layout: %v", err)
	}
	// A patch object replaced by another object of the file is refused when read.
	segs := []Segment{{Index: 0, Object: st.Segments[0].Object, Patches: []Patch{{From: 0, To: 1, First: 0, Blocks: 1, Object: blob.NewID()}}}, st.Segments[1]}
	g, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, segs, e.meta.commit)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("read of a missing patch object: %v", err)
	}
}

// A flush of a patched chunk is refused while a write goes into the same chunk: the write's
// buffer starts from the flushing one's content, and after the refusal the blocks the flush
// failed to store must still be written with the new ones, not only the new write's.
func TestRefusedPatchUnderNewerWrite(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0, 0)
	f := e.open()
	defer f.Close()
	r := rand.New(rand.NewPCG(7, 8))
	model := randBytes(r, SegmentSize+vault.ChunkSize)
	mustWrite(t, f, model, 0)
	mustFlush(t, f)

	a := randBytes(r, vault.BlockSize)
	mustWrite(t, f, a, vault.ChunkSize+2*vault.BlockSize)
	copy(model[vault.ChunkSize+2*vault.BlockSize:], a)
	hold := make(chan struct{})
	e.meta.hold = hold
	e.meta.entered = make(chan struct{}, 1)
	e.meta.fail = func() bool { return true }
	done := make(chan error)
	go func() { done <- f.Flush(ctx) }()
	<-e.meta.entered
	b := randBytes(r, 100)
	mustWrite(t, f, b, vault.ChunkSize+9*vault.BlockSize+7)
	copy(model[vault.ChunkSize+9*vault.BlockSize+7:], b)
	e.meta.mu.Lock()
	e.meta.hold, e.meta.entered = nil, nil
	e.meta.mu.Unlock()
	close(hold)
	if err := <-done; !errors.Is(err, errCommit) {
		t.Fatalf("held flush: %v", err)
	}
	e.meta.fail = nil
	mustFlush(t, f)
	if ps := e.meta.current().Segments[0].Patches; len(ps) != 2 || ps[0].From != 18 || ps[1].From != 25 {
		t.Fatalf("patches after the retry: %+v", ps)
	}
	g := e.open()
	defer g.Close()
	equalOrReport(t, "reopened", readAll(t, g, 70_000), model)
}

// A write that covers blocks whole reads nothing of the stored object, neither when it is
// written nor when it is flushed as a patch; one that covers a block in part reads that
// block; reads and a rewrite of the whole segment still see every byte.
func TestWholeBlocksReadNothing(t *testing.T) {
	ms := newMemStore(false)
	e := newEnvOn(t, ms, 0, 0)
	f := e.open()
	r := rand.New(rand.NewPCG(9, 10))
	model := randBytes(r, SegmentSize+3*vault.ChunkSize)
	mustWrite(t, f, model, 0)
	mustFlush(t, f)
	f.Close()
	g := e.open()
	defer g.Close()
	before := ms.opens
	for _, off := range []int64{3*vault.ChunkSize + 5*vault.BlockSize, 7*vault.ChunkSize + 15*vault.BlockSize} {
		p := randBytes(r, 2*vault.BlockSize)
		mustWrite(t, g, p, off)
		copy(model[off:], p)
	}
	mustFlush(t, g)
	if ms.opens != before {
		t.Fatalf("writes of whole blocks opened %d objects", ms.opens-before)
	}
	p := randBytes(r, 100)
	mustWrite(t, g, p, 9*vault.ChunkSize+3*vault.BlockSize+50)
	copy(model[9*vault.ChunkSize+3*vault.BlockSize+50:], p)
	if ms.opens == before {
		t.Fatal("a write into part of a block read nothing of it")
	}
	// Unflushed, the chunk's other blocks come from the object.
	equalOrReport(t, "unflushed", readAll(t, g, 70_000), model)
	// A big write into the segment rewrites it whole, with blocks never read in.
	q := randBytes(r, vault.BlockSize)
	for c := int64(10); c < 10+2*patchDirtyMax; c++ {
		mustWrite(t, g, q, c*vault.ChunkSize+vault.BlockSize)
		copy(model[c*vault.ChunkSize+vault.BlockSize:], q)
	}
	mustFlush(t, g)
	if ps := e.meta.current().Segments[0].Patches; len(ps) != 0 {
		t.Fatalf("the segment was patched, not rewritten: %d patches", len(ps))
	}
	h := e.open()
	defer h.Close()
	equalOrReport(t, "reopened", readAll(t, h, 70_000), model)
}

// A write past the end of the file, then a truncate back to the stored size: the stored
// segment keeps its length, so the flush may patch it, and the blocks cut away must not be
// written (they lie past the segment's end). Found in review: the flush panicked or
// committed a patch of nothing.
func TestTruncateBackToStoredSize(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size, off int64
	}{
		{"block-aligned end, write at the end", 10 * vault.BlockSize, 10 * vault.BlockSize},
		{"block-aligned end, write past the end", 10 * vault.BlockSize, 12 * vault.BlockSize},
		{"partial last block", 40000, 50000},
		{"partial last block, write across the end", 40000, 39000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 0, 0)
			f := e.open()
			r := rand.New(rand.NewPCG(1, 2))
			model := randBytes(r, int(tc.size))
			mustWrite(t, f, model, 0)
			mustFlush(t, f)
			p := randBytes(r, vault.BlockSize)
			mustWrite(t, f, p, tc.off)
			if tc.off < tc.size {
				copy(model[tc.off:], p)
			}
			if err := f.Truncate(context.Background(), tc.size); err != nil {
				t.Fatal(err)
			}
			mustFlush(t, f)
			mustFlush(t, f)
			f.Close()
			g := e.open()
			defer g.Close()
			equalOrReport(t, "reopened", readAll(t, g, 70_000), model)
		})
	}
}
