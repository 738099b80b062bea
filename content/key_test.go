package content

import (
	"bytes"
	"context"
	"errors"
	"testing"

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
