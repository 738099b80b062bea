package blob_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"dsh/blob"
	"dsh/blob/blobtest"
)

// openSpares opens a store in dir that keeps spares, closed when the test ends.
func openSpares(t *testing.T, dir string) *blob.Local {
	t.Helper()
	l := openLocal(t, dir)
	l.KeepSpares()
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func TestLocalWithSpares(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return openSpares(t, t.TempDir()) })
}

func objectPath(dir string, id blob.ID) string {
	s := id.String()
	return filepath.Join(dir, "objects", s[:2], s)
}

// reserveSpare waits for the refill and returns a reserved ID whose file is in place.
func reserveSpare(t *testing.T, l *blob.Local, dir string) blob.ID {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		id := l.Reserve()
		if _, err := os.Stat(objectPath(dir, id)); err == nil {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatal("no spare file was prepared")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// objectFiles counts the files under objects/, spares included.
func objectFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLocalSpareWrittenInPlace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openSpares(t, dir)
	id := reserveSpare(t, l, dir)
	spare, err := os.Stat(objectPath(dir, id))
	if err != nil {
		t.Fatal(err)
	}
	if spare.Size() != 0 || spare.Mode().Perm() != 0o600 {
		t.Fatalf("spare file: size %d, mode %v; want an empty 0600 file", spare.Size(), spare.Mode())
	}
	// Reserved but not committed: invisible.
	if _, err := l.Stat(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("stat of a reserved ID: err %v, want ErrNotFound", err)
	}
	// Delete gives an unused reserved ID back: nothing was committed, and its file goes.
	unused := reserveSpare(t, l, dir)
	if err := l.Delete(ctx, unused); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("delete of a reserved ID: err %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(objectPath(dir, unused)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file of a reserved ID given back is still there (err %v)", err)
	}
	p, err := l.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tmpFiles(t, dir)); n != 0 {
		t.Errorf("%d temporary files for a reserved ID, want none", n)
	}
	if _, err := p.Write([]byte("ciphertext")); err != nil {
		t.Fatal(err)
	}
	if o, err := l.Open(ctx, id); !errors.Is(err, blob.ErrNotFound) {
		if err == nil {
			o.Close()
		}
		t.Errorf("open while writing: err %v, want ErrNotFound", err)
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := os.Stat(objectPath(dir, id))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(spare, got) {
		t.Error("the object is not the spare file: it was written elsewhere and renamed")
	}
	info, err := l.Stat(ctx, id)
	if err != nil || info.Size != int64(len("ciphertext")) {
		t.Fatalf("stat after commit: %+v, %v", info, err)
	}
}

func TestLocalSpareAbortAndFailedCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openSpares(t, dir)
	for _, fail := range []string{"abort", "canceled commit"} {
		id := reserveSpare(t, l, dir)
		p, err := l.Create(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		p.Write([]byte("never"))
		switch fail {
		case "abort":
			if err := p.Abort(); err != nil {
				t.Fatal(err)
			}
		default:
			canceled, cancel := context.WithCancel(ctx)
			cancel()
			if err := p.Commit(canceled); !errors.Is(err, context.Canceled) {
				t.Fatalf("commit: err %v, want context.Canceled", err)
			}
		}
		if _, err := os.Lstat(objectPath(dir, id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the reserved file is still there (err %v)", fail, err)
		}
		// The ID is free again, for an ordinary write.
		put(t, l, id, []byte("later"))
	}
}

func TestLocalCloseRemovesSpares(t *testing.T) {
	dir := t.TempDir()
	l := openLocal(t, dir)
	l.KeepSpares()
	id := reserveSpare(t, l, dir)
	put(t, l, id, []byte("kept"))
	l.Reserve() // handed out, never written: Close removes its file too
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := objectFiles(t, dir); n != 1 {
		t.Errorf("%d files under objects/ after Close, want the 1 committed object", n)
	}
	// After Close, Reserve still works, without spares.
	if id := l.Reserve(); id == (blob.ID{}) {
		t.Error("Reserve after Close returned the zero ID")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// After a crash, spares and interrupted in-place writes show as objects nobody references,
// which is what the collector removes at the next start.
func TestLocalSparesAfterCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	crashed := openLocal(t, dir)
	crashed.KeepSpares()
	id := reserveSpare(t, crashed, dir)
	p, err := crashed.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	// Let the refill that Reserve started finish, as it would have before a crash.
	time.Sleep(100 * time.Millisecond)
	files := objectFiles(t, dir)

	l := openLocal(t, dir)
	seen := 0
	if err := l.List(ctx, func(i blob.Info) error {
		seen++
		if i.Size != 0 && i.ID != id {
			t.Errorf("%s: %d bytes; a spare nobody wrote must be empty", i.ID, i.Size)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != files || seen < 2 {
		t.Errorf("the restarted store lists %d objects, want the %d files left (spares and the interrupted one)", seen, files)
	}
	p.Abort()
	crashed.Close()
}
