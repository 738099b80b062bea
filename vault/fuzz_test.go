package vault

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "write the golden objects missing from testdata/golden; only when adding a new format version, never to make a test pass")

// Golden objects: written once by each format version with a fixed, public test key. Later
// versions of dsh must keep opening them (FORMAT.md, "Backwards compatibility").

type goldenObject struct {
	file   string
	header ObjectHeader
	size   int // plaintext is pattern(size)
	format *format
}

func goldenKey(seed byte) Key {
	var k Key
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func goldenObjects() []goldenObject {
	fid := FileID{0xf1, 0x1e, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	oid := func(n byte) ObjectID { return ObjectID{0x0b, 0x1e, 0xc7, n} }
	return []goldenObject{
		{"v1-object.bin", ObjectHeader{FileID: fid, ObjectID: oid(1), FirstChunk: 2}, ChunkSize + 100, &formatV1},
		{"v1-small-object.bin", ObjectHeader{FileID: fid, ObjectID: oid(2)}, 100, &formatV1},
		{"v1-empty-object.bin", ObjectHeader{FileID: fid, ObjectID: oid(3)}, 0, &formatV1},
		{"v2-object.bin", ObjectHeader{FileID: fid, ObjectID: oid(4), FirstChunk: 2}, ChunkSize + 100, &formatV2},
		{"v2-small-object.bin", ObjectHeader{FileID: fid, ObjectID: oid(5)}, 100, &formatV2},
		{"v2-empty-object.bin", ObjectHeader{FileID: fid, ObjectID: oid(6)}, 0, &formatV2},
		{"v2-block-object.bin", ObjectHeader{FileID: fid, ObjectID: oid(7), FirstChunk: 2, FirstBlock: 13}, 3*BlockSize + 100, &formatV2},
	}
}

func goldenPath(name string) string { return filepath.Join("testdata", "golden", name) }

func TestGoldenObjects(t *testing.T) {
	key := goldenKey(1)
	c, err := NewContentCipher(&key)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldenObjects() {
		if _, err := os.Stat(goldenPath(g.file)); *updateGolden && os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(goldenPath(g.file)), 0o755); err != nil {
				t.Fatal(err)
			}
			tl = g.format
			obj := writeObject(t, c, g.header, pattern(g.size))
			tl = &current
			if err := os.WriteFile(goldenPath(g.file), obj, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		obj, err := os.ReadFile(goldenPath(g.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := openAll(obj, c, g.header)
		if err != nil {
			t.Fatalf("%s no longer opens: %v", g.file, err)
		}
		if !bytes.Equal(got, pattern(g.size)) {
			t.Fatalf("%s: wrong plaintext", g.file)
		}
	}
}

// The fuzz targets work from the golden files, not from objects sealed at start-up: fuzz
// workers are separate processes, and random nonces would make every worker's seeds
// different, so no mutated input could ever be authentic in another worker.

func FuzzObjectHeader(f *testing.F) {
	for _, g := range goldenObjects() {
		b, err := g.header.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(make([]byte, ObjectHeaderSize))
	f.Add([]byte("DSHO"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseObjectHeader(b)
		if err != nil {
			return
		}
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("a parsed header does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("parse then marshal changed the header:\n in % x\nout % x", b, out)
		}
	})
}

func FuzzWrappedKey(f *testing.F) {
	golden, err := os.ReadFile(goldenPath("v1-wrapped-key.bin"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:40])
	f.Add(make([]byte, WrappedKeySize))
	parent, child := goldenKey(0x40), goldenKey(1)
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := UnmarshalWrappedKey(b)
		if err != nil {
			return
		}
		out, _ := w.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatalf("parse then marshal changed the record:\n in % x\nout % x", b, out)
		}
		k, err := UnwrapKey(&parent, w, goldenWrapContext)
		if err != nil {
			return
		}
		// Only the record that was really made opens.
		if !bytes.Equal(b, golden) || !k.Equal(&child) {
			t.Fatalf("a record that was never wrapped opened: % x", b)
		}
	})
}

func FuzzObjectReader(f *testing.F) {
	type golden struct {
		obj   []byte
		h     ObjectHeader
		plain []byte
	}
	var goldens []golden
	for _, g := range goldenObjects() {
		obj, err := os.ReadFile(goldenPath(g.file))
		if err != nil {
			f.Fatal(err)
		}
		goldens = append(goldens, golden{obj, g.header, pattern(g.size)})
		f.Add(obj, int64(0), uint32(ChunkSize+200))
		f.Add(obj[:len(obj)-1], int64(1), uint32(10))
		f.Add(obj[:ObjectHeaderSize+ChunkOverhead], int64(0), uint32(1))
	}
	f.Add([]byte("DSHO"), int64(0), uint32(1))
	key := goldenKey(1)
	c, err := NewContentCipher(&key)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, obj []byte, off int64, n uint32) {
		for _, g := range goldens {
			r, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)), c, g.h)
			if err != nil {
				continue
			}
			// The last chunk authenticated, so the size is the real one.
			if r.Size() != int64(len(g.plain)) {
				t.Fatalf("object %s opened with size %d, want %d", g.h.ObjectID, r.Size(), len(g.plain))
			}
			p := make([]byte, n%(3*ChunkSize))
			got, _ := r.ReadAt(p, off)
			// Whatever came back, error or not, must be the authentic plaintext at off.
			if got > 0 && (off < 0 || !bytes.Equal(p[:got], g.plain[off:off+int64(got)])) {
				t.Fatalf("object %s: ReadAt returned %d bytes at %d that are not the authentic plaintext", g.h.ObjectID, got, off)
			}
			all, err := openAll(obj, c, g.h)
			if err == nil && (!bytes.Equal(all, g.plain) || !bytes.Equal(obj, g.obj)) {
				t.Fatalf("object %s: a changed object read without error", g.h.ObjectID)
			}
		}
	})
}
