package content

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dsh/blob"
	"dsh/vault"
)

func TestEmptyAndHoles(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 0)
	f := e.open()
	defer f.Close()
	p := make([]byte, 10)
	if n, err := f.ReadAt(ctx, p, 0); n != 0 || err != nil {
		t.Fatalf("read of an empty file: %d, %v", n, err)
	}
	if err := f.Flush(ctx); err != nil || e.meta.commits != 0 {
		t.Fatalf("flush of a clean file: %v, %d commits", err, e.meta.commits)
	}
	// A write far out leaves a hole of whole segments, which get no object.
	far := 5*f.segSize + 100
	mustWrite(t, f, []byte("end"), far)
	mustFlush(t, f)
	st := e.meta.current()
	if st.Size != far+3 || len(st.Segments) != 1 || st.Segments[0].Index != 5 {
		t.Fatalf("committed %d bytes in %v, want one segment 5", st.Size, st.Segments)
	}
	g := e.open()
	defer g.Close()
	got := readAll(t, g, 50_000)
	want := make([]byte, far+3)
	copy(want[far:], "end")
	equalOrReport(t, "sparse file", got, want)
	// Short read at the end, nothing past it.
	if n, err := g.ReadAt(ctx, p, far); n != 3 || err != nil {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	if n, err := g.ReadAt(ctx, p, far+3); n != 0 || err != nil {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	if n, err := g.ReadAt(ctx, p, 1<<62); n != 0 || err != nil {
		t.Fatalf("read far past the end: %d, %v", n, err)
	}
	// Extending by truncation makes the old last segment full-length zeros, and adds no
	// object for the hole.
	if err := g.Truncate(ctx, 9*f.segSize); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, g)
	st2 := e.meta.current()
	if len(st2.Segments) != 1 || len(st2.Dropped) != 1 || st2.Dropped[0] != st.Segments[0].Object {
		t.Fatalf("after extension: %+v", st2)
	}
}

func TestBadArguments(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 0)
	f := e.open()
	if _, err := f.ReadAt(ctx, make([]byte, 1), -1); err == nil {
		t.Error("read at -1 succeeded")
	}
	if _, err := f.WriteAt(ctx, []byte("x"), -1); err == nil {
		t.Error("write at -1 succeeded")
	}
	if _, err := f.WriteAt(ctx, []byte("xy"), 1<<63-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("write past the largest offset: %v", err)
	}
	if err := f.Truncate(ctx, -1); err == nil {
		t.Error("truncate to -1 succeeded")
	}
	if err := f.Truncate(ctx, MaxSize+1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("truncate past MaxSize: %v", err)
	}
	if _, err := f.WriteAt(ctx, []byte("x"), MaxSize); !errors.Is(err, ErrTooLarge) {
		t.Errorf("write past MaxSize: %v", err)
	}
	if n, err := f.WriteAt(ctx, nil, 1000); n != 0 || err != nil || f.Size() != 0 {
		t.Errorf("empty write: %d, %v, size %d", n, err, f.Size())
	}
	if _, err := e.store.Open(e.share, &e.key, e.id, e.wkey, -5, nil, e.meta.commit); err == nil {
		t.Error("open with a negative size succeeded")
	}
	if _, err := e.store.Open(e.share, &e.key, e.id, e.wkey, 0, nil, nil); err == nil {
		t.Error("open without a commit function succeeded")
	}

	mustWrite(t, f, []byte("hello"), 0)
	if n := f.Close(); n != 5 {
		t.Errorf("close discarded %d bytes, want 5", n)
	}
	if n := f.Close(); n != 0 {
		t.Errorf("second close discarded %d bytes", n)
	}
	if _, err := f.ReadAt(ctx, make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := f.WriteAt(ctx, []byte("x"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if err := f.Truncate(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("truncate after close: %v", err)
	}
	if err := f.Flush(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("flush after close: %v", err)
	}
	if e.meta.commits != 0 {
		t.Errorf("%d commits for a file never flushed", e.meta.commits)
	}
	if n := e.store.buffers.Load(); n != 0 {
		t.Errorf("%d buffers held after close", n)
	}
}

func TestCommitFailureKeepsData(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 0)
	f := e.open()
	defer f.Close()
	r := rand.New(rand.NewPCG(1, 2))
	first := randBytes(r, int(3*f.segSize))
	mustWrite(t, f, first, 0)
	mustFlush(t, f)
	before := e.meta.current()

	second := randBytes(r, 3000)
	mustWrite(t, f, second, f.segSize-1000)
	e.meta.fail = func() bool { return true }
	if err := f.Flush(ctx); !errors.Is(err, errCommit) {
		t.Fatalf("flush with a failing commit: %v", err)
	}
	refused := e.meta.lastFail
	// The write crosses into the next segment: one chunk patched in each, nothing dropped.
	if len(refused.New) != 2 || len(refused.Dropped) != 0 || len(refused.Segments[0].Patches) != 1 || len(refused.Segments[1].Patches) != 1 {
		t.Fatalf("refused state: %+v", refused)
	}
	for _, id := range refused.New {
		if _, err := e.blobs.Stat(ctx, id); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("new object of a refused flush: %v", err)
		}
	}
	for _, id := range refused.Dropped {
		if _, err := e.blobs.Stat(ctx, id); err != nil {
			t.Fatalf("content deleted a dropped object itself: %v", err)
		}
	}
	if !f.Dirty() {
		t.Fatal("clean after a failed flush")
	}
	want := append([]byte(nil), first...)
	copy(want[f.segSize-1000:], second)
	equalOrReport(t, "after failed flush", readAll(t, f, 70_000), want)
	if got := e.meta.current(); got.Size != before.Size || got.Segments[0].Object != before.Segments[0].Object || got.Segments[0].Index != before.Segments[0].Index {
		t.Fatal("committed state changed")
	}

	e.meta.fail = nil
	mustFlush(t, f)
	g := e.open()
	defer g.Close()
	equalOrReport(t, "reopened after retry", readAll(t, g, 70_000), want)
}

// TestWritesDuringFlush holds a flush inside its commit while other writes go on, for a
// commit that succeeds and one that fails.
func TestWritesDuringFlush(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "commit", true: "refuse"}[fail], func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 2, 0)
			f := e.open()
			defer f.Close()
			r := rand.New(rand.NewPCG(3, 4))
			a := randBytes(r, 5*vault.ChunkSize)
			mustWrite(t, f, a, 0)

			hold := make(chan struct{})
			e.meta.hold = hold
			e.meta.entered = make(chan struct{}, 1)
			e.meta.fail = func() bool { return fail }
			done := make(chan error)
			go func() { done <- f.Flush(ctx) }()
			<-e.meta.entered

			// Into a chunk being flushed, and past everything.
			b := randBytes(r, 1000)
			mustWrite(t, f, b, vault.ChunkSize+500)
			c := randBytes(r, 3*vault.ChunkSize)
			mustWrite(t, f, c, 7*vault.ChunkSize-7)
			full := make([]byte, 10*vault.ChunkSize-7)
			copy(full, a)
			copy(full[vault.ChunkSize+500:], b)
			copy(full[7*vault.ChunkSize-7:], c)
			equalOrReport(t, "during flush", readAll(t, f, 100_000), full)

			truncated := make(chan struct{})
			go func() {
				f.Truncate(ctx, int64(len(full)))
				close(truncated)
			}()
			select {
			case <-truncated:
				t.Fatal("Truncate ran during a flush")
			case <-time.After(20 * time.Millisecond):
			}

			e.meta.mu.Lock()
			e.meta.hold, e.meta.entered = nil, nil
			e.meta.mu.Unlock()
			close(hold)
			err := <-done
			<-truncated
			if fail != errors.Is(err, errCommit) || (!fail && err != nil) {
				t.Fatalf("held flush: %v", err)
			}
			if !f.Dirty() {
				t.Fatal("writes made during the flush are not dirty")
			}
			if !fail {
				g := e.open()
				equalOrReport(t, "first commit", readAll(t, g, 100_000), a)
				g.Close()
			}
			e.meta.fail = nil
			mustFlush(t, f)
			g := e.open()
			defer g.Close()
			equalOrReport(t, "second commit", readAll(t, g, 100_000), full)
			equalOrReport(t, "live file", readAll(t, f, 100_000), full)
		})
	}
}

// TestConcurrent runs one writer, several readers and a flusher on one File. Every write
// fills an aligned 4 KiB block with one byte value, so a reader must always see
// blocks of one value, whatever it races with.
func TestConcurrent(t *testing.T) {
	const (
		block  = 4096
		blocks = 256
	)
	ctx := context.Background()
	e := newEnvOn(t, newMemStore(false), 2, 6*vault.ChunkSize)
	f := e.open()
	defer f.Close()
	writes := 1000
	if testing.Short() {
		writes = 500
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	wg.Go(func() {
		defer stop.Store(true)
		r := rand.New(rand.NewPCG(9, 9))
		buf := make([]byte, block)
		for i := range writes {
			switch r.IntN(50) {
			case 0:
				if err := f.Truncate(ctx, r.Int64N(blocks)*block); err != nil {
					errc <- err
					return
				}
				continue
			case 1:
				if err := f.Flush(ctx); err != nil {
					errc <- err
					return
				}
				continue
			}
			for j := range buf {
				buf[j] = byte(i)
			}
			n := 1 + r.IntN(2)
			if _, err := f.WriteAt(ctx, bytes.Repeat(buf, n), r.Int64N(blocks)*block); err != nil {
				errc <- err
				return
			}
		}
	})
	wg.Go(func() {
		for !stop.Load() {
			if err := f.Flush(ctx); err != nil {
				errc <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 5))
			p := make([]byte, 40*block)
			for !stop.Load() {
				// Yield, or the readers' decryption starves the writer under -race.
				runtime.Gosched()
				off := r.Int64N(blocks) * block
				n, err := f.ReadAt(ctx, p[:block*(1+r.IntN(40))], off)
				if err != nil {
					errc <- err
					return
				}
				for b := 0; b < n; b += block {
					blk := p[b:min(n, b+block)]
					if bytes.Count(blk, blk[:1]) != len(blk) {
						errc <- errors.New("torn block")
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	want := readAll(t, f, 1<<20)
	mustFlush(t, f)
	g := e.open()
	defer g.Close()
	equalOrReport(t, "reopened", readAll(t, g, 1<<20), want)
}

func TestLargestFile(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 0)
	f := e.open()
	defer f.Close()
	mustWrite(t, f, []byte("last"), MaxSize-4)
	mustFlush(t, f)
	g := e.open()
	defer g.Close()
	p := make([]byte, 10)
	if n, err := g.ReadAt(ctx, p, MaxSize-6); n != 6 || err != nil || string(p[:n]) != "\x00\x00last" {
		t.Fatalf("read at the end of the largest file: %d, %v, %q", n, err, p[:n])
	}
	if n, err := g.ReadAt(ctx, p, MaxSize/2); n != 10 || err != nil || p[0] != 0 {
		t.Fatalf("read in its hole: %d, %v", n, err)
	}
	if err := g.Truncate(ctx, MaxSize); err != nil {
		t.Fatal(err)
	}
}

// TestFailingStoreBoundsMemory keeps writing while every commit fails: once over the
// limit, writes are refused rather than buffered without end, and nothing accepted is
// lost.
func TestFailingStoreBoundsMemory(t *testing.T) {
	ctx := context.Background()
	e := newEnvOn(t, newMemStore(false), 4, 8*vault.ChunkSize)
	e.meta.fail = func() bool { return true }
	f := e.open()
	defer f.Close()
	p := bytes.Repeat([]byte{7}, 128<<10)
	var accepted int64
	refused := 0
	for off := int64(0); off < 64<<20; off += int64(len(p)) {
		n, err := f.WriteAt(ctx, p, off)
		accepted += int64(n)
		if err == nil {
			continue
		}
		if !errors.Is(err, errCommit) {
			t.Fatal(err)
		}
		if n == 0 {
			refused++
		}
		if int64(n) < int64(len(p)) {
			break
		}
	}
	limit := int64(8+4+2) + flushWorkers
	if peak := e.store.peakBuffers.Load(); peak > limit {
		t.Fatalf("held %d buffers while failing, limit %d", peak, limit)
	}
	if refused == 0 {
		t.Fatal("no write was refused")
	}
	e.meta.fail = nil
	mustFlush(t, f)
	g := e.open()
	defer g.Close()
	equalOrReport(t, "accepted data", readAll(t, g, 1<<20), bytes.Repeat([]byte{7}, int(accepted)))
}
