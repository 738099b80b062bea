package content

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"dsh/blob"
	"dsh/vault"
)

// TestModel runs thousands of random writes, reads, truncations and flushes (some of
// them refused by the metadata) against a File and a plain byte slice, with segments of
// a few chunks so that every operation meets segment boundaries, and reopens the file
// from its committed state after each successful flush.
func TestModel(t *testing.T) {
	cases := []struct {
		segChunks int64
		maxDirty  int64
		ops       int
	}{
		{segChunks: 2, maxDirty: 1 << 40, ops: 3000},             // never flushes by itself
		{segChunks: 3, maxDirty: 5 * vault.ChunkSize, ops: 3000}, // flushes by itself all the time
		{segChunks: 4, maxDirty: 12 * vault.ChunkSize, ops: 3000},
		{segChunks: 1, maxDirty: 2 * vault.ChunkSize, ops: 2000},
	}
	for i, c := range cases {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("seg=%d/dirty=%d/seed=%d", c.segChunks, c.maxDirty, seed), func(t *testing.T) {
				t.Parallel()
				ops := c.ops
				if testing.Short() {
					ops /= 5
				} else if raceEnabled {
					ops /= 3
				}
				runModel(t, c.segChunks, c.maxDirty, uint64(i)*1000+seed, ops)
			})
		}
	}
}

func runModel(t *testing.T, segChunks, maxDirty int64, seed uint64, ops int) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 42))
	e := newEnv(t, segChunks, maxDirty)
	e.meta.gc = true
	failing := false
	e.meta.fail = func() bool { return failing && r.IntN(3) > 0 }
	f := e.open()
	segSize := segChunks * vault.ChunkSize

	var model []byte
	next := int64(0) // where the last read ended: half the reads go on from there
	// offset picks a position near the interesting places: segment and chunk boundaries,
	// the end of the file, or anywhere up to a little past it.
	offset := func() int64 {
		size := int64(len(model))
		switch r.IntN(7) {
		case 0:
			return max(0, r.Int64N(size/segSize+2)*segSize+r.Int64N(9)-4)
		case 1:
			return max(0, r.Int64N(size/vault.ChunkSize+2)*vault.ChunkSize+r.Int64N(9)-4)
		case 2:
			return max(0, size+r.Int64N(5)-2)
		case 3, 4:
			// Block boundaries: writes that cover blocks whole read nothing in, and the
			// blocks around them are read only when needed (chunkBuf).
			return max(0, r.Int64N(size/vault.BlockSize+2)*vault.BlockSize+r.Int64N(3)-1)
		default:
			return r.Int64N(size + segSize + 1)
		}
	}
	length := func() int {
		switch r.IntN(5) {
		case 0:
			return r.IntN(16) + 1
		case 1:
			return vault.ChunkSize * (r.IntN(3) + 1)
		case 2:
			return vault.BlockSize * (r.IntN(3) + 1)
		default:
			return r.IntN(3*vault.ChunkSize) + 1
		}
	}

	for op := 0; op < ops; op++ {
		failing = r.IntN(8) == 0
		switch k := r.IntN(100); {
		case k < 45: // write
			off, p := offset(), randBytes(r, length())
			n, err := f.WriteAt(ctx, p, off)
			if err != nil && !errors.Is(err, errCommit) {
				t.Fatalf("op %d: write %d at %d: %v", op, len(p), off, err)
			}
			if n < len(p) && err == nil || n > len(p) {
				t.Fatalf("op %d: write %d at %d wrote %d", op, len(p), off, n)
			}
			// A write refused by a failing flush wrote a prefix, possibly nothing.
			if n > 0 {
				if end := off + int64(n); end > int64(len(model)) {
					model = append(model, make([]byte, end-int64(len(model)))...)
				}
				copy(model[off:], p[:n])
			}
		case k < 70: // read
			off, p := offset(), make([]byte, length())
			if r.IntN(2) == 0 {
				// Sequential reads start read-ahead, which the writes, truncations and
				// flushes around them must not fool.
				off = next
			}
			n, err := f.ReadAt(ctx, p, off)
			if err != nil {
				t.Fatalf("op %d: read %d at %d: %v", op, len(p), off, err)
			}
			next = off + int64(n)
			want := model[min(off, int64(len(model))):min(off+int64(len(p)), int64(len(model)))]
			equalOrReport(t, fmt.Sprintf("op %d: read %d at %d", op, len(p), off), p[:n], want)
		case k < 73: // punch a hole (or zero a range), sometimes of whole segments
			failing = false
			off, n := offset(), int64(length())
			if r.IntN(3) == 0 {
				off, n = r.Int64N(int64(len(model))/segSize+1)*segSize, segSize*int64(r.IntN(3)+1)
			}
			if r.IntN(4) == 0 {
				n = int64(len(model)) - off + int64(r.IntN(3))
			}
			if n <= 0 {
				n = 1
			}
			if err := f.PunchHole(ctx, off, n); err != nil {
				t.Fatalf("op %d: punch %d at %d: %v", op, n, off, err)
			}
			for i := off; i < min(off+n, int64(len(model))); i++ {
				model[i] = 0
			}
		case k < 75: // allocate
			off, n, keep := offset(), int64(length()), r.IntN(2) == 0
			if err := f.Allocate(ctx, off, n, keep); err != nil {
				t.Fatalf("op %d: allocate %d at %d: %v", op, n, off, err)
			}
			if end := off + n; !keep && end > int64(len(model)) {
				model = append(model, make([]byte, end-int64(len(model)))...)
			}
		case k < 85: // truncate
			size := r.Int64N(int64(len(model))*3/2 + segSize + 1)
			switch r.IntN(5) {
			case 0:
				size = r.Int64N(int64(len(model))/segSize+2)*segSize + r.Int64N(3) - 1
				size = max(0, size)
			case 1:
				// Back to the committed size: the stored segments keep their lengths, and
				// what was written past them must not become a patch past their end.
				size = e.meta.current().Size
			}
			if err := f.Truncate(ctx, size); err != nil {
				t.Fatalf("op %d: truncate to %d: %v", op, size, err)
			}
			if size < int64(len(model)) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-int64(len(model)))...)
			}
		case k < 97: // flush
			before := e.meta.current()
			err := f.Flush(ctx)
			if errors.Is(err, errCommit) {
				checkAborted(t, e, before, e.meta.lastFail)
				if !f.Dirty() {
					t.Fatalf("op %d: clean after a failed flush", op)
				}
				continue
			}
			if err != nil {
				t.Fatalf("op %d: flush: %v", op, err)
			}
			if f.Dirty() {
				t.Fatalf("op %d: dirty after a flush", op)
			}
			if st := e.meta.current(); st.Size != int64(len(model)) {
				t.Fatalf("op %d: committed size %d, want %d", op, st.Size, len(model))
			}
			g := e.open()
			equalOrReport(t, fmt.Sprintf("op %d: reopened", op), readAll(t, g, 100_000), model)
			if n := g.Close(); n != 0 {
				t.Fatalf("op %d: reopened file discarded %d bytes", op, n)
			}
		default: // everything, in FUSE-sized reads
			equalOrReport(t, fmt.Sprintf("op %d: whole file", op), readAll(t, f, 128<<10), model)
		}
		if f.Size() != int64(len(model)) {
			t.Fatalf("op %d: size %d, want %d", op, f.Size(), len(model))
		}
	}

	failing = false
	mustFlush(t, f)
	if n := f.Close(); n != 0 {
		t.Fatalf("close after flush discarded %d bytes", n)
	}
	g := e.open()
	equalOrReport(t, "final reopen", readAll(t, g, 1<<20), model)
	g.Close()
	if n := e.store.buffers.Load(); n != 0 {
		t.Fatalf("%d chunk buffers not returned", n)
	}
	f.ra.mu.Lock()
	started, served := f.ra.started, f.ra.served
	f.ra.mu.Unlock()
	if started == 0 || served == 0 {
		t.Errorf("read ahead: %d windows started, %d bytes served from them", started, served)
	}
	t.Logf("%d commits, %d bytes; read ahead: %d windows, %d bytes served", e.meta.commits, len(model), started, served)
}

// checkAborted verifies that a refused state left nothing behind: its new objects are
// gone, and the committed state is untouched.
func checkAborted(t *testing.T, e *env, before, refused Staged) {
	t.Helper()
	for _, id := range refused.New {
		if _, err := e.blobs.Stat(context.Background(), id); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("object %s of a refused flush still exists (%v)", id, err)
		}
	}
	after := e.meta.current()
	if after.Size != before.Size || len(after.Segments) != len(before.Segments) {
		t.Fatalf("a refused flush changed the committed state")
	}
}
