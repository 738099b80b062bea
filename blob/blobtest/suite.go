// Package blobtest checks that a blob.Store keeps the contract callers rely on. Every
// implementation runs the same suite, so the filesystem never has to care which one it is
// given.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"dsh/blob"
)

// Run runs the conformance suite. newStore must return an empty store that stays usable
// until the test given to it ends; it is called once per subtest, and subtests run in
// parallel. IDs come from blob.NewIDFor, so a store that reserves IDs is checked on them.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, blob.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"ReadAtRanges", testReadAtRanges},
		{"ReadAtEnd", testReadAtEnd},
		{"ConcurrentReadAt", testConcurrentReadAt},
		{"Abort", testAbort},
		{"PendingInvisible", testPendingInvisible},
		{"CommitTwice", testCommitTwice},
		{"CreateExisting", testCreateExisting},
		{"RacingCommits", testRacingCommits},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStops", testListStops},
		{"ModTimeIsCommitTime", testModTime},
		{"ConcurrentCreates", testConcurrentCreates},
		{"CanceledContext", testCanceledContext},
		{"ParseID", testParseID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// randomBytes returns reproducible data of length n, different for each seed, so that a
// mix-up between objects shows as a mismatch rather than passing by coincidence.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// put writes data in uneven pieces, as a caller flushing its own buffers would, and
// commits.
func put(t *testing.T, s blob.Store, id blob.ID, data []byte) {
	t.Helper()
	if err := tryPut(s, id, data); err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
}

func tryPut(s blob.Store, id blob.ID, data []byte) error {
	ctx := context.Background()
	p, err := s.Create(ctx, id)
	if err != nil {
		return err
	}
	defer p.Abort()
	if err := writeUneven(p, data); err != nil {
		return err
	}
	return p.Commit(ctx)
}

func writeUneven(w io.Writer, data []byte) error {
	for i, step := 0, 1; len(data) > 0; i++ {
		n := min(step, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		step = step*3 + i // 1, 3, 10, 32, ... up to whole MiBs
	}
	return nil
}

// get reads a whole object with one ReadAt and checks Size against Stat.
func get(t *testing.T, s blob.Store, id blob.ID) []byte {
	t.Helper()
	ctx := context.Background()
	o, err := s.Open(ctx, id)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	defer o.Close()
	info, err := s.Stat(ctx, id)
	if err != nil {
		t.Fatalf("stat %s: %v", id, err)
	}
	if info.ID != id || info.Size != o.Size() {
		t.Fatalf("stat %s = {%s, %d}, object size %d", id, info.ID, info.Size, o.Size())
	}
	b := make([]byte, o.Size())
	n, err := o.ReadAt(b, 0)
	if n != len(b) || (err != nil && err != io.EOF) {
		t.Fatalf("read %s: got %d of %d bytes, err %v", id, n, len(b), err)
	}
	return b
}

func mustBeMissing(t *testing.T, s blob.Store, id blob.ID) {
	t.Helper()
	ctx := context.Background()
	if o, err := s.Open(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		if err == nil {
			o.Close()
		}
		t.Errorf("open %s: err %v, want ErrNotFound", id, err)
	}
	if _, err := s.Stat(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("stat %s: err %v, want ErrNotFound", id, err)
	}
	if _, ok := list(t, s)[id]; ok {
		t.Errorf("list shows %s", id)
	}
}

func list(t *testing.T, s blob.Store) map[blob.ID]blob.Info {
	t.Helper()
	m := make(map[blob.ID]blob.Info)
	err := s.List(context.Background(), func(i blob.Info) error {
		if _, dup := m[i.ID]; dup {
			return fmt.Errorf("%s listed twice", i.ID)
		}
		m[i.ID] = i
		return nil
	})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return m
}

func testRoundTrip(t *testing.T, s blob.Store) {
	// 256 KiB ± 1 straddle the usual size of a write buffer.
	for i, size := range []int{0, 1, 1000, 256<<10 - 1, 256 << 10, 256<<10 + 1, 1 << 20} {
		id := blob.NewIDFor(s)
		want := randomBytes(uint64(i), size)
		put(t, s, id, want)
		if got := get(t, s, id); !bytes.Equal(got, want) {
			t.Errorf("size %d: read back differs", size)
		}
	}
}

func testReadAtRanges(t *testing.T, s blob.Store) {
	id := blob.NewIDFor(s)
	want := randomBytes(1, 1<<20)
	put(t, s, id, want)
	o, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	r := rand.New(rand.NewPCG(2, 2))
	for range 300 {
		off := r.IntN(len(want))
		n := r.IntN(min(len(want)-off, 200<<10) + 1)
		b := make([]byte, n)
		got, err := o.ReadAt(b, int64(off))
		if got != n || (err != nil && !(err == io.EOF && off+n == len(want))) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d, %v", n, off, got, err)
		}
		if !bytes.Equal(b, want[off:off+n]) {
			t.Fatalf("ReadAt(%d bytes, %d): wrong data", n, off)
		}
	}
}

func testReadAtEnd(t *testing.T, s blob.Store) {
	id := blob.NewIDFor(s)
	want := randomBytes(3, 1000)
	put(t, s, id, want)
	o, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// The io.ReaderAt contract: short reads must come with an error, and at the end that
	// error is io.EOF itself, since io.SectionReader and friends compare with ==.
	for _, tc := range []struct {
		off, len, want int
	}{
		{990, 100, 10},
		{999, 2, 1},
		{1000, 1, 0},
		{1001, 10, 0},
		{1 << 40, 10, 0},
	} {
		b := make([]byte, tc.len)
		n, err := o.ReadAt(b, int64(tc.off))
		if n != tc.want || err != io.EOF {
			t.Errorf("ReadAt(%d bytes, %d) = %d, %v; want %d, io.EOF", tc.len, tc.off, n, err, tc.want)
		}
		if !bytes.Equal(b[:n], want[min(tc.off, len(want)):][:n]) {
			t.Errorf("ReadAt(%d bytes, %d): wrong data", tc.len, tc.off)
		}
	}
	if _, err := o.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("ReadAt at a negative offset succeeded")
	}
}

func testConcurrentReadAt(t *testing.T, s blob.Store) {
	id := blob.NewIDFor(s)
	want := randomBytes(4, 1<<20)
	put(t, s, id, want)
	o, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 5))
			b := make([]byte, 4096)
			for range 100 {
				off := r.IntN(len(want) - len(b))
				if n, err := o.ReadAt(b, int64(off)); n != len(b) || err != nil {
					t.Errorf("ReadAt(%d) = %d, %v", off, n, err)
					return
				}
				if !bytes.Equal(b, want[off:off+len(b)]) {
					t.Errorf("ReadAt(%d): wrong data", off)
					return
				}
			}
		})
	}
	wg.Wait()
}

func testAbort(t *testing.T, s blob.Store) {
	ctx := context.Background()
	id := blob.NewIDFor(s)
	p, err := s.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeUneven(p, randomBytes(5, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(); err != nil {
		t.Fatalf("abort: %v", err)
	}
	mustBeMissing(t, s, id)
	if _, err := p.Write([]byte("x")); !errors.Is(err, blob.ErrFinished) {
		t.Errorf("write after abort: err %v, want ErrFinished", err)
	}
	if err := p.Commit(ctx); !errors.Is(err, blob.ErrFinished) {
		t.Errorf("commit after abort: err %v, want ErrFinished", err)
	}
	mustBeMissing(t, s, id)
	if err := p.Abort(); err != nil {
		t.Errorf("second abort: %v", err)
	}
	// An aborted ID is not burned.
	want := randomBytes(6, 100)
	put(t, s, id, want)
	if got := get(t, s, id); !bytes.Equal(got, want) {
		t.Error("object written after an abort of the same ID differs")
	}
}

func testPendingInvisible(t *testing.T, s blob.Store) {
	ctx := context.Background()
	id := blob.NewIDFor(s)
	p, err := s.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	want := randomBytes(7, 1<<20+17)
	if err := writeUneven(p, want); err != nil {
		t.Fatal(err)
	}
	mustBeMissing(t, s, id)
	if err := p.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if got := get(t, s, id); !bytes.Equal(got, want) {
		t.Error("read back differs")
	}
	if info, ok := list(t, s)[id]; !ok || info.Size != int64(len(want)) {
		t.Errorf("list after commit: %+v, %v", info, ok)
	}
}

func testCommitTwice(t *testing.T, s blob.Store) {
	ctx := context.Background()
	id := blob.NewIDFor(s)
	want := randomBytes(8, 5000)
	p, err := s.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write([]byte("more")); !errors.Is(err, blob.ErrFinished) {
		t.Errorf("write after commit: err %v, want ErrFinished", err)
	}
	if err := p.Commit(ctx); !errors.Is(err, blob.ErrFinished) {
		t.Errorf("second commit: err %v, want ErrFinished", err)
	}
	if err := p.Abort(); err != nil {
		t.Errorf("abort after commit: %v", err)
	}
	if got := get(t, s, id); !bytes.Equal(got, want) {
		t.Error("object changed after a second commit or an abort")
	}
}

func testCreateExisting(t *testing.T, s blob.Store) {
	id := blob.NewIDFor(s)
	want := randomBytes(9, 3000)
	put(t, s, id, want)
	// The store may refuse at Create or at Commit; either way the clash is ErrExists and
	// the first object stays.
	err := tryPut(s, id, randomBytes(10, 2000))
	if !errors.Is(err, blob.ErrExists) {
		t.Errorf("second put of %s: err %v, want ErrExists", id, err)
	}
	if got := get(t, s, id); !bytes.Equal(got, want) {
		t.Error("existing object was changed")
	}
	if n := len(list(t, s)); n != 1 {
		t.Errorf("list shows %d objects, want 1", n)
	}
}

func testRacingCommits(t *testing.T, s blob.Store) {
	ctx := context.Background()
	id := blob.NewIDFor(s)
	first, second := randomBytes(11, 4000), randomBytes(12, 6000)
	p1, err := s.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Abort()
	p2, err := s.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Abort()
	if _, err := p1.Write(first); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Write(second); err != nil {
		t.Fatal(err)
	}
	if err := p1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p2.Commit(ctx); !errors.Is(err, blob.ErrExists) {
		t.Errorf("commit of the second writer: err %v, want ErrExists", err)
	}
	if got := get(t, s, id); !bytes.Equal(got, first) {
		t.Error("the second writer replaced the first object")
	}
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	keep, gone := blob.NewIDFor(s), blob.NewIDFor(s)
	put(t, s, keep, randomBytes(13, 10))
	put(t, s, gone, randomBytes(14, 10))
	if err := s.Delete(ctx, gone); err != nil {
		t.Fatalf("delete: %v", err)
	}
	mustBeMissing(t, s, gone)
	if err := s.Delete(ctx, gone); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("second delete: err %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, blob.NewIDFor(s)); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("delete of an unknown ID: err %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, keep); err != nil {
		t.Errorf("the other object is gone: %v", err)
	}
}

func testList(t *testing.T, s blob.Store) {
	if n := len(list(t, s)); n != 0 {
		t.Fatalf("a new store lists %d objects", n)
	}
	ctx := context.Background()
	want := make(map[blob.ID]int64)
	for i := range 50 {
		id := blob.NewIDFor(s)
		size := i * 37
		put(t, s, id, randomBytes(uint64(i), size))
		want[id] = int64(size)
	}
	// Neither aborted nor pending objects may show up.
	p, err := s.Create(ctx, blob.NewIDFor(s))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	p.Write([]byte("pending"))
	a, err := s.Create(ctx, blob.NewIDFor(s))
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("aborted"))
	a.Abort()

	got := list(t, s)
	if len(got) != len(want) {
		t.Errorf("list shows %d objects, want %d", len(got), len(want))
	}
	for id, size := range want {
		info, ok := got[id]
		switch {
		case !ok:
			t.Errorf("list misses %s", id)
		case info.ID != id || info.Size != size:
			t.Errorf("list: %s = {%s, %d}, want size %d", id, info.ID, info.Size, size)
		}
	}
}

func testListStops(t *testing.T, s blob.Store) {
	for i := range 5 {
		put(t, s, blob.NewIDFor(s), randomBytes(uint64(i), 1))
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(context.Background(), func(blob.Info) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("list with a failing callback: err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func testModTime(t *testing.T, s blob.Store) {
	ctx := context.Background()
	id := blob.NewIDFor(s)
	p, err := s.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	// Large enough to get past any sensible write buffer, so that Commit itself need not
	// write anything.
	if _, err := p.Write(randomBytes(15, 4<<20)); err != nil {
		t.Fatal(err)
	}
	// A writer that idles before committing must not yield an object that already looks
	// old to the collector. Allow some skew for stores with their own clock.
	time.Sleep(1100 * time.Millisecond)
	const skew = 500 * time.Millisecond
	start := time.Now()
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	info, err := s.Stat(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.ModTime.Before(start.Add(-skew)) || info.ModTime.After(end.Add(skew)) {
		t.Errorf("ModTime %v outside the commit [%v, %v]", info.ModTime, start, end)
	}
	if listed := list(t, s)[id]; !listed.ModTime.Equal(info.ModTime) {
		t.Errorf("List ModTime %v, Stat ModTime %v", listed.ModTime, info.ModTime)
	}
}

func testConcurrentCreates(t *testing.T, s blob.Store) {
	const writers, each = 32, 8
	ids := make([][each]blob.ID, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				id := blob.NewIDFor(s)
				ids[g][i] = id
				if err := tryPut(s, id, randomBytes(uint64(g*each+i), 1000+g*100+i)); err != nil {
					t.Errorf("put %s: %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := list(t, s)
	if len(got) != writers*each {
		t.Errorf("list shows %d objects, want %d", len(got), writers*each)
	}
	for g := range writers {
		for i, id := range ids[g] {
			if b := get(t, s, id); !bytes.Equal(b, randomBytes(uint64(g*each+i), 1000+g*100+i)) {
				t.Errorf("object %s differs", id)
			}
		}
	}
}

func testCanceledContext(t *testing.T, s blob.Store) {
	id := blob.NewIDFor(s)
	put(t, s, id, []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Create(ctx, blob.NewIDFor(s)); !errors.Is(err, context.Canceled) {
		t.Errorf("create: err %v, want context.Canceled", err)
	}
	if _, err := s.Open(ctx, id); !errors.Is(err, context.Canceled) {
		t.Errorf("open: err %v, want context.Canceled", err)
	}
	if _, err := s.Stat(ctx, id); !errors.Is(err, context.Canceled) {
		t.Errorf("stat: err %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, id); !errors.Is(err, context.Canceled) {
		t.Errorf("delete: err %v, want context.Canceled", err)
	}
	if err := s.List(ctx, func(blob.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("list: err %v, want context.Canceled", err)
	}
	fresh := blob.NewIDFor(s)
	p, err := s.Create(context.Background(), fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	p.Write([]byte("never"))
	if err := p.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("commit: err %v, want context.Canceled", err)
	}
	mustBeMissing(t, s, fresh)
	if _, err := s.Stat(context.Background(), id); err != nil {
		t.Errorf("object gone after a canceled delete: %v", err)
	}
}

func testParseID(t *testing.T, _ blob.Store) {
	id := blob.NewID()
	s := id.String()
	if len(s) != 32 || s != fmt.Sprintf("%x", id[:]) {
		t.Fatalf("String() = %q", s)
	}
	if got, err := blob.ParseID(s); err != nil || got != id {
		t.Fatalf("ParseID(%q) = %s, %v", s, got, err)
	}
	if blob.NewID() == id {
		t.Error("NewID returned the same ID twice")
	}
	bad := []string{
		"", "../x", "x", s[:31], s + "0", s[:30] + "/x",
		"../../../../../../../../../../ab", // 32 characters
		"0123456789ABCDEF0123456789abcdef",
		"0123456789abcdeg0123456789abcdef",
		" " + s[1:], s[:31] + "\n", s[:16] + "\x00" + s[17:],
		"0x23456789abcdef0123456789abcdef",
	}
	for _, b := range bad {
		if _, err := blob.ParseID(b); !errors.Is(err, blob.ErrInvalidID) {
			t.Errorf("ParseID(%q): err %v, want ErrInvalidID", b, err)
		}
	}
}
