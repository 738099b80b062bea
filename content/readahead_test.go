package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"dsh/blob"
	"dsh/vault"
)

// raFile commits a file of size random bytes on blob.Local, in segments of segChunks
// chunks (0: the default), and returns it closed.
func raFile(t *testing.T, segChunks int64, size int) (*env, []byte, string) {
	t.Helper()
	dir := t.TempDir()
	bs, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, bs, segChunks, 0)
	f := e.open()
	data := randBytes(rand.New(rand.NewPCG(uint64(size), 3)), size)
	mustWrite(t, f, data, 0)
	mustFlush(t, f)
	f.Close()
	return e, data, dir
}

// waitReadAhead waits until no window of f is being read.
func waitReadAhead(f *File) {
	ra := &f.ra
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for {
		busy := false
		for i := range ra.wins {
			busy = busy || ra.wins[i].inflight
		}
		if !busy {
			return
		}
		ra.cond.Wait()
	}
}

// heldAhead returns how many bytes of file offset off on a live window holds (0: none).
func heldAhead(f *File, off int64) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	seg := off / f.segSize
	i, ok := findSeg(f.segs, seg)
	if !ok {
		return 0
	}
	ra := &f.ra
	ra.mu.Lock()
	defer ra.mu.Unlock()
	rel := off - seg*f.segSize
	w := ra.find(f.segs[i], rel)
	if w == nil || w.inflight {
		return 0
	}
	return max(0, w.good-int(rel-w.rel))
}

func raStats(f *File) (started, served int64) {
	f.ra.mu.Lock()
	defer f.ra.mu.Unlock()
	return f.ra.started, f.ra.served
}

func mustRead(t *testing.T, f *File, n int, off int64) []byte {
	t.Helper()
	p := make([]byte, n)
	k, err := f.ReadAt(context.Background(), p, off)
	if err != nil {
		t.Fatalf("read %d at %d: %v", n, off, err)
	}
	return p[:k]
}

// checkNoBuffers checks that every window buffer went back. Tests that read ahead do not
// run in parallel, so the process-wide count is theirs.
func checkNoBuffers(t *testing.T) {
	t.Helper()
	if n := raBuffers.Load(); n != 0 {
		t.Fatalf("%d read-ahead buffers held after Close", n)
	}
}

func TestReadAheadSequential(t *testing.T) {
	for _, c := range []struct {
		segChunks int64
		size      int
	}{
		{0, 2*SegmentSize + 5*vault.ChunkSize + 12345}, // 1 MiB windows
		{4, 21*4*vault.ChunkSize + 777},                // windows of a whole segment
		{6, 13*6*vault.ChunkSize + 65536},              // 3-chunk windows, two per segment
	} {
		e, data, _ := raFile(t, c.segChunks, c.size)
		for _, read := range []int{1 << 20, 128 << 10, 100_003, 4096} {
			if read == 4096 && c.segChunks == 0 && raceEnabled {
				// 8,000 reads of 4 KiB are slow under the race detector; 16 KiB reads
				// take the same small-read path.
				read = 16 << 10
			}
			t.Run(fmt.Sprintf("seg=%d/read=%d", c.segChunks, read), func(t *testing.T) {
				f := e.open()
				equalOrReport(t, "sequential read", readAll(t, f, read), data)
				started, served := raStats(f)
				if served < int64(len(data))/2 {
					t.Errorf("%d of %d bytes served from read-ahead (%d windows)", served, len(data), started)
				}
				f.Close()
				checkNoBuffers(t)
			})
		}
	}
}

// TestReadAheadRandom checks that reads out of order start no read-ahead.
func TestReadAheadRandom(t *testing.T) {
	e, data, _ := raFile(t, 16, 40*16*vault.ChunkSize)
	f := e.open()
	defer f.Close()
	r := rand.New(rand.NewPCG(5, 5))
	for range 2000 {
		off := r.Int64N(int64(len(data))/4096) * 4096
		equalOrReport(t, fmt.Sprintf("read at %d", off), mustRead(t, f, 4096, off), data[off:off+4096])
	}
	if started, _ := raStats(f); started != 0 {
		t.Fatalf("random reads started %d read-ahead windows", started)
	}
}

// raStart reads [0, 2 MiB) in two reads, which starts read-ahead of [2, 6) MiB, waits
// for it, and checks that the window at off is held.
func raStart(t *testing.T, f *File, data []byte, off ...int64) {
	t.Helper()
	equalOrReport(t, "read 0", mustRead(t, f, 1<<20, 0), data[:1<<20])
	equalOrReport(t, "read 1", mustRead(t, f, 1<<20, 1<<20), data[1<<20:2<<20])
	waitReadAhead(f)
	for _, o := range off {
		if heldAhead(f, o) == 0 {
			t.Fatalf("no read-ahead window holds offset %d", o)
		}
	}
}

// TestReadAheadSeesWrites checks that a write, and a flush that replaces the object a
// window was read from, are seen by the next read.
func TestReadAheadSeesWrites(t *testing.T) {
	e, data, _ := raFile(t, 64, 12<<20) // 4 MiB segments
	e.meta.gc = true                    // a dropped object is deleted at once
	f := e.open()
	defer f.Close()
	raStart(t, f, data, 2<<20+100, 3<<20, 4<<20, 5<<20+7)
	model := bytes.Clone(data)

	// A write into a window that was read ahead: the next read sees it.
	w1 := []byte("written after the read-ahead")
	mustWrite(t, f, w1, 2<<20+100)
	copy(model[2<<20+100:], w1)
	equalOrReport(t, "read 2", mustRead(t, f, 1<<20, 2<<20), model[2<<20:3<<20])
	equalOrReport(t, "read 3", mustRead(t, f, 1<<20, 3<<20), model[3<<20:4<<20])

	// A write into the next segment, flushed: the segment's object is replaced (and the
	// old one deleted), so no dirty chunk covers the change any more.
	waitReadAhead(f)
	if heldAhead(f, 5<<20+7) == 0 {
		t.Fatal("no window at 5 MiB")
	}
	w2 := []byte("flushed after the read-ahead")
	mustWrite(t, f, w2, 5<<20+7)
	copy(model[5<<20+7:], w2)
	mustFlush(t, f)
	if heldAhead(f, 5<<20+7) != 0 {
		t.Fatal("a window survived the flush")
	}
	equalOrReport(t, "read 4", mustRead(t, f, 1<<20, 4<<20), model[4<<20:5<<20])
	equalOrReport(t, "read 5", mustRead(t, f, 1<<20, 5<<20), model[5<<20:6<<20])
	equalOrReport(t, "the rest", mustRead(t, f, 6<<20, 6<<20), model[6<<20:])
	if _, served := raStats(f); served == 0 {
		t.Fatal("nothing served from read-ahead")
	}
}

// TestReadAheadTruncate checks that bytes cut off by a truncation never come back from a
// window read before it, whether the file grows again or not.
func TestReadAheadTruncate(t *testing.T) {
	ctx := context.Background()
	e, data, _ := raFile(t, 64, 12<<20)
	f := e.open()
	defer f.Close()
	raStart(t, f, data, 2<<20, 3<<20, 4<<20, 5<<20)
	cut := int64(2<<20 + 1000)
	if err := f.Truncate(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, f, 1<<20, 2<<20); !bytes.Equal(got, data[2<<20:cut]) {
		t.Fatalf("after the cut: %d bytes, want %d", len(got), cut-2<<20)
	}
	if err := f.Truncate(ctx, 12<<20); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 12<<20)
	copy(want, data[:cut])
	equalOrReport(t, "grown again", readAll(t, f, 1<<20), want)
	mustFlush(t, f)
	g := e.open()
	defer g.Close()
	equalOrReport(t, "reopened", readAll(t, g, 1<<20), want)
}

// TestReadAheadTampered checks that a damaged chunk fails the read that covers it, with
// the error a read without read-ahead gets, although read-ahead met it first; and that
// the reads before it succeed.
func TestReadAheadTampered(t *testing.T) {
	for _, where := range []string{"chunk", "header"} {
		t.Run(where, func(t *testing.T) {
			e, data, dir := raFile(t, 64, 12<<20) // 4 MiB segments
			seg := e.meta.current().Segments[1]   // [4, 8) MiB
			path := objectPath(dir, seg.Object)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The chunk at 5.25 MiB, in the read of [5, 6) MiB; or the object's header,
			// which fails the read of [4, 5) MiB.
			failing, good := int64(5<<20), 1<<18
			if where == "header" {
				b[30] ^= 1
				failing, good = 4<<20, 0
			} else {
				k := int64(20)                                  // chunk of the segment
				per := int64(vault.ChunkSize / vault.BlockSize) // sealed pieces of a chunk
				b[vault.ObjectHeaderSize+k*per*(vault.BlockSize+vault.ChunkOverhead)+100] ^= 1
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}

			// What a read without read-ahead returns: a fresh File's first read.
			g := e.open()
			want := make([]byte, 1<<20)
			wantN, wantErr := g.ReadAt(context.Background(), want, failing)
			g.Close()
			if !errors.Is(wantErr, ErrIntegrity) || wantN != good {
				t.Fatalf("read without read-ahead: %d, %v; want %d and ErrIntegrity", wantN, wantErr, good)
			}

			f := e.open()
			defer f.Close()
			p := make([]byte, 1<<20)
			for off := int64(0); off < failing; off += 1 << 20 {
				n, err := f.ReadAt(context.Background(), p, off)
				if err != nil || n != len(p) {
					t.Fatalf("read at %d before the damage: %d, %v", off, n, err)
				}
				equalOrReport(t, fmt.Sprintf("read at %d", off), p, data[off:off+1<<20])
			}
			waitReadAhead(f)
			if started, _ := raStats(f); started == 0 {
				t.Fatal("no read-ahead")
			}
			if where == "chunk" && heldAhead(f, failing) != good {
				t.Fatalf("the window at %d holds %d good bytes, want %d", failing, heldAhead(f, failing), good)
			}
			n, err := f.ReadAt(context.Background(), p, failing)
			if n != wantN || err == nil || err.Error() != wantErr.Error() {
				t.Fatalf("read at %d with read-ahead: %d, %v; want %d, %v", failing, n, err, wantN, wantErr)
			}
			equalOrReport(t, "bytes before the damage", p[:n], data[failing:failing+int64(n)])
			// Reading on: the chunks after a damaged one are fine, a damaged header is not.
			n, err = f.ReadAt(context.Background(), p, failing+1<<20)
			if where == "chunk" {
				if err != nil || n != len(p) {
					t.Fatalf("read after the damaged chunk: %d, %v", n, err)
				}
				equalOrReport(t, "read after the damage", p, data[failing+1<<20:failing+2<<20])
			} else if !errors.Is(err, ErrIntegrity) || n != 0 {
				t.Fatalf("read on in the segment with a damaged header: %d, %v", n, err)
			}
			// The next segment is whole.
			equalOrReport(t, "next segment", mustRead(t, f, 1<<20, 8<<20), data[8<<20:9<<20])
		})
	}
}

// TestReadAheadClose closes files while their read-ahead runs, and while other goroutines
// read them: every buffer goes back, every object is closed, reads fail with ErrClosed.
func TestReadAheadClose(t *testing.T) {
	e, data, _ := raFile(t, 64, 12<<20)
	for i := range 20 {
		f := e.open()
		if i%2 == 0 {
			mustRead(t, f, 1<<20, 0)
			mustRead(t, f, 1<<20, 1<<20) // four windows start
			f.Close()
		} else {
			var wg sync.WaitGroup
			for r := range 3 {
				wg.Go(func() {
					p := make([]byte, 128<<10)
					for off := int64(r) << 20; off < int64(len(data)); off += int64(len(p)) {
						n, err := f.ReadAt(context.Background(), p, off)
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil || !bytes.Equal(p[:n], data[off:off+int64(n)]) {
							t.Errorf("read at %d: %d, %v", off, n, err)
							return
						}
					}
				})
			}
			f.Close()
			wg.Wait()
		}
		checkNoBuffers(t)
		for _, o := range f.cache.slots {
			if o != nil {
				t.Fatal("an object is still cached after Close")
			}
		}
		if _, err := f.ReadAt(context.Background(), make([]byte, 10), 2<<20); !errors.Is(err, ErrClosed) {
			t.Fatalf("read after Close: %v", err)
		}
	}
}

// TestReadAheadBound reads many files sequentially at once: no File holds more than
// raWindows windows, all of them together no more than raMaxBuffers, and every read is
// right.
func TestReadAheadBound(t *testing.T) {
	const files, size = 3 * raMaxBuffers / raWindows, 8 << 20
	ms := newMemStore(false)
	type open struct {
		f    *File
		data []byte
	}
	var all []open
	for i := range files {
		e := newEnvOn(t, ms, 0, 0)
		f := e.open()
		data := randBytes(rand.New(rand.NewPCG(uint64(i), 9)), size)
		mustWrite(t, f, data, 0)
		mustFlush(t, f)
		f.Close()
		all = append(all, open{e.open(), data})
	}
	raPeak.Store(raBuffers.Load())
	var wg sync.WaitGroup
	for _, o := range all {
		wg.Go(func() {
			p := make([]byte, 1<<20)
			for off := int64(0); off < size; off += 1 << 20 {
				n, err := o.f.ReadAt(context.Background(), p, off)
				if err != nil || n != len(p) || !bytes.Equal(p, o.data[off:off+1<<20]) {
					t.Errorf("read at %d: %d, %v, or wrong bytes", off, n, err)
					return
				}
				o.f.ra.mu.Lock()
				live := o.f.ra.live
				o.f.ra.mu.Unlock()
				if live > raWindows {
					t.Errorf("%d windows in one File", live)
				}
			}
		})
	}
	wg.Wait()
	served := int64(0)
	for _, o := range all {
		_, s := raStats(o.f)
		served += s
		o.f.Close()
	}
	if p := raPeak.Load(); p > raMaxBuffers {
		t.Fatalf("%d read-ahead buffers at once, cap %d", p, raMaxBuffers)
	}
	if served == 0 {
		t.Fatal("nothing served from read-ahead")
	}
	checkNoBuffers(t)
	t.Logf("peak %d buffers, %d MiB of %d served ahead", raPeak.Load(), served>>20, files*size>>20)
}
