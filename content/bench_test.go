package content

import (
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"dsh/blob"
	"dsh/vault"
)

// The figures in the package's report come from
//
//	go test -run '^$' -bench . -benchmem ./content/
//
// "local" runs on blob.Local in a temporary folder (every object fsync'd), "mem" on an
// in-memory store (which only counts the bytes of objects written), leaving this
// package's own cost: copies and sealing.

const benchFile = 64 << 20

func benchStores(b *testing.B, discard bool, fn func(b *testing.B, bs blob.Store)) {
	b.Run("mem", func(b *testing.B) { fn(b, newMemStore(discard)) })
	b.Run("local", func(b *testing.B) {
		bs, err := blob.OpenLocal(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		fn(b, bs)
	})
}

// BenchmarkWriteSequential streams 1 MiB writes into a 64 MiB file and flushes at its
// end (the flush counts), then starts over the same file.
func BenchmarkWriteSequential(b *testing.B) {
	benchStores(b, true, func(b *testing.B, bs blob.Store) {
		const write = 1 << 20
		ctx := context.Background()
		e := newEnvOn(b, bs, 0, 0)
		f := e.open()
		defer f.Close()
		p := make([]byte, write)
		for i := range p {
			p[i] = byte(i * 7)
		}
		b.SetBytes(write)
		b.ReportAllocs()
		var off int64
		for b.Loop() {
			mustWrite(b, f, p, off)
			off += write
			if off == benchFile {
				mustFlush(b, f)
				off = 0
				// The collector's work, not the writer's.
				b.StopTimer()
				for _, id := range e.meta.current().Dropped {
					bs.Delete(ctx, id)
				}
				b.StartTimer()
			}
		}
	})
}

// committedBench returns a 64 MiB committed file opened afresh.
func committedBench(b *testing.B, bs blob.Store) *File {
	e := newEnvOn(b, bs, 0, 0)
	f := e.open()
	p := make([]byte, benchFile)
	for i := range p {
		p[i] = byte(i * 13)
	}
	mustWrite(b, f, p, 0)
	mustFlush(b, f)
	f.Close()
	return e.open()
}

// BenchmarkReadSequential reads a committed file in 128 KiB pieces, the size FUSE asks
// for, over and over.
func BenchmarkReadSequential(b *testing.B) {
	benchStores(b, false, func(b *testing.B, bs blob.Store) {
		const read = 128 << 10
		ctx := context.Background()
		f := committedBench(b, bs)
		defer f.Close()
		p := make([]byte, read)
		b.SetBytes(read)
		b.ReportAllocs()
		var off int64
		for b.Loop() {
			if n, err := f.ReadAt(ctx, p, off); n != read || err != nil {
				b.Fatalf("read at %d: %d, %v", off, n, err)
			}
			off = (off + read) % benchFile
		}
	})
}

// BenchmarkReadRandom4K reads aligned 4 KiB blocks at random from a committed file: each
// one decrypts a whole 64 KiB chunk.
func BenchmarkReadRandom4K(b *testing.B) {
	benchStores(b, false, func(b *testing.B, bs blob.Store) {
		ctx := context.Background()
		f := committedBench(b, bs)
		defer f.Close()
		r := rand.New(rand.NewPCG(1, 1))
		p := make([]byte, 4096)
		b.ReportAllocs()
		for b.Loop() {
			off := r.Int64N(benchFile/4096) * 4096
			if n, err := f.ReadAt(ctx, p, off); n != len(p) || err != nil {
				b.Fatalf("read at %d: %d, %v", off, n, err)
			}
		}
	})
}

// BenchmarkWriteRandom4K writes aligned 4 KiB blocks at random into a committed file:
// the first write to a chunk reads it to merge, and the File flushes by itself every
// MaxDirty bytes of touched chunks, rewriting whole segments.
func BenchmarkWriteRandom4K(b *testing.B) {
	b.Run("mem", func(b *testing.B) {
		ctx := context.Background()
		f := committedBench(b, newMemStore(false))
		defer f.Close()
		r := rand.New(rand.NewPCG(2, 2))
		p := make([]byte, 4096)
		b.ReportAllocs()
		for b.Loop() {
			off := r.Int64N(benchFile/4096) * 4096
			if _, err := f.WriteAt(ctx, p, off); err != nil {
				b.Fatal(err)
			}
		}
		mustFlush(b, f)
	})
}

// BenchmarkSealOpenRaw is the vault's own cost for the same bytes, for comparison: one
// 16 MiB object sealed and read back through the object format, with no blob store.
func BenchmarkSealOpenRaw(b *testing.B) {
	key, _ := vault.NewKey()
	c, err := vault.NewContentCipher(&key)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := vault.NewFileID()
	oid, _ := vault.NewObjectID()
	h := vault.ObjectHeader{FileID: id, ObjectID: oid}
	plain := make([]byte, SegmentSize)
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(SegmentSize)
		b.ReportAllocs()
		for b.Loop() {
			w, err := vault.NewObjectWriter(io.Discard, c, h)
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < len(plain); off += 1 << 20 {
				w.Write(plain[off : off+1<<20])
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	ms := newMemStore(false)
	bid := blob.ID(oid)
	p := &memPending{m: ms, id: bid}
	w, _ := vault.NewObjectWriter(p, c, h)
	w.Write(plain)
	w.Close()
	p.Commit(context.Background())
	b.Run("open", func(b *testing.B) {
		o, _ := ms.Open(context.Background(), bid)
		r, err := vault.NewObjectReader(o, o.Size(), c, h)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 128<<10)
		b.SetBytes(SegmentSize)
		b.ReportAllocs()
		for b.Loop() {
			for off := int64(0); off < SegmentSize; off += int64(len(buf)) {
				if _, err := r.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkReadSequentialFresh reads a committed 128 MiB file (eight segments) on
// blob.Local from start to end in 1 MiB reads, the pieces dsh's FUSE mount asks for, with
// a fresh File per iteration: every object is opened anew and nothing is read ahead
// before the first read. "warm" leaves the objects in the page cache; "cold" drops them
// from it (posix_fadvise DONTNEED, untimed) before every pass, so the disk is read.
func BenchmarkReadSequentialFresh(b *testing.B) {
	const size, read = 128 << 20, 1 << 20
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			bs, err := blob.OpenLocal(dir)
			if err != nil {
				b.Fatal(err)
			}
			e := newEnvOn(b, bs, 0, 0)
			f := e.open()
			p := make([]byte, size)
			for i := range p {
				p[i] = byte(i * 13)
			}
			mustWrite(b, f, p, 0)
			mustFlush(b, f)
			f.Close()
			buf := make([]byte, read)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if cold {
					b.StopTimer()
					dropPageCache(b, dir)
					b.StartTimer()
				}
				f := e.open()
				for off := int64(0); off < size; off += read {
					if n, err := f.ReadAt(ctx, buf, off); n != read || err != nil {
						b.Fatalf("read at %d: %d, %v", off, n, err)
					}
				}
				f.Close()
			}
		})
	}
}

// dropPageCache asks the kernel to drop the cached pages of every file under dir.
func dropPageCache(b *testing.B, dir string) {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fh, err := os.Open(path)
		if err != nil {
			return err
		}
		defer fh.Close()
		return unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		b.Fatal(err)
	}
}
