package content

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"

	"dsh/vault"
)

// TestStreamingMemoryBound streams a big file through WriteAt in 128 KiB writes, as FUSE
// delivers it, and checks that the File never holds more than MaxDirty plus one segment
// of buffers, that the heap stays near that, and that every byte is sealed about once.
// DSH_CONTENT_STREAM_GB sets the size (10 for the full check); the default keeps the test
// quick. The blob store discards the objects: this measures the File, not a disk.
func TestStreamingMemoryBound(t *testing.T) {
	total := int64(1) << 30
	if testing.Short() || raceEnabled {
		total = 256 << 20
	}
	if s := os.Getenv("DSH_CONTENT_STREAM_GB"); s != "" {
		gb, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		total = int64(gb) << 30
	}
	for _, c := range []struct {
		segChunks, maxDirty int64
	}{
		{SegmentChunks, 4 << 20},  // default segments, MaxDirty below one
		{SegmentChunks, 40 << 20}, // default segments, MaxDirty above two
		{4, 9 * vault.ChunkSize},  // small segments
	} {
		t.Run(fmt.Sprintf("seg=%d/dirty=%d", c.segChunks, c.maxDirty), func(t *testing.T) {
			n := total
			if c.segChunks < 16 {
				// Every flush hands over the whole segment list, so tiny segments make a
				// long stream quadratic; 1 GiB of them is plenty.
				n = min(n, 1<<30)
			}
			streamBound(t, n, c.segChunks, c.maxDirty)
		})
	}
}

func streamBound(t *testing.T, total, segChunks, maxDirty int64) {
	ms := newMemStore(true)
	e := newEnvOn(t, ms, segChunks, maxDirty)
	f := e.open()
	defer f.Close()
	segSize := segChunks * vault.ChunkSize
	const write = 128 << 10
	// What the File may hold: MaxDirty and one segment, plus the write that crossed the
	// limit and the flush workers' scratch chunks.
	limit := (maxDirty+segSize+write)/vault.ChunkSize + flushWorkers

	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var peakHeap uint64
	p := make([]byte, write)
	for i := range p {
		p[i] = byte(i)
	}
	for off := int64(0); off < total; off += write {
		mustWrite(t, f, p, off)
		if off%(64<<20) == 0 {
			// Live heap, after a collection: garbage is not what this bounds.
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peakHeap = max(peakHeap, m.HeapAlloc)
		}
	}
	mustFlush(t, f)
	if st := e.meta.current(); st.Size != total {
		t.Fatalf("committed %d bytes, want %d", st.Size, total)
	}
	peakBufs := e.store.peakBuffers.Load()
	if peakBufs > limit {
		t.Fatalf("held up to %d chunk buffers, limit %d", peakBufs, limit)
	}
	// The live heap also holds the pool's spare buffers, the segment list and the fake
	// metadata and blob store's records of every object; twice the limit plus a few MiB
	// catches any growth of buffers with the file's size.
	heapLimit := ms0.HeapAlloc + uint64(2*limit*vault.ChunkSize) + 8<<20
	if peakHeap > heapLimit {
		t.Fatalf("heap grew to %d MiB, limit %d MiB", peakHeap>>20, heapLimit>>20)
	}
	t.Logf("%d MiB streamed: peak %d buffers (limit %d), heap %d MiB, %d commits, %.3f bytes sealed per byte",
		total>>20, peakBufs, limit, peakHeap>>20, e.meta.commits, float64(ms.written)/float64(total))
	if amp := float64(ms.written) / float64(total); amp > 1.05 {
		t.Fatalf("sealed %.2f bytes per byte written", amp)
	}
}

// TestSteadyStateAllocs checks that the hot paths allocate nothing per call once warm.
func TestSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	ctx := context.Background()
	e := newEnvOn(t, newMemStore(false), 4, 0)
	f := e.open()
	defer f.Close()
	data := make([]byte, 8*4*vault.ChunkSize)
	mustWrite(t, f, data, 0)
	mustFlush(t, f)
	p := make([]byte, 128<<10)
	small := make([]byte, 4096)
	check := func(name string, fn func()) {
		t.Helper()
		fn()
		if a := testing.AllocsPerRun(200, fn); a != 0 {
			t.Errorf("%s: %.1f allocations per call", name, a)
		}
	}
	check("read stored 128 KiB", func() {
		if _, err := f.ReadAt(ctx, p, 3*vault.ChunkSize); err != nil {
			t.Fatal(err)
		}
	})
	check("read stored 4 KiB", func() {
		if _, err := f.ReadAt(ctx, small, 5*vault.ChunkSize+1000); err != nil {
			t.Fatal(err)
		}
	})
	check("write dirty 4 KiB", func() {
		if _, err := f.WriteAt(ctx, small, 1000); err != nil {
			t.Fatal(err)
		}
	})
	check("read across dirty and stored", func() {
		if _, err := f.ReadAt(ctx, p, 0); err != nil {
			t.Fatal(err)
		}
	})
}
