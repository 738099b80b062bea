package content

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"dsh/blob"
	"dsh/vault"
)

// committedFile writes a file of three and a half segments of 4 chunks and flushes it.
func committedFile(t *testing.T) (*env, []byte, string) {
	t.Helper()
	dir := t.TempDir()
	bs, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, bs, 4, 0)
	f := e.open()
	data := randBytes(rand.New(rand.NewPCG(7, 7)), int(3*e.store.segChunks*vault.ChunkSize+12345))
	mustWrite(t, f, data, 0)
	mustFlush(t, f)
	f.Close()
	if n := len(e.meta.current().Segments); n != 4 {
		t.Fatalf("%d segments, want 4", n)
	}
	return e, data, dir
}

// objectPath is where blob.Local keeps an object; the tests damage it there.
func objectPath(dir string, id blob.ID) string {
	s := id.String()
	return filepath.Join(dir, "objects", s[:2], s)
}

// segRead reads a few bytes from segment seg of f.
func segRead(f *File, seg int64) error {
	p := make([]byte, 100)
	_, err := f.ReadAt(context.Background(), p, seg*f.segSize+10)
	return err
}

func TestFlippedByte(t *testing.T) {
	// at is where in segment 1 the damage lies, for the read and the partial write that
	// must meet it (the object is opened for the length the metadata gives, and each chunk
	// is checked by the read that uses it, the last one too).
	for _, where := range []struct {
		name string
		off  func(size int64) int64
		at   func(segLen int64) int64
	}{
		{"header", func(int64) int64 { return 20 }, func(int64) int64 { return 10 }},
		{"first chunk", func(int64) int64 { return vault.ObjectHeaderSize + 100 }, func(int64) int64 { return 10 }},
		{"last chunk", func(size int64) int64 { return size - 5 }, func(l int64) int64 { return l - 50 }},
	} {
		t.Run(where.name, func(t *testing.T) {
			e, data, dir := committedFile(t)
			seg := e.meta.current().Segments[1]
			path := objectPath(dir, seg.Object)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[where.off(int64(len(b)))] ^= 0x40
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			f := e.open()
			defer f.Close()
			if err := segRead(f, 0); err != nil {
				t.Fatalf("undamaged segment: %v", err)
			}
			segLen := min(f.segSize, int64(len(data))-f.segSize)
			at := f.segSize + where.at(segLen)
			if _, err := f.ReadAt(context.Background(), make([]byte, 40), at); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("damaged segment read: %v, want ErrIntegrity", err)
			}
			// A partial write into the damaged chunk must merge with it, and so fail too.
			if _, err := f.WriteAt(context.Background(), []byte("x"), at); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("partial write over damaged data: %v, want ErrIntegrity", err)
			}
			// A write covering the damaged part entirely needs no merge.
			whole := data[f.segSize : 2*f.segSize]
			mustWrite(t, f, whole, f.segSize)
			mustFlush(t, f)
			if err := segRead(f, 1); err != nil {
				t.Fatalf("rewritten segment: %v", err)
			}
		})
	}
}

func TestSwappedObjects(t *testing.T) {
	e, _, _ := committedFile(t)
	st := e.meta.current()
	open := func(segs []Segment) (*File, error) {
		return e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, segs, e.meta.commit)
	}

	// Segment 0's object in place of segment 1: the list names one object twice.
	segs := append([]Segment(nil), st.Segments...)
	segs[1].Object = segs[0].Object
	if _, err := open(segs); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("open with one object twice: %v, want ErrIntegrity", err)
	}

	// Segments 0 and 1 exchanged: each object starts at the wrong chunk.
	segs = append([]Segment(nil), st.Segments...)
	segs[0].Object, segs[1].Object = segs[1].Object, segs[0].Object
	f, err := open(segs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for seg := int64(0); seg < 2; seg++ {
		if err := segRead(f, seg); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("read of segment %d holding another's object: %v, want ErrIntegrity", seg, err)
		}
	}
	if err := segRead(f, 2); err != nil {
		t.Fatalf("untouched segment: %v", err)
	}
}

func TestForeignObject(t *testing.T) {
	e, _, _ := committedFile(t)
	other, _, _ := committedFile(t)
	st := e.meta.current()
	// An object of another file, copied into this store under the ID the metadata names.
	foreign := other.meta.current().Segments[1]
	o, err := other.blobs.Open(context.Background(), foreign.Object)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, o.Size())
	if _, err := o.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	o.Close()
	id := st.Segments[1].Object
	if err := e.blobs.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	p, err := e.blobs.Create(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	p.Write(b)
	if err := p.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := e.open()
	defer f.Close()
	if err := segRead(f, 1); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("read of another file's object: %v, want ErrIntegrity", err)
	}
}

func TestMissingObject(t *testing.T) {
	e, _, _ := committedFile(t)
	st := e.meta.current()
	if err := e.blobs.Delete(context.Background(), st.Segments[2].Object); err != nil {
		t.Fatal(err)
	}
	f := e.open()
	defer f.Close()
	err := segRead(f, 2)
	if !errors.Is(err, ErrIntegrity) || !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("read of a missing object: %v, want ErrIntegrity and blob.ErrNotFound", err)
	}
}

func TestObjectLengthMismatch(t *testing.T) {
	e, _, _ := committedFile(t)
	st := e.meta.current()
	segSize := e.store.segChunks * vault.ChunkSize
	for _, size := range []int64{st.Size - 1, st.Size + 1, 4 * segSize} {
		f, err := e.store.Open(e.share, &e.key, e.id, e.wkey, size, st.Segments, e.meta.commit)
		if err != nil {
			t.Fatal(err)
		}
		if err := segRead(f, 3); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("size %d (committed %d): read of the last segment: %v, want ErrIntegrity", size, st.Size, err)
		}
		// The full segments are still the right length.
		if err := segRead(f, 2); err != nil {
			t.Fatalf("size %d: read of a full segment: %v", size, err)
		}
		f.Close()
	}
	// A size that ends before the last segment listed.
	if _, err := e.store.Open(e.share, &e.key, e.id, e.wkey, 3*segSize, st.Segments, e.meta.commit); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("open with a segment past the end: %v, want ErrIntegrity", err)
	}
	// An unsorted list.
	segs := []Segment{st.Segments[1], st.Segments[0]}
	if _, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, segs, e.meta.commit); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("open with an unsorted list: %v, want ErrIntegrity", err)
	}
}

func TestWrongKey(t *testing.T) {
	e, _, _ := committedFile(t)
	st := e.meta.current()
	otherKey, _ := vault.NewKey()
	otherID, _ := vault.NewFileID()
	otherFile, otherWrapped, err := e.store.NewFile(e.share, &e.key)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		share   string
		key     *vault.Key
		id      vault.FileID
		wrapped vault.WrappedKey
	}{
		{"wrong share key", e.share, &otherKey, e.id, e.wkey},
		{"wrong share name", "other", &e.key, e.id, e.wkey},
		{"wrong file ID", e.share, &e.key, otherID, e.wkey},
		{"another file's key", e.share, &e.key, e.id, otherWrapped},
	}
	for _, c := range cases {
		_, err := e.store.Open(c.share, c.key, c.id, c.wrapped, st.Size, st.Segments, e.meta.commit)
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v, want ErrIntegrity", c.name, err)
		}
	}
	// The other file's key opens the other file, but not this one's objects.
	f, err := e.store.Open(e.share, &e.key, otherFile, otherWrapped, st.Size, st.Segments, e.meta.commit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := segRead(f, 0); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("another file's key on this file's objects: %v, want ErrIntegrity", err)
	}
	if _, err := e.store.Open(e.share, nil, e.id, e.wkey, st.Size, st.Segments, e.meta.commit); err == nil {
		t.Fatal("open with no share key succeeded")
	}
}
