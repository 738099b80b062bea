package blob_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"dsh/blob"
	"dsh/blob/blobtest"
)

func openLocal(t testing.TB, dir string) *blob.Local {
	t.Helper()
	l, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLocal(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return openLocal(t, t.TempDir())
	})
}

func TestOpenLocalCreatesLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	openLocal(t, dir)
	for _, d := range []string{"objects", "tmp"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a folder with 0700", d, fi.Mode())
		}
	}
	// Reopening an existing store is fine.
	openLocal(t, dir)
}

func TestOpenLocalRefusesFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "objects"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := blob.OpenLocal(dir); err == nil {
		t.Error("OpenLocal accepted a file where objects/ should be")
	}
}

func TestLocalModes(t *testing.T) {
	dir := t.TempDir()
	l := openLocal(t, dir)
	id := blob.NewID()
	put(t, l, id, []byte("secret ciphertext"))
	s := id.String()
	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, "objects", s[:2], s): 0o600,
		filepath.Join(dir, "objects", s[:2]):    0o700 | os.ModeDir,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

func put(t testing.TB, s blob.Store, id blob.ID, data []byte) {
	t.Helper()
	if err := tryPut(s, id, data); err != nil {
		t.Fatal(err)
	}
}

func tryPut(s blob.Store, id blob.ID, data []byte) error {
	ctx := context.Background()
	p, err := s.Create(ctx, id)
	if err != nil {
		return err
	}
	defer p.Abort()
	if _, err := p.Write(data); err != nil {
		return err
	}
	return p.Commit(ctx)
}

func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestLocalInterruptedWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	crashed := openLocal(t, dir)
	id := blob.NewID()
	p, err := crashed.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// More than the write buffer, so part of it is on disk as a crash would leave it.
	if _, err := p.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}

	l := openLocal(t, dir) // the restarted daemon
	if _, err := l.Stat(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("stat of the interrupted object: err %v, want ErrNotFound", err)
	}
	if _, err := l.Open(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("open of the interrupted object: err %v, want ErrNotFound", err)
	}
	if err := l.List(ctx, func(i blob.Info) error {
		t.Errorf("list shows %s", i.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := len(tmpFiles(t, dir)); n != 1 {
		t.Fatalf("%d temporary files, want 1", n)
	}
	if n, err := l.CleanTemp(time.Hour); err != nil || n != 0 {
		t.Errorf("CleanTemp(1h) = %d, %v; want 0 for a fresh file", n, err)
	}
	if n, err := l.CleanTemp(0); err != nil || n != 1 {
		t.Errorf("CleanTemp(0) = %d, %v; want 1", n, err)
	}
	if names := tmpFiles(t, dir); len(names) != 0 {
		t.Errorf("left in tmp/: %v", names)
	}
	// Should the old writer wake up after all, it must not publish anything.
	if err := p.Commit(ctx); err == nil {
		t.Error("commit of a cleaned-up writer succeeded")
	}
	if _, err := l.Stat(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("stat after the late commit: err %v, want ErrNotFound", err)
	}
}

func TestLocalCleanTempKeepsLiveWriters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLocal(t, dir)
	id := blob.NewID()
	p, err := l.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	p.Write([]byte("still writing"))
	if n, err := l.CleanTemp(0); err != nil || n != 0 {
		t.Errorf("CleanTemp(0) = %d, %v; want 0 while the writer is open", n, err)
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if names := tmpFiles(t, dir); len(names) != 0 {
		t.Errorf("left in tmp/ after commit: %v", names)
	}
}

func TestLocalListSkipsStrays(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLocal(t, dir)
	real := blob.NewID()
	put(t, l, real, []byte("object"))

	misplaced := real
	misplaced[0]++ // a valid ID in someone else's fan-out folder
	rs, ms := real.String(), misplaced.String()
	objects := filepath.Join(dir, "objects")
	strays := []string{
		"README",
		"zz/" + ms,
		rs[:2] + "/notes.txt",
		rs[:2] + "/" + ms,
		rs[:2] + "/" + rs + ".tmp",
		rs[:2] + "/" + string(bytes.ToUpper([]byte(ms))),
		"AB/" + ms,
	}
	for _, s := range strays {
		p := filepath.Join(objects, s)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A folder named like an object is not an object either.
	dirID := blob.NewID()
	if err := os.MkdirAll(filepath.Join(objects, dirID.String()[:2], dirID.String()), 0o700); err != nil {
		t.Fatal(err)
	}

	var got []blob.ID
	if err := l.List(ctx, func(i blob.Info) error {
		got = append(got, i.ID)
		return nil
	}); err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(got) != 1 || got[0] != real {
		t.Errorf("list = %v, want only %s", got, real)
	}
	if _, err := l.Open(ctx, dirID); err == nil {
		t.Error("opened a folder as an object")
	}
}

func TestLocalWriteDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	l := openLocal(t, t.TempDir())
	p, err := l.Create(ctx, blob.NewID())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	small, large := make([]byte, 4096), make([]byte, 1<<20)
	for name, b := range map[string][]byte{"4KiB": small, "1MiB": large} {
		if n := testing.AllocsPerRun(50, func() { p.Write(b) }); n != 0 {
			t.Errorf("%s write: %v allocations", name, n)
		}
	}
}

// BenchmarkPutLocal measures streaming a large object: write throughput plus one fsync.
func BenchmarkPutLocal(b *testing.B) {
	ctx := context.Background()
	l := openLocal(b, b.TempDir())
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	const size = 64 << 20
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		id := blob.NewID()
		p, err := l.Create(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		for range size / len(chunk) {
			if _, err := p.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		// Deleting keeps the disk from filling up; it is not what is being measured.
		b.StopTimer()
		if err := l.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkPutSmall measures the fixed cost per object: two fsyncs and a rename.
func BenchmarkPutSmall(b *testing.B) {
	l := openLocal(b, b.TempDir())
	data := make([]byte, 4096)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		put(b, l, blob.NewID(), data)
	}
}

// BenchmarkPutSmallParallel shows how far concurrent writers share the fsync cost.
func BenchmarkPutSmallParallel(b *testing.B) {
	l := openLocal(b, b.TempDir())
	data := make([]byte, 4096)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Not put: FailNow may only be called from the benchmark's own goroutine.
			if err := tryPut(l, blob.NewID(), data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Below the floor of free space, Create refuses with ENOSPC, reserved IDs included, and
// works again once the floor is met (here: lowered) without reopening anything.
func TestLocalFloor(t *testing.T) {
	ctx := context.Background()
	l := openLocal(t, t.TempDir())
	l.KeepSpares()
	t.Cleanup(func() { l.Close() })
	l.SetFloor(1 << 62)
	for _, id := range []blob.ID{blob.NewID(), l.Reserve()} {
		if _, err := l.Create(ctx, id); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("create below the floor: %v; want ENOSPC", err)
		}
	}
	l.SetFloor(1 << 20)
	p, err := l.Create(ctx, l.Reserve())
	if err != nil {
		t.Fatalf("create above the floor: %v", err)
	}
	if _, err := p.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
