package audit

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestAppendVerifyRead(t *testing.T) {
	key := testKey(t, 1)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{Now: fixedClock()})
	const n = 200
	recs := appendN(t, l, n, Buffered)
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		if i > 0 && r.Prev != recs[i-1].Hash() {
			t.Fatalf("record %d does not hold the hash of record %d", r.Seq, i)
		}
		if r.Time.Location() != time.UTC {
			t.Fatalf("record time not UTC: %v", r.Time)
		}
	}
	if recs[0].Prev != [32]byte{} {
		t.Fatal("record 1 must hold the zero hash")
	}
	if st := l.Stats(); st.Seq != n || st.Hash != recs[n-1].Hash() {
		t.Fatalf("stats: %+v", st)
	}
	// The open log verifies while it is open, and so does a read-only walk beside it.
	if res, err := l.Verify(); err != nil || res.Records != n {
		t.Fatalf("Log.Verify: %+v %v", res, err)
	}
	if res, err := Verify(dir, key); err != nil || res.Records != n {
		t.Fatalf("Verify while open: %+v %v", res, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Verify(dir, key)
	if err != nil || res.Records != n || res.LastHash != recs[n-1].Hash() || res.Warning != "" {
		t.Fatalf("Verify after close: %+v %v", res, err)
	}
	var got []Record
	if err := Read(dir, key, time.Time{}, func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("Read gave %d records", len(got))
	}
	for i := range got {
		if got[i] != recs[i] {
			t.Fatalf("record %d reads back as %+v, was %+v", i+1, got[i], recs[i])
		}
	}
	// since skips earlier records, and an error from fn stops the walk.
	since := recs[150].Time
	var first uint64
	stop := errors.New("stop")
	count := 0
	err = Read(dir, key, since, func(r Record) error {
		if first == 0 {
			first = r.Seq
		}
		count++
		if count == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || first != 151 || count != 10 {
		t.Fatalf("Read since: first %d, count %d, err %v", first, count, err)
	}
}

func TestReopenContinuesTheChain(t *testing.T) {
	key := testKey(t, 2)
	dir, recs := writeLog(t, key, 5)
	l := openLog(t, dir, key, Options{})
	if l.Recovered() {
		t.Fatal("a cleanly closed log needs no recovery")
	}
	r, err := l.Append(context.Background(), entry(9), Durable)
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 6 || r.Prev != recs[4].Hash() {
		t.Fatalf("after reopen: seq %d, prev matches %v", r.Seq, r.Prev == recs[4].Hash())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := Verify(dir, key); err != nil || res.Records != 6 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	key := testKey(t, 3)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{FlushInterval: 5 * time.Millisecond})
	var syncs atomic.Int64
	setHooks(l, nil, func() error { syncs.Add(1); return l.f.Sync() })
	const workers, each = 50, 40
	var wg sync.WaitGroup
	seqs := make([][]uint64, workers)
	stopVerify := make(chan struct{})
	verifyErr := make(chan error, 1)
	go func() {
		// Verify and Read keep working while the writers append.
		for {
			select {
			case <-stopVerify:
				verifyErr <- nil
				return
			default:
			}
			if _, err := l.Verify(); err != nil {
				verifyErr <- err
				return
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				d := Buffered
				if i%10 == 0 {
					d = Durable
				}
				r, err := l.Append(context.Background(), entry(w*each+i), d)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				seqs[w] = append(seqs[w], r.Seq)
			}
		})
	}
	wg.Wait()
	close(stopVerify)
	if err := <-verifyErr; err != nil {
		t.Fatalf("Verify during appends: %v", err)
	}
	seen := make([]bool, workers*each+1)
	for w, s := range seqs {
		for i, q := range s {
			if q == 0 || q > workers*each || seen[q] {
				t.Fatalf("seq %d given twice or out of range", q)
			}
			seen[q] = true
			if i > 0 && q <= s[i-1] {
				t.Fatalf("worker %d saw seq %d after %d", w, q, s[i-1])
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Verify(dir, key)
	if err != nil || res.Records != workers*each {
		t.Fatalf("%+v %v", res, err)
	}
	// Group commit: 200 Durable appends among 2000 must not cost one fsync each.
	t.Logf("%d records, %d fsyncs", workers*each, syncs.Load())
	if syncs.Load() >= workers*each {
		t.Fatalf("%d fsyncs for %d records: no group commit", syncs.Load(), workers*each)
	}
}

func TestDurableFsyncsBeforeReturning(t *testing.T) {
	key := testKey(t, 4)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{FlushInterval: time.Hour})
	var syncs atomic.Int64
	setHooks(l, nil, func() error { syncs.Add(1); return l.f.Sync() })
	ctx := context.Background()
	if _, err := l.Append(ctx, entry(1), Buffered); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() != 0 {
		t.Fatal("a Buffered append fsync'd at once")
	}
	if st := l.Stats(); st.Seq != 1 || st.SyncedSeq != 0 {
		t.Fatalf("after Buffered: %+v", st)
	}
	r, err := l.Append(ctx, entry(2), Durable)
	if err != nil {
		t.Fatal(err)
	}
	if syncs.Load() != 1 || l.Stats().SyncedSeq != 2 {
		t.Fatalf("Durable returned after %d fsyncs, synced seq %d", syncs.Load(), l.Stats().SyncedSeq)
	}
	// A crash image taken now (no Close, no head) holds the durable record.
	crash := copyDir(t, dir)
	res, err := Verify(crash, key)
	if err != nil || res.Records != 2 {
		t.Fatalf("crash image: %+v %v", res, err)
	}
	var last Record
	if err := Read(crash, key, time.Time{}, func(x Record) error { last = x; return nil }); err != nil || last != r {
		t.Fatalf("crash image reads %+v, %v; want %+v", last, err, r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBufferedIsFlushedWithinTheInterval(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 5), Options{FlushInterval: 20 * time.Millisecond})
	defer l.Close()
	if _, err := l.Append(context.Background(), entry(1), Buffered); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().SyncedSeq != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a Buffered record was not fsync'd within the flush interval")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 6), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), entry(1), Buffered); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if _, err := l.Verify(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Verify after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !l.key.IsZero() {
		t.Fatal("Close left the key in memory")
	}
}

// A write that fails (a full disk) fails its batch, is taken back, and the log goes on
// once the disk works again: no reopen needed, no gap in the chain.
func TestWriteFailureRecovers(t *testing.T) {
	key := testKey(t, 7)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{})
	ctx := context.Background()
	appendN(t, l, 3, Durable)
	disk := syscall.ENOSPC
	setHooks(l, func(b []byte, off int64) (int, error) {
		// Half the batch lands before the failure, as with a full disk.
		n, _ := l.f.WriteAt(b[:len(b)/2], off)
		return n, disk
	}, nil)
	for _, d := range []Durability{Buffered, Durable} {
		if _, err := l.Append(ctx, entry(4), d); !errors.Is(err, disk) || errors.Is(err, ErrFailed) {
			t.Fatalf("failed write: got %v; want ENOSPC, not a failed log", err)
		}
	}
	if err := l.Stats().Err; err != nil {
		t.Fatalf("Stats.Err after a clean failure: %v", err)
	}
	if res, err := l.Verify(); err != nil || res.Records != 3 {
		t.Fatalf("while the disk is full: %+v %v", res, err)
	}
	// Space returns: the log goes on where it was.
	setHooks(l, l.f.WriteAt, nil)
	r, err := l.Append(ctx, entry(5), Durable)
	if err != nil || r.Seq != 4 {
		t.Fatalf("after the disk recovered: record %d, %v", r.Seq, err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if res, err := Verify(dir, key); err != nil || res.Records != 4 || res.TornBytes != 0 {
		t.Fatalf("after recovery: %+v %v", res, err)
	}
}

func TestFsyncFailureFailsClosed(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 8), Options{})
	defer l.Close()
	eio := errors.New("input/output error")
	setHooks(l, nil, func() error { return eio })
	ctx := context.Background()
	if _, err := l.Append(ctx, entry(1), Durable); !errors.Is(err, eio) || !errors.Is(err, ErrFailed) {
		t.Fatalf("Durable with failing fsync: %v", err)
	}
	if _, err := l.Append(ctx, entry(2), Buffered); !errors.Is(err, ErrFailed) {
		t.Fatalf("after fsync failure: %v", err)
	}
}

func TestFileClosedUnderneath(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 9), Options{})
	appendN(t, l, 2, Durable)
	l.f.Close()
	if _, err := l.Append(context.Background(), entry(3), Buffered); !errors.Is(err, ErrFailed) {
		t.Fatalf("write to a closed file: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
}

func TestContextEnded(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 10), Options{})
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, entry(1), Durable); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if l.Stats().Seq != 0 {
		t.Fatal("a request whose context had ended before Append was written")
	}
}

func TestOnlyOneOpener(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t, 11)
	l := openLog(t, dir, key, Options{})
	defer l.Close()
	if _, err := Open(dir, key, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v", err)
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, testKey(t, 12), Options{})
	appendN(t, l, 1, Durable)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{"": 0o700 | fs.ModeDir, logName: 0o600, headName: 0o600}
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%q: mode %v, want %v", name, fi.Mode(), mode)
		}
	}
}

// TestNoPlaintextOnDisk: what a record says about a patient must not be found in any file.
func TestNoPlaintextOnDisk(t *testing.T) {
	const marker = "PATIENT-ZX81"
	key := testKey(t, 13)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{})
	ctx := context.Background()
	for i := range 50 {
		e := Entry{UID: 1000, User: "ccaeabc", Action: "fs.open", Object: "cohort/" + marker + "/scan.nii", Result: "ok", Detail: marker}
		d := Buffered
		if i%7 == 0 {
			d = Durable
		}
		if _, err := l.Append(ctx, e, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(filepath.Dir(dir), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("ccaeabc")) || bytes.Contains(b, []byte("fs.open")) {
			t.Errorf("%s holds a record in plaintext", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 2 {
		t.Fatalf("%d files under the folder, want audit.log and audit.head", files)
	}
	// The records are there, for whoever has the key.
	n := 0
	if err := Read(dir, key, time.Time{}, func(r Record) error { n++; return nil }); err != nil || n != 50 {
		t.Fatalf("read back %d: %v", n, err)
	}
}

func TestAppendNamesTheChannel(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 1), Options{})
	ctx := WithVia(context.Background(), "portal 192.0.2.7")
	r, err := l.Append(ctx, Entry{Action: "token.login.token", Result: "denied", Detail: "bad credentials"}, Durable)
	if err != nil {
		t.Fatal(err)
	}
	if r.Detail != "bad credentials; via portal 192.0.2.7" {
		t.Fatalf("detail = %q", r.Detail)
	}
	r, err = l.Append(ctx, Entry{Action: "share.add", Result: "ok"}, Durable)
	if err != nil || r.Detail != "via portal 192.0.2.7" {
		t.Fatalf("detail = %q, %v", r.Detail, err)
	}
	r, err = l.Append(context.Background(), Entry{Action: "share.add", Result: "ok"}, Durable)
	if err != nil || r.Detail != "" {
		t.Fatalf("a record without a channel: detail = %q, %v", r.Detail, err)
	}
}
