package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"dsh/blob"
	"dsh/vault"
)

// TestForgetAndUnlock: Forget flushes what was written, then drops the key and the
// decrypted read-ahead; every use fails with ErrLocked until Unlock with the right share
// key, and nothing written is lost.
func TestForgetAndUnlock(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 4, 1<<40)
	f := e.open()
	defer f.Close()
	data := bytes.Repeat([]byte("patient record "), 200_000)
	mustWrite(t, f, data, 0)
	// A sequential reader starts read-ahead windows.
	for off := int64(0); off < int64(len(data)); off += 128 << 10 {
		p := make([]byte, 128<<10)
		if _, err := f.ReadAt(ctx, p, off); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, f, []byte("unflushed"), 10)
	if err := f.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.Locked() || f.Dirty() {
		t.Fatalf("after Forget: locked %v, dirty %v", f.Locked(), f.Dirty())
	}
	if n := raBuffers.Load(); n != 0 {
		t.Fatalf("%d read-ahead buffers still hold plaintext", n)
	}
	p := make([]byte, 16)
	if _, err := f.ReadAt(ctx, p, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("read after Forget: %v", err)
	}
	if _, err := f.WriteAt(ctx, p, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("write after Forget: %v", err)
	}
	if err := f.Truncate(ctx, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("truncate after Forget: %v", err)
	}
	if err := f.PunchHole(ctx, 0, 10); !errors.Is(err, ErrLocked) {
		t.Fatalf("punch after Forget: %v", err)
	}
	if err := f.Flush(ctx); err != nil {
		t.Fatalf("flush of a forgotten file: %v", err)
	}
	other, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Unlock(&other); !errors.Is(err, vault.ErrIntegrity) || !f.Locked() {
		t.Fatalf("unlock with another share's key: %v", err)
	}
	if err := f.Unlock(&e.key); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	copy(want[10:], "unflushed")
	equalOrReport(t, "after unlock", readAll(t, f, 1<<20), want)
	// What was flushed by Forget is what a fresh open reads.
	g := e.open()
	equalOrReport(t, "reopened", readAll(t, g, 1<<20), want)
	g.Close()

	// DropReadAhead keeps the key but wipes the windows.
	for off := int64(0); off < int64(len(data)); off += 128 << 10 {
		f.ReadAt(ctx, make([]byte, 128<<10), off)
	}
	f.DropReadAhead()
	if n := raBuffers.Load(); n != 0 || f.Locked() {
		t.Fatalf("after DropReadAhead: %d buffers, locked %v", n, f.Locked())
	}
}

// TestForgetWhileWriterRelieves: a writer that finds the shared budget spent lets go of the
// File while it flushes the largest holder; a Forget (its opener's access ended at that
// moment) may drop the key meanwhile. The writer must then fail with ErrLocked, not go on
// without a key (merging a chunk needs it to decrypt) nor leave data behind that no flush
// of the forgotten File would ever write.
func TestForgetWhileWriterRelieves(t *testing.T) {
	// Into stored content (a merge, which decrypts) and past its end (no decryption).
	for _, off := range []int64{10, 2 * vault.ChunkSize} {
		t.Run(fmt.Sprint(off), func(t *testing.T) { forgetWhileRelieving(t, off) })
	}
}

func forgetWhileRelieving(t *testing.T, off int64) {
	ctx := context.Background()
	bs, err := blob.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	budget := NewBudget(2 * vault.ChunkSize)
	big := newEnvOn(t, bs, 4, 1<<40)
	victim := newEnvOn(t, bs, 4, 1<<40)
	big.store.budget, victim.store.budget = budget, budget

	// The victim has stored content, so that a partial write must merge with it.
	v := victim.open()
	defer v.Close()
	mustWrite(t, v, bytes.Repeat([]byte("v"), 2*vault.ChunkSize), 0)
	mustFlush(t, v)

	// The big file holds the budget; its flush stops in its commit until released.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	st := big.meta.current()
	b, err := big.store.Open(big.share, &big.key, big.id, big.wkey, st.Size, st.Segments, func(ctx context.Context, s Staged) error {
		once.Do(func() { close(entered) })
		<-release
		return big.meta.commit(ctx, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mustWrite(t, b, bytes.Repeat([]byte("b"), 3*vault.ChunkSize), 0)
	if !budget.over() {
		t.Fatalf("budget not spent: %d held", budget.Held())
	}

	done := make(chan error, 1)
	go func() {
		_, err := v.WriteAt(ctx, []byte("changed"), off)
		done <- err
	}()
	<-entered // the writer is relieving the budget, without the victim's lock
	if err := v.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	err = <-done
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("write across a Forget: %v (dirty %v)", err, v.Dirty())
	}
	if v.Dirty() {
		t.Fatal("the forgotten File holds data no flush will write")
	}
}
