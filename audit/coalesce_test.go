package audit

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowWindow keeps the Coalescer's own timer out of a test that flushes by hand.
const slowWindow = time.Hour

func refused(uid int64, action string) Entry {
	return Entry{UID: uid, User: "mallory", Action: action, Object: "alice", Result: "denied", Detail: "no such user"}
}

// A storm of 5,000 refusals from one uid becomes Burst single records and one summary in a
// real log, and the summary says how many it stands for, by action.
func TestCoalescerStormOnRealLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	key := testKey(t, 7)
	l := openLog(t, dir, key, Options{})
	var counted int
	c := NewCoalescer(l, CoalesceOptions{Window: slowWindow, Burst: 10, OnCoalesced: func(n int) { counted += n }})
	bg := context.Background()
	for i := 0; i < 5000; i++ {
		action := "token.login.token"
		if i%5 == 0 {
			action = "operator.status"
		}
		if _, err := c.Append(bg, refused(1000, action), Buffered); err != nil {
			t.Fatal(err)
		}
	}
	// What is never coalesced: a success, an error, a Durable refusal.
	for _, e := range []Entry{
		{UID: 1000, Action: "token.login.token", Result: "ok"},
		{UID: 1000, Action: "token.lockout", Result: "ok", Detail: "until then"},
		{UID: 1000, Action: "share.add", Result: "error", Detail: "internal error"},
	} {
		if _, err := c.Append(bg, e, Buffered); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Append(bg, refused(1000, "fs.open"), Durable); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(bg); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var recs []Record
	if err := Read(dir, key, time.Time{}, func(r Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10+4+1 {
		t.Fatalf("%d records, want 10 single refusals, 4 passed through and 1 summary", len(recs))
	}
	sum := recs[len(recs)-1]
	if sum.Action != SummaryAction || sum.UID != 1000 || sum.User != "mallory" || sum.Result != "denied" {
		t.Fatalf("summary record: %+v", sum.Entry)
	}
	if !strings.HasPrefix(sum.Detail, "4990 refusals for uid 1000 in ") || !strings.Contains(sum.Detail, "token.login.token 3992, operator.status 998") {
		t.Fatalf("summary detail %q", sum.Detail)
	}
	if counted != 4990 {
		t.Fatalf("OnCoalesced told %d, want 4990", counted)
	}
	if v, err := Verify(dir, key); err != nil || v.Records != uint64(len(recs)) {
		t.Fatalf("chain after coalescing: %+v %v", v, err)
	}
}

// recorder keeps what reaches it; fail makes it refuse.
type recorder struct {
	mu   sync.Mutex
	got  []Entry
	fail bool
}

func (r *recorder) Append(_ context.Context, e Entry, _ Durability) (Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return Record{}, errors.New("disk full")
	}
	r.got = append(r.got, e)
	return Record{}, nil
}

func (r *recorder) entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Entry(nil), r.got...)
}

// Each window gives every uid a new allowance; uids are counted apart; a summary that
// could not be written is kept for the next window, not lost.
func TestCoalescerWindowsAndFailures(t *testing.T) {
	rec := &recorder{}
	c := NewCoalescer(rec, CoalesceOptions{Window: slowWindow, Burst: 2})
	defer c.Close(context.Background())
	bg := context.Background()
	for i := 0; i < 5; i++ {
		c.Append(bg, refused(1, "a"), Buffered)
		c.Append(bg, refused(2, "b"), Buffered)
	}
	if n := len(rec.entries()); n != 4 {
		t.Fatalf("%d single records, want 2 per uid", n)
	}
	rec.mu.Lock()
	rec.fail = true
	rec.mu.Unlock()
	if err := c.Flush(bg); err == nil {
		t.Fatal("Flush into a failing log reported success")
	}
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	// New window: two more single records each, then counting again.
	for i := 0; i < 3; i++ {
		c.Append(bg, refused(1, "a"), Buffered)
	}
	if err := c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	got := rec.entries()
	var summaries []string
	for _, e := range got {
		if e.Action == SummaryAction {
			summaries = append(summaries, fmt.Sprintf("%d:%s", e.UID, strings.SplitN(e.Detail, " ", 2)[0]))
		}
	}
	// uid 1: 3 left out in the first window (kept) + 1 in the second; uid 2: 3.
	if fmt.Sprint(summaries) != "[1:4 2:3]" {
		t.Fatalf("summaries %v, want [1:4 2:3]", summaries)
	}
	if n := len(got) - len(summaries); n != 6 {
		t.Fatalf("%d single records, want 6", n)
	}
}

// Past MaxUIDs, refusals of further uids are counted together under uid -1, so the
// Coalescer's memory stays bounded however many uids refuse.
func TestCoalescerBoundedUIDs(t *testing.T) {
	rec := &recorder{}
	c := NewCoalescer(rec, CoalesceOptions{Window: slowWindow, Burst: 1, MaxUIDs: 3})
	bg := context.Background()
	for uid := int64(0); uid < 100; uid++ {
		c.Append(bg, refused(uid, "x"), Buffered)
	}
	if len(c.uids) != 3 {
		t.Fatalf("%d uids tracked, want 3", len(c.uids))
	}
	if err := c.Close(bg); err != nil {
		t.Fatal(err)
	}
	got := rec.entries()
	last := got[len(got)-1]
	if len(got) != 4 || last.UID != othersUID || !strings.HasPrefix(last.Detail, "97 refusals for further uids") {
		t.Fatalf("%d records, last %+v", len(got), last)
	}
}

// The timer writes summaries by itself when a window ends.
func TestCoalescerTimer(t *testing.T) {
	rec := &recorder{}
	c := NewCoalescer(rec, CoalesceOptions{Window: 20 * time.Millisecond, Burst: 1})
	defer c.Close(context.Background())
	for i := 0; i < 3; i++ {
		c.Append(context.Background(), refused(5, "x"), Buffered)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		es := rec.entries()
		if len(es) == 2 && es[1].Action == SummaryAction {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no summary written by the timer: %+v", es)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
