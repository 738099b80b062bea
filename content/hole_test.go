package content

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"dsh/vault"
)

// TestHolesCostNothing: a hole that covers whole segments drops their objects, and a file
// grown by fallocate stores nothing until written; both read as zeros.
func TestHolesCostNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 1<<40)
	segSize := int64(2 * vault.ChunkSize)
	f := e.open()
	data := bytes.Repeat([]byte{7}, 3*int(segSize))
	mustWrite(t, f, data, 0)
	mustFlush(t, f)
	if n := len(e.meta.current().Segments); n != 3 {
		t.Fatalf("%d segments stored, want 3", n)
	}
	// The middle segment and a few bytes on each side.
	if err := f.PunchHole(ctx, segSize-10, segSize+20); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, f)
	st := e.meta.current()
	if len(st.Segments) != 2 || st.Segments[0].Index != 0 || st.Segments[1].Index != 2 {
		t.Fatalf("after the punch the stored segments are %+v, want 0 and 2", st.Segments)
	}
	want := bytes.Clone(data)
	clear(want[segSize-10 : 2*segSize+10])
	equalOrReport(t, "after punch", readAll(t, f, 1<<20), want)
	g := e.open()
	equalOrReport(t, "reopened", readAll(t, g, 1<<20), want)
	g.Close()

	// fallocate to 1 GiB, then one byte at its end: one segment stored.
	h := e.open()
	if err := h.Truncate(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Allocate(ctx, 0, 1<<30, false); err != nil {
		t.Fatal(err)
	}
	if h.Size() != 1<<30 {
		t.Fatalf("size %d after allocate", h.Size())
	}
	if err := h.Allocate(ctx, 0, 2<<30, true); err != nil || h.Size() != 1<<30 {
		t.Fatalf("KEEP_SIZE changed the size to %d (%v)", h.Size(), err)
	}
	mustWrite(t, h, []byte{1}, 1<<30-1)
	mustFlush(t, h)
	if n := len(e.meta.current().Segments); n != 1 {
		t.Fatalf("%d segments stored for a 1 GiB file written at its end, want 1", n)
	}
	p := make([]byte, 4)
	if n, err := h.ReadAt(ctx, p, 1<<30-4); err != nil || n != 4 || !bytes.Equal(p, []byte{0, 0, 0, 1}) {
		t.Fatalf("read the end: %v %d %v", p, n, err)
	}
	h.Close()
	f.Close()

	for _, bad := range [][2]int64{{-1, 10}, {0, 0}, {0, -5}} {
		if err := f.PunchHole(ctx, bad[0], bad[1]); !errors.Is(err, ErrInvalidRange) {
			t.Errorf("punch %v: %v, want ErrInvalidRange", bad, err)
		}
	}
	if err := e.open().Allocate(ctx, MaxSize, 10, false); !errors.Is(err, ErrTooLarge) {
		t.Errorf("allocate past MaxSize: %v", err)
	}
}
