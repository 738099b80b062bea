package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestLongLog measures what a long log costs at unseal: DSH_AUDIT_RECORDS=10000000 writes
// that many records (about 2 GB), then times Open after a clean close (the head is at the
// end), Open after a crash (the head at the last segment start: the worst case, a segment
// to read), and a full Verify. Skipped unless asked for; the times go to the test log.
func TestLongLog(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DSH_AUDIT_RECORDS"))
	if n <= 0 {
		t.Skip("set DSH_AUDIT_RECORDS (e.g. 10000000) to measure a long log")
	}
	key := testKey(t, 50)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{Track: "store.epoch"})
	start := time.Now()
	const writers = 16
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				e := Entry{UID: 2101, User: "ccaeabc", Action: "fs.open", Object: fmt.Sprintf("group:s1/cohort/visit-%d.csv", i), Result: "ok", Detail: "read"}
				if _, err := l.Append(context.Background(), e, Buffered); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if _, err := l.Append(context.Background(), Entry{UID: -1, Action: "store.epoch", Object: "7", Result: "ok"}, Durable); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	crash := copyHeadAside(t, dir)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	t.Logf("wrote %d records in %d segments in %v (%.0f records/s)", st.Seq, len(segs), time.Since(start).Round(time.Millisecond), float64(st.Seq)/time.Since(start).Seconds())

	timeOpen := func(what string) {
		t0 := time.Now()
		l := openLog(t, dir, key, Options{Track: "store.epoch"})
		d := time.Since(t0)
		if l.Stats().Seq != st.Seq || l.Tracked() != "7" {
			t.Fatalf("%s: seq %d tracked %q", what, l.Stats().Seq, l.Tracked())
		}
		l.Close()
		t.Logf("Open (%s): %v", what, d.Round(time.Microsecond))
	}
	timeOpen("after a clean close")
	// A crash: the head as it was at the last new segment.
	if err := os.WriteFile(filepath.Join(dir, headName), crash, 0o600); err != nil {
		t.Fatal(err)
	}
	timeOpen("after a crash, head at the last segment's start")
	t0 := time.Now()
	res, err := Verify(dir, key)
	if err != nil || res.Records != st.Seq {
		t.Fatalf("Verify: %+v %v", res, err)
	}
	t.Logf("Verify (whole log): %v", time.Since(t0).Round(time.Millisecond))
}

// copyHeadAside returns the head file as it is now.
func copyHeadAside(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, headName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
