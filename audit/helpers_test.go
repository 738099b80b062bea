package audit

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"dsh/vault"
)

func testKey(t testing.TB, fill byte) *vault.Key {
	t.Helper()
	var k vault.Key
	for i := range k {
		k[i] = fill + byte(i)
	}
	return &k
}

func openLog(t testing.TB, dir string, key *vault.Key, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, key, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func entry(i int) Entry {
	return Entry{UID: int64(1000 + i), User: fmt.Sprintf("user%d", i), Action: "share.add",
		Object: fmt.Sprintf("project-%d/results.csv", i), Result: "ok", Detail: "member"}
}

// appendN appends n records and returns them as Append gave them.
func appendN(t testing.TB, l *Log, n int, d Durability) []Record {
	t.Helper()
	recs := make([]Record, 0, n)
	for i := range n {
		r, err := l.Append(context.Background(), entry(i), d)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// writeLog creates a closed log of n records in a new folder.
func writeLog(t testing.TB, key *vault.Key, n int) (string, []Record) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{})
	recs := appendN(t, l, n, Buffered)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return dir, recs
}

// frames returns the offset of every frame in a well-formed log file.
func frames(t testing.TB, b []byte) []int64 {
	t.Helper()
	var offs []int64
	for off := 0; off < len(b); {
		if len(b)-off < lenSize {
			t.Fatalf("frames: cut length at %d", off)
		}
		offs = append(offs, int64(off))
		off += lenSize + int(binary.BigEndian.Uint32(b[off:]))
	}
	return offs
}

func readLogFile(t testing.TB, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeLogFile(t testing.TB, dir string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, logName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// copyDir makes a crash image: the files as they are on disk now, with no Close.
func copyDir(t testing.TB, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "audit")
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// setHooks swaps the writer's disk calls; under l.mu, which the writer takes before it
// uses them, so the race detector sees the order.
func setHooks(l *Log, write func([]byte, int64) (int, error), sync func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if write != nil {
		l.writeAt = write
	}
	if sync != nil {
		l.sync = sync
	}
}

// fixedClock gives times one millisecond apart, starting at a fixed instant.
func fixedClock() func() time.Time {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	n := 0
	return func() time.Time {
		n++
		return t0.Add(time.Duration(n) * time.Millisecond)
	}
}
