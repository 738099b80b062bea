package audit

import (
	"context"
	"path/filepath"
	"testing"
)

func benchEntry() Entry {
	return Entry{UID: 1042, User: "ccaeabc", Action: "fs.open", Object: "cohort-2026/derived/site-07/scan-000123.nii.gz", Result: "ok"}
}

func benchLog(b *testing.B) *Log {
	b.Helper()
	l := openLog(b, filepath.Join(b.TempDir(), "audit"), testKey(b, 50), Options{})
	b.Cleanup(func() {
		if err := l.Close(); err != nil {
			b.Error(err)
		}
	})
	return l
}

// BenchmarkAppendBuffered is the filesystem's path: every open from many goroutines.
func BenchmarkAppendBuffered(b *testing.B) {
	l := benchLog(b)
	e := benchEntry()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, e, Buffered); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAppendDurable is one caller waiting for each record's fsync, such as a login.
func BenchmarkAppendDurable(b *testing.B) {
	l := benchLog(b)
	e := benchEntry()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, e, Durable); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendDurableParallel shows group commit: many callers share each fsync.
func BenchmarkAppendDurableParallel(b *testing.B) {
	l := benchLog(b)
	e := benchEntry()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, e, Durable); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerify is what Open pays per record of an existing log.
func BenchmarkVerify(b *testing.B) {
	key := testKey(b, 51)
	dir := filepath.Join(b.TempDir(), "audit")
	l := openLog(b, dir, key, Options{})
	const n = 20000
	ctx := context.Background()
	e := benchEntry()
	for range n {
		if _, err := l.Append(ctx, e, Buffered); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if res, err := Verify(dir, key); err != nil || res.Records != n {
			b.Fatal(res, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
