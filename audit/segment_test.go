package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock gives record times a minute apart.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Minute)
	return c.t
}

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// smallSegments writes n records into a log whose segments hold a few records each, one a
// minute from t0 (record i at t0 + i minutes), users alternating alice/bob, actions
// fs.open, fs.create, share.add in turn.
func smallSegments(t *testing.T, dir string, n int) *Log {
	t.Helper()
	clk := &fakeClock{t: t0}
	l := openLog(t, dir, testKey(t, 40), Options{SegmentSize: 700, Now: clk.now})
	for i := range n {
		e := Entry{UID: int64(i), User: []string{"alice", "bob"}[i%2], Action: []string{"fs.open", "fs.create", "share.add"}[i%3],
			Object: fmt.Sprintf("S:s1/f%d", i), Result: "ok"}
		if _, err := l.Append(context.Background(), e, Buffered); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range segs {
		names = append(names, filepath.Base(s.path))
	}
	return names
}

func TestSegments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	key := testKey(t, 40)
	l := smallSegments(t, dir, 40)
	st := l.Stats()
	if st.Segment <= 1 || st.Seq != 40 {
		t.Fatalf("after 40 records in 700-byte segments: %+v", st)
	}
	if res, err := l.Verify(); err != nil || res.Records != 40 || res.Segments < 5 {
		t.Fatalf("live verify: %+v %v", res, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names := segmentFiles(t, dir)
	if names[0] != "audit.log" || !strings.HasPrefix(names[1], "audit-0000") {
		t.Fatalf("segment names %v", names)
	}
	res, err := Verify(dir, key)
	if err != nil || res.Records != 40 || res.Segments != len(names) {
		t.Fatalf("verify: %+v %v", res, err)
	}
	// Reopened, the log goes on in its last segment.
	l = openLog(t, dir, key, Options{SegmentSize: 700})
	r, err := l.Append(context.Background(), entry(41), Durable)
	if err != nil || r.Seq != 41 {
		t.Fatalf("append after reopen: %d %v", r.Seq, err)
	}
	l.Close()
	names = segmentFiles(t, dir)

	// A segment removed from the middle, or renamed, is named by Verify.
	mid := filepath.Join(dir, names[2])
	b, err := os.ReadFile(mid)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(mid)
	_, err = Verify(dir, key)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Reason != ReasonGap {
		t.Fatalf("segment removed: %v", err)
	}
	if ce.File != names[3] {
		t.Fatalf("segment removed: the error names %s, want %s", ce.File, names[3])
	}
	first, _ := parseSegName(names[2])
	os.WriteFile(filepath.Join(dir, segName(first+1)), b, 0o600)
	if _, err := Verify(dir, key); !errors.Is(err, ErrBroken) {
		t.Fatalf("segment renamed: %v", err)
	}
	os.Remove(filepath.Join(dir, segName(first+1)))
	os.WriteFile(mid, b, 0o600)
	if _, err := Verify(dir, key); err != nil {
		t.Fatalf("put back: %v", err)
	}
	// The last segment removed: the head says how far the log went.
	last := filepath.Join(dir, names[len(names)-1])
	b, _ = os.ReadFile(last)
	os.Remove(last)
	if _, err := Verify(dir, key); !errors.As(err, &ce) || ce.Reason != ReasonTruncated {
		t.Fatalf("last segment removed: %v", err)
	}
	if _, err := Open(dir, key, Options{}); !errors.Is(err, ErrBroken) {
		t.Fatalf("Open without the last segment: %v", err)
	}
	os.WriteFile(last, b, 0o600)
	// A partial frame at the end of a segment that is not the last is no crash.
	b, _ = os.ReadFile(mid)
	os.WriteFile(mid, b[:len(b)-10], 0o600)
	if _, err := Verify(dir, key); !errors.As(err, &ce) || ce.Reason != ReasonFrame || ce.File != filepath.Base(mid) {
		t.Fatalf("partial frame in a middle segment: %v", err)
	}
}

// Open checks what follows its head's record and that record, nothing before: a later
// Open reads at most what was written since the last one (Verify reads everything).
func TestOpenChecksFromItsHead(t *testing.T) {
	key := testKey(t, 41)
	dir, _ := writeLog(t, key, 6)
	orig := readLogFile(t, dir)
	offs := frames(t, orig)

	b := append([]byte{}, orig...)
	b[offs[2]+lenSize+nonceSize+5] ^= 1 // record 3, before the head's record
	writeLogFile(t, dir, b)
	if _, err := Verify(dir, key); !errors.Is(err, ErrBroken) {
		t.Fatalf("Verify of a flipped record 3: %v", err)
	}
	l, err := Open(dir, key, Options{})
	if err != nil {
		t.Fatalf("Open reads only from its head's record on: %v", err)
	}
	l.Close()

	b = append([]byte{}, orig...)
	b[offs[5]+lenSize+nonceSize+5] ^= 1 // record 6, the head's
	writeLogFile(t, dir, b)
	mustRefuseAsIs(t, "the head's record flipped", dir, key, 6)

	// Records written after the head, then a crash: Open checks them.
	writeLogFile(t, dir, orig)
	l = openLog(t, dir, key, Options{})
	appendN(t, l, 3, Durable)
	crash := copyDir(t, dir)
	l.Close()
	c := readLogFile(t, crash)
	offs = frames(t, c)
	c[offs[7]+lenSize+nonceSize+5] ^= 1 // record 8
	writeLogFile(t, crash, c)
	mustRefuseAsIs(t, "record 8 flipped after a crash", crash, key, 8)
}

// A torn tail cut away at Open is kept aside, still sealed.
func TestTornTailKept(t *testing.T) {
	key := testKey(t, 42)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{})
	appendN(t, l, 3, Durable)
	crash := copyDir(t, dir)
	l.Close()
	full := readLogFile(t, crash)
	offs := frames(t, full)
	writeLogFile(t, crash, full[:offs[2]+20]) // record 3 half written
	l = openLog(t, crash, key, Options{})
	defer l.Close()
	if !l.Recovered() || l.Stats().Seq != 2 {
		t.Fatalf("recovered %v, seq %d", l.Recovered(), l.Stats().Seq)
	}
	kept, err := os.ReadFile(filepath.Join(crash, fmt.Sprintf("torn-1-%d", offs[2])))
	if err != nil || string(kept) != string(full[offs[2]:offs[2]+20]) {
		t.Fatalf("torn bytes not kept: %v", err)
	}
}

func TestScan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	key := testKey(t, 40)
	l := smallSegments(t, dir, 200)
	at := func(i int) time.Time { return t0.Add(time.Duration(i+1) * time.Minute) } // record i+1
	cases := []struct {
		name string
		q    Query
		want func(i int) bool // by record index (seq-1)
	}{
		{"all", Query{}, func(int) bool { return true }},
		{"since", Query{Since: at(150)}, func(i int) bool { return i >= 150 }},
		{"until", Query{Until: at(20)}, func(i int) bool { return i < 20 }},
		{"window", Query{Since: at(90), Until: at(120)}, func(i int) bool { return i >= 90 && i < 120 }},
		{"user", Query{User: "bob"}, func(i int) bool { return i%2 == 1 }},
		{"action", Query{Action: "share.add"}, func(i int) bool { return i%3 == 2 }},
		{"action prefix", Query{Action: "fs.*"}, func(i int) bool { return i%3 != 2 }},
		{"limit", Query{Since: at(100), Limit: 7}, func(i int) bool { return i >= 100 && i < 107 }},
		{"nothing", Query{User: "carol"}, func(int) bool { return false }},
	}
	check := func(r *Reader, how string) {
		for _, tc := range cases {
			var got []uint64
			if err := r.Scan(context.Background(), tc.q, func(rec Record) error {
				got = append(got, rec.Seq)
				return nil
			}); err != nil {
				t.Fatalf("%s %s: %v", how, tc.name, err)
			}
			var want []uint64
			for i := range 200 {
				if tc.want(i) {
					want = append(want, uint64(i+1))
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: got %v\nwant %v", how, tc.name, got, want)
			}
		}
	}
	r, err := l.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	// The Reader does not hold the Log: it closes, appends stop, and the Reader goes on
	// to where the log was when it was made.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check(r, "live")
	r.Close()
	if !r.key.IsZero() {
		t.Fatal("Close left the Reader's key")
	}
	if err := r.Scan(context.Background(), Query{}, func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close: %v", err)
	}
	r, err = NewReader(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check(r, "offline")
	// A scan from a later segment skips the earlier ones: a damaged early segment does not
	// stop it (Verify finds that).
	segs, _ := listSegments(dir)
	b, _ := os.ReadFile(segs[1].path)
	b[len(b)/2] ^= 1
	os.WriteFile(segs[1].path, b, 0o600)
	n := 0
	if err := r.Scan(context.Background(), Query{Since: at(199).Add(-scanSlack)}, func(Record) error { n++; return nil }); err != nil || n == 0 {
		t.Fatalf("scan of the end past a damaged early segment: %d records, %v", n, err)
	}
	if err := r.Scan(context.Background(), Query{}, func(Record) error { return nil }); !errors.Is(err, ErrBroken) {
		t.Fatalf("scan through the damaged segment: %v", err)
	}
	// A cancelled context stops a scan.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Scan(ctx, Query{Since: at(150)}, func(Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled scan: %v", err)
	}
}

// The log keeps its tracked action's latest record in view across a clean close (in the
// head) and across a crash (found by the walk from the head).
func TestTracked(t *testing.T) {
	key := testKey(t, 43)
	dir := filepath.Join(t.TempDir(), "audit")
	opts := Options{Track: "store.epoch", SegmentSize: 400}
	l := openLog(t, dir, key, opts)
	mark := func(l *Log, n string) {
		if _, err := l.Append(context.Background(), Entry{UID: -1, Action: "store.epoch", Object: n, Result: "ok"}, Durable); err != nil {
			t.Fatal(err)
		}
	}
	mark(l, "1")
	appendN(t, l, 10, Buffered)
	mark(l, "2")
	appendN(t, l, 10, Buffered)
	if got := l.Tracked(); got != "2" {
		t.Fatalf("Tracked %q", got)
	}
	l.Close()
	l = openLog(t, dir, key, opts)
	if got := l.Tracked(); got != "2" {
		t.Fatalf("after a clean close: Tracked %q", got)
	}
	appendN(t, l, 10, Buffered)
	mark(l, "3")
	appendN(t, l, 3, Durable)
	crash := copyDir(t, dir)
	l.Close()
	os.Remove(filepath.Join(crash, headName))
	l = openLog(t, crash, key, opts)
	defer l.Close()
	if got := l.Tracked(); got != "3" {
		t.Fatalf("after a crash and no head: Tracked %q", got)
	}
}
