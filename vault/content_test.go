package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

func testCipher(t testing.TB) *ContentCipher {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewContentCipher(&k)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testHeader(t testing.TB, first uint64) ObjectHeader {
	t.Helper()
	fid, err := NewFileID()
	if err != nil {
		t.Fatal(err)
	}
	oid, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	return ObjectHeader{FileID: fid, ObjectID: oid, FirstChunk: first}
}

// pattern is deterministic plaintext: every byte differs from its neighbours and its
// position in the next chunk, so a misplaced chunk or offset shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i/251 + i/ChunkSize)
	}
	return b
}

// writeObject seals plain into an object, feeding the writer pieces of the given sizes in
// turn (all at once if none).
func writeObject(t testing.TB, c *ContentCipher, h ObjectHeader, plain []byte, pieces ...int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := newObjectWriter(&out, c, h, tl)
	if err != nil {
		t.Fatal(err)
	}
	for i, rest := 0, plain; len(rest) > 0; i++ {
		k := len(rest)
		if len(pieces) > 0 {
			k = min(k, pieces[i%len(pieces)])
		}
		if n, err := w.Write(rest[:k]); err != nil || n != k {
			t.Fatalf("Write(%d bytes) = %d, %v", k, n, err)
		}
		rest = rest[k:]
	}
	if w.Written() != int64(len(plain)) {
		t.Fatalf("Written() = %d, want %d", w.Written(), len(plain))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// openAll opens obj as the metadata's want and reads all of it. It returns data only when
// every check passed.
func openAll(obj []byte, c *ContentCipher, want ObjectHeader) ([]byte, error) {
	r, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)), c, want)
	if err != nil {
		return nil, err
	}
	p := make([]byte, r.Size())
	if n, err := r.ReadAt(p, 0); err != nil && !(err == io.EOF && n == len(p)) {
		return nil, err
	}
	return p, nil
}

// mustFailIntegrity asserts that a damaged object neither opens nor reads.
func mustFailIntegrity(t *testing.T, what string, obj []byte, c *ContentCipher, want ObjectHeader) {
	t.Helper()
	data, err := openAll(obj, c, want)
	if err == nil {
		t.Fatalf("%s: read %d bytes without error", what, len(data))
	}
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("%s: error %q does not wrap ErrIntegrity", what, err)
	}
}

// tl is the format the tests write and take apart: the current one, or version 1 in
// TestFormatV1, which runs them again for the objects older dsh wrote.
var tl = &current

// sealedLen and chunkLen are tl's sealed chunk and its plaintext.
func sealedLen() int { return int(tl.sealed) }
func chunkLen() int  { return int(tl.chunk) }

func chunkAt(obj []byte, k int) (start, end int) {
	start = ObjectHeaderSize + k*sealedLen()
	return start, min(start+sealedLen(), len(obj))
}

// TestFormatV1 runs the format's tests again on version 1 objects, which this dsh reads
// and no longer writes.
func TestFormatV1(t *testing.T) {
	tl = &formatV1
	defer func() { tl = &current }()
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"RoundTrip", TestObjectRoundTrip}, {"ReadAtRandomOffsets", TestReadAtRandomOffsets},
		{"SizeArithmetic", TestSizeArithmetic}, {"ChunkLayoutMatchesSpec", TestChunkLayoutMatchesSpec},
		{"TamperEveryRegion", TestTamperEveryRegion}, {"ChunkFromAnotherFile", TestChunkFromAnotherFile},
		{"ChunkFromAnotherObject", TestChunkFromAnotherObject}, {"ReorderedChunks", TestReorderedChunks},
		{"TruncatedObject", TestTruncatedObject}, {"AppendedChunk", TestAppendedChunk},
		{"ReplayedObject", TestReplayedObject}, {"HeaderMustMatchMetadata", TestHeaderMustMatchMetadata},
		{"WrongContentKey", TestWrongContentKey}, {"ReadAtStopsAtBadChunk", TestReadAtStopsAtBadChunk},
		{"ConcurrentReadAt", TestConcurrentReadAt}, {"ReaderOfKnownSize", TestReaderOfKnownSize},
	} {
		t.Run(tc.name, tc.f)
	}
}

// TestVersionsStayApart checks that a chunk of one version cannot pass for the other's: a
// version 1 object relabelled as version 2 (or back) with the same IDs does not open.
func TestVersionsStayApart(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 1)
	plain := pattern(ChunkSize)
	for _, from := range []*format{&formatV1, &formatV2} {
		var out bytes.Buffer
		w, err := newObjectWriter(&out, c, h, from)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		obj := out.Bytes()
		if got, err := openAll(obj, c, h); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("version %d: %v", from.version, err)
		}
		to := &formatV2
		if from == to {
			to = &formatV1
		}
		bad := bytes.Clone(obj)
		bad[4], bad[5] = to.version, to.shift
		mustFailIntegrity(t, fmt.Sprintf("version %d relabelled %d", from.version, to.version), bad, c, h)
	}
}

// TestObjectStartingInsideChunk checks objects that start at a block inside a chunk (the
// patch of a small write): they read back, and one whose header or metadata names another
// start does not open or does not read.
func TestObjectStartingInsideChunk(t *testing.T) {
	c := testCipher(t)
	for _, fb := range []uint8{1, 7, 15} {
		h := testHeader(t, 4)
		h.FirstBlock = fb
		for _, size := range []int{1, BlockSize, ChunkSize + 100} {
			plain := pattern(size)
			obj := writeObject(t, c, h, plain)
			if got, err := openAll(obj, c, h); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("block %d, %d bytes: %v", fb, size, err)
			}
			other := h
			other.FirstBlock = fb - 1
			mustFailIntegrity(t, "metadata names another first block", obj, c, other)
			// Header and metadata both moved: every block's AD still holds the real index.
			moved := bytes.Clone(obj)
			moved[6] = fb - 1
			mustFailIntegrity(t, "header and metadata moved to another block", moved, c, other)
			r, err := NewObjectReaderOfSize(bytes.NewReader(moved), int64(len(moved)), c, other, int64(size))
			if err == nil {
				if _, err = r.ReadAt(make([]byte, size), 0); !errors.Is(err, ErrIntegrity) {
					t.Fatalf("block %d: a moved object read with error %v", fb, err)
				}
			} else if !errors.Is(err, ErrIntegrity) {
				t.Fatal(err)
			}
		}
	}
	h := testHeader(t, 4)
	h.FirstBlock = 1
	if _, err := newObjectWriter(io.Discard, c, h, &formatV1); err == nil {
		t.Fatal("a version 1 object was started inside a chunk")
	}
}

var roundTripSizes = []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3*ChunkSize + 17, 4 * ChunkSize}

func TestObjectRoundTrip(t *testing.T) {
	c := testCipher(t)
	writes := map[string][]int{
		"one write":   nil,
		"odd pieces":  {1, 7, 4096, ChunkSize - 1, ChunkSize + 1, 128 << 10},
		"whole chunk": {ChunkSize},
	}
	for _, size := range roundTripSizes {
		plain := pattern(size)
		for name, pieces := range writes {
			h := testHeader(t, 5)
			obj := writeObject(t, c, h, plain, pieces...)
			if want, _ := tl.objectSize(int64(size)); int64(len(obj)) != want {
				t.Fatalf("size %d, %s: object is %d bytes, ObjectSize says %d", size, name, len(obj), want)
			}
			got, err := openAll(obj, c, h)
			if err != nil {
				t.Fatalf("size %d, %s: %v", size, name, err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("size %d, %s: plaintext differs", size, name)
			}
		}
	}
}

func TestReadAtRandomOffsets(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 9)
	plain := pattern(5*ChunkSize + 123)
	obj := writeObject(t, c, h, plain)
	r, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)), c, h)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != int64(len(plain)) {
		t.Fatalf("Size() = %d, want %d", r.Size(), len(plain))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(off int64, n int) {
		p := make([]byte, n)
		got, err := r.ReadAt(p, off)
		want := max(0, min(int64(n), int64(len(plain))-off))
		if int64(got) != want {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, want %d (err %v)", n, off, got, want, err)
		}
		if got < n && err != io.EOF {
			t.Fatalf("ReadAt(%d bytes at %d): short read with error %v, want io.EOF", n, off, err)
		}
		if got == n && err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): %v", n, off, err)
		}
		if !bytes.Equal(p[:got], plain[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d bytes at %d): wrong bytes", n, off)
		}
	}
	for range 500 {
		check(rng.Int64N(int64(len(plain))+10), rng.IntN(3*ChunkSize))
	}
	// Edges: across a boundary, whole aligned chunks, the partial last chunk, the end.
	check(ChunkSize-1, 2)
	check(ChunkSize, ChunkSize)
	check(0, 2*ChunkSize)
	check(5*ChunkSize, 123)
	check(int64(len(plain))-1, 2)
	check(int64(len(plain)), 1)
	if n, err := r.ReadAt(nil, 3); n != 0 || err != nil {
		t.Fatalf("empty ReadAt = %d, %v", n, err)
	}
	if _, err := r.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("ReadAt at a negative offset succeeded")
	}
}

func TestSizeArithmetic(t *testing.T) {
	valid := 0
	sealed := int64(sealedLen())
	for s := int64(0); s < 3*sealed+200; s++ {
		p, err := tl.plaintextSize(s)
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("PlaintextSize(%d): %v does not wrap ErrIntegrity", s, err)
			}
			continue
		}
		valid++
		if back, err := tl.objectSize(p); err != nil || back != s {
			t.Fatalf("PlaintextSize(%d) = %d, but ObjectSize(%d) = %d, %v", s, p, p, back, err)
		}
	}
	// The sizes seen hold every plaintext below 3·ChunkSize+124 bytes: exactly one valid
	// object size per plaintext size, no more.
	if want := 3*sealed + 200 - ObjectHeaderSize - 4*ChunkOverhead; valid != int(want) {
		t.Fatalf("%d valid object sizes, want %d", valid, want)
	}
	for _, s := range []int64{-1, 0, ObjectHeaderSize, ObjectHeaderSize + ChunkOverhead - 1,
		ObjectHeaderSize + sealed + ChunkOverhead, // a full chunk and then an empty one
		ObjectHeaderSize + sealed + 1} {
		if p, err := tl.plaintextSize(s); err == nil {
			t.Errorf("PlaintextSize(%d) = %d, want an error", s, p)
		}
	}
	for _, p := range []int64{-1, math.MaxInt64, math.MaxInt64 - 1000} {
		if s, err := tl.objectSize(p); err == nil {
			t.Errorf("ObjectSize(%d) = %d, want an error", p, s)
		}
	}
}

func TestObjectHeaderEncoding(t *testing.T) {
	h := testHeader(t, 0x0102030405)
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != ObjectHeaderSize || string(b[:4]) != "DSHO" || b[4] != 2 || b[5] != 12 || b[6] != 0 || b[7] != 0 ||
		!bytes.Equal(b[8:24], h.FileID[:]) || !bytes.Equal(b[24:40], h.ObjectID[:]) || binary.BigEndian.Uint64(b[40:]) != 0x0102030405 {
		t.Fatalf("header layout differs from FORMAT.md: % x", b)
	}
	h.version = 2
	if got, err := ParseObjectHeader(b); err != nil || got != h {
		t.Fatalf("ParseObjectHeader = %+v, %v; want %+v", got, err, h)
	}
	bad := func(name string, edit func([]byte) []byte, sentinel error) {
		t.Helper()
		c := edit(bytes.Clone(b))
		if _, err := ParseObjectHeader(c); !errors.Is(err, sentinel) {
			t.Errorf("%s: ParseObjectHeader error %v, want %v", name, err, sentinel)
		}
	}
	bad("short", func(b []byte) []byte { return b[:47] }, ErrIntegrity)
	bad("long", func(b []byte) []byte { return append(b, 0) }, ErrIntegrity)
	bad("magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrIntegrity)
	bad("version 0", func(b []byte) []byte { b[4] = 0; return b }, ErrIntegrity)
	bad("version 3", func(b []byte) []byte { b[4] = 3; return b }, ErrUnsupportedVersion)
	bad("chunk size", func(b []byte) []byte { b[5] = 16; return b }, ErrIntegrity)
	bad("version 1 chunk size", func(b []byte) []byte { b[4] = 1; return b }, ErrIntegrity)
	bad("version 1 with its chunk size", func(b []byte) []byte { b[4], b[5] = 1, 16; return b }, nil)
	bad("reserved", func(b []byte) []byte { b[7] = 1; return b }, ErrIntegrity)
	bad("first block 15", func(b []byte) []byte { b[6] = 15; return b }, nil)
	bad("first block 16", func(b []byte) []byte { b[6] = 16; return b }, ErrIntegrity)
	bad("version 1 first block", func(b []byte) []byte { b[4], b[5], b[6] = 1, 16, 1; return b }, ErrIntegrity)
	h.FirstBlock = 9
	if b, err := h.MarshalBinary(); err != nil || b[6] != 9 {
		t.Errorf("MarshalBinary of first block 9: % x, %v", b, err)
	}
	h.FirstBlock = 16
	if _, err := h.MarshalBinary(); err == nil {
		t.Error("MarshalBinary accepted first block 16")
	}
	bad("zero file ID", func(b []byte) []byte { clear(b[8:24]); return b }, ErrIntegrity)
	bad("zero object ID", func(b []byte) []byte { clear(b[24:40]); return b }, ErrIntegrity)
	bad("chunk index", func(b []byte) []byte { binary.BigEndian.PutUint64(b[40:], maxChunks); return b }, ErrIntegrity)
	if _, err := (ObjectHeader{FileID: h.FileID}).MarshalBinary(); err == nil {
		t.Error("MarshalBinary accepted a zero object ID")
	}
}

// TestChunkLayoutMatchesSpec opens chunks with a plain AES-GCM and an AD built from the text
// of FORMAT.md, so that the code cannot drift from the spec unnoticed.
func TestChunkLayoutMatchesSpec(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewContentCipher(&key)
	if err != nil {
		t.Fatal(err)
	}
	h := testHeader(t, 7)
	firstBlock := uint64(0)
	if tl.version == 2 {
		// Version 2 objects may start inside a chunk: index 16·first + firstBlock + k.
		h.FirstBlock, firstBlock = 3, 3
	}
	plain := pattern(ChunkSize + 10)
	obj := writeObject(t, c, h, plain)
	block, _ := aes.NewCipher(key[:])
	gcm, _ := cipher.NewGCM(block)
	// Version 1: 64 KiB chunks, absolute index = first + k; version 2: 4 KiB chunks,
	// absolute index = 16·first + k.
	shift, perUnit := map[uint8]byte{1: 16, 2: 12}[tl.version], map[uint8]uint64{1: 1, 2: 16}[tl.version]
	size := 1 << shift
	n := (len(plain) + size - 1) / size
	for k := range n {
		ad := []byte(fmt.Sprintf("dsh v%d content chunk", tl.version))
		ad = append(ad, tl.version, shift)
		ad = append(ad, h.FileID[:]...)
		ad = append(ad, h.ObjectID[:]...)
		ad = binary.BigEndian.AppendUint64(ad, 7*perUnit+firstBlock+uint64(k))
		ad = append(ad, map[bool]byte{false: 0, true: 1}[k == n-1])
		s := ObjectHeaderSize + k*(size+28)
		e := min(s+size+28, len(obj))
		got, err := gcm.Open(nil, obj[s:s+12], obj[s+12:e], ad)
		if err != nil {
			t.Fatalf("chunk %d does not open with the AD of FORMAT.md: %v", k, err)
		}
		if !bytes.Equal(got, plain[k*size:min(len(plain), (k+1)*size)]) {
			t.Fatalf("chunk %d: wrong plaintext", k)
		}
	}
}

func TestTamperEveryRegion(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 3)
	obj := writeObject(t, c, h, pattern(2*ChunkSize+100))
	var spots []int
	for i := range ObjectHeaderSize {
		spots = append(spots, i)
	}
	for k := range 3 {
		s, e := chunkAt(obj, k)
		spots = append(spots, s, s+11, // nonce
			s+12, (s+e)/2, e-17, // ciphertext
			e-16, e-1) // tag
	}
	for _, at := range spots {
		for _, flip := range []byte{0x01, 0x80} {
			bad := bytes.Clone(obj)
			bad[at] ^= flip
			mustFailIntegrity(t, "flipped byte", bad, c, h)
		}
	}
}

func TestChunkFromAnotherFile(t *testing.T) {
	// Same key, same object ID, same first chunk: only the file ID tells the chunks apart.
	c := testCipher(t)
	a := testHeader(t, 0)
	b := a
	b.FileID[0] ^= 1
	objA := writeObject(t, c, a, pattern(3*ChunkSize))
	objB := writeObject(t, c, b, pattern(3*ChunkSize))
	s, e := chunkAt(objA, 1)
	bad := bytes.Clone(objA)
	copy(bad[s:e], objB[s:e])
	mustFailIntegrity(t, "chunk of another file", bad, c, a)
}

func TestChunkFromAnotherObject(t *testing.T) {
	// An older version of the same file's chunks: only the object ID tells them apart.
	c := testCipher(t)
	old := testHeader(t, 4)
	cur := old
	cur.ObjectID[0] ^= 1
	objOld := writeObject(t, c, old, pattern(3*ChunkSize))
	objCur := writeObject(t, c, cur, pattern(3*ChunkSize))
	s, e := chunkAt(objCur, 1)
	bad := bytes.Clone(objCur)
	copy(bad[s:e], objOld[s:e])
	mustFailIntegrity(t, "chunk of an older object", bad, c, cur)
}

func TestReorderedChunks(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 0)
	obj := writeObject(t, c, h, pattern(3*ChunkSize))
	s0, e0 := chunkAt(obj, 0)
	s1, e1 := chunkAt(obj, 1)
	bad := bytes.Clone(obj)
	copy(bad[s0:e0], obj[s1:e1])
	copy(bad[s1:e1], obj[s0:e0])
	mustFailIntegrity(t, "chunks 0 and 1 swapped", bad, c, h)
}

func TestTruncatedObject(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 0)
	partial := writeObject(t, c, h, pattern(3*ChunkSize+100))
	full := writeObject(t, c, h, pattern(3*ChunkSize))
	cases := map[string][]byte{
		"last partial chunk dropped": partial[:ObjectHeaderSize+3*sealedLen()],
		"last full chunk dropped":    full[:ObjectHeaderSize+2*sealedLen()],
		"two chunks dropped":         full[:ObjectHeaderSize+sealedLen()],
		"cut to the header":          full[:ObjectHeaderSize],
		"cut to nothing":             full[:0],
		"cut inside the header":      full[:20],
		"cut to an empty chunk":      full[:ObjectHeaderSize+ChunkOverhead],
		"cut in the first chunk":     full[:ObjectHeaderSize+100],
		"cut a byte short":           full[:len(full)-1],
		"cut in the last tag":        partial[:len(partial)-10],
		"cut leaving a short chunk":  partial[:ObjectHeaderSize+3*sealedLen()+ChunkOverhead+50],
	}
	for name, obj := range cases {
		mustFailIntegrity(t, name, obj, c, h)
	}
}

func TestAppendedChunk(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 0)
	obj := writeObject(t, c, h, pattern(2*ChunkSize))
	s, e := chunkAt(obj, 1)
	mustFailIntegrity(t, "last chunk repeated", append(bytes.Clone(obj), obj[s:e]...), c, h)
	other := writeObject(t, c, h, nil) // same IDs, one empty flagged chunk
	mustFailIntegrity(t, "empty last chunk appended", append(bytes.Clone(obj), other[ObjectHeaderSize:]...), c, h)
}

func TestReplayedObject(t *testing.T) {
	c := testCipher(t)
	old := testHeader(t, 0)
	cur := old
	var err error
	if cur.ObjectID, err = NewObjectID(); err != nil {
		t.Fatal(err)
	}
	objOld := writeObject(t, c, old, []byte("old content"))
	writeObject(t, c, cur, []byte("new content"))
	mustFailIntegrity(t, "old object in place of the new", objOld, c, cur)
	// Rewriting the old header to name the new object does not help: every chunk
	// authenticates the object ID.
	relabelled := bytes.Clone(objOld)
	copy(relabelled[24:40], cur.ObjectID[:])
	mustFailIntegrity(t, "old object relabelled", relabelled, c, cur)
}

func TestHeaderMustMatchMetadata(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 2)
	obj := writeObject(t, c, h, pattern(100))
	otherFile := h
	otherFile.FileID[15] ^= 1
	mustFailIntegrity(t, "other file ID expected", obj, c, otherFile)
	otherStart := h
	otherStart.FirstChunk = 3
	mustFailIntegrity(t, "other first chunk expected", obj, c, otherStart)
}

func TestWrongContentKey(t *testing.T) {
	h := testHeader(t, 0)
	obj := writeObject(t, testCipher(t), h, pattern(ChunkSize+1))
	mustFailIntegrity(t, "wrong key", obj, testCipher(t), h)
}

// TestReadAtStopsAtBadChunk checks that a read over a damaged chunk hands out the
// authenticated bytes before it and nothing of the damaged one, not even in p beyond n.
func TestReadAtStopsAtBadChunk(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 0)
	plain := pattern(4 * ChunkSize)
	obj := writeObject(t, c, h, plain)
	s, _ := chunkAt(obj, 2)
	obj[s+100] ^= 1 // flips one bit of the plaintext a careless reader would return
	r, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)), c, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 10} { // aligned (decrypts into p) and not (via scratch)
		p := bytes.Repeat([]byte{0xAA}, 3*ChunkSize)
		n, err := r.ReadAt(p, off)
		if !errors.Is(err, ErrIntegrity) {
			t.Fatalf("off %d: error %v, want ErrIntegrity", off, err)
		}
		if want := 2*chunkLen() - int(off); n != want || !bytes.Equal(p[:n], plain[off:off+int64(n)]) {
			t.Fatalf("off %d: n = %d, want %d authentic bytes", off, n, want)
		}
		for i, b := range p[n : n+chunkLen()-int(off)] {
			if b != 0 && b != 0xAA {
				t.Fatalf("off %d: byte %d of the damaged chunk leaked into p", off, i)
			}
		}
	}
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestObjectWriterErrors(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 0)
	if _, err := NewObjectWriter(&failingWriter{}, c, h); err == nil {
		t.Error("header write error was not returned")
	}
	if _, err := NewObjectWriter(io.Discard, nil, h); err == nil {
		t.Error("nil cipher accepted")
	}
	if _, err := NewObjectWriter(io.Discard, c, ObjectHeader{ObjectID: h.ObjectID}); err == nil {
		t.Error("zero file ID accepted")
	}
	w, err := NewObjectWriter(&failingWriter{after: 1}, c, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 2*ChunkSize)); err == nil {
		t.Fatal("chunk write error was not returned")
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Error("Write after a failure succeeded")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after a failure succeeded")
	}
	w, _ = NewObjectWriter(io.Discard, c, h)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded")
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestChunkIndexLimit(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, maxChunks-1)
	obj := writeObject(t, c, h, pattern(ChunkSize)) // exactly fills the last index
	if got, err := openAll(obj, c, h); err != nil || !bytes.Equal(got, pattern(ChunkSize)) {
		t.Fatalf("object at the last index: %v", err)
	}
	w, err := NewObjectWriter(io.Discard, c, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, ChunkSize+1)); err == nil {
		t.Error("an object past the largest chunk index was written")
	}
	h.FirstChunk = maxChunks
	if _, err := NewObjectWriter(io.Discard, c, h); err == nil {
		t.Error("a first chunk beyond the largest index was accepted")
	}
}

func TestNewContentCipherRefusesWipedKey(t *testing.T) {
	k, _ := NewKey()
	k.Wipe()
	if _, err := NewContentCipher(&k); err == nil {
		t.Error("a wiped key was accepted")
	}
	if _, err := NewContentCipher(nil); err == nil {
		t.Error("a nil key was accepted")
	}
}

func TestConcurrentReadAt(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 0)
	plain := pattern(6*ChunkSize + 5)
	obj := writeObject(t, c, h, plain)
	r, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)), c, h)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for range 100 {
				off := rng.Int64N(int64(len(plain)))
				p := make([]byte, rng.IntN(2*ChunkSize)+1)
				n, err := r.ReadAt(p, off)
				if err != nil && err != io.EOF || !bytes.Equal(p[:n], plain[off:off+int64(n)]) {
					t.Errorf("concurrent ReadAt(%d at %d): %d, %v", len(p), off, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestObjectWriterAllocatesNothingPerChunk(t *testing.T) {
	w, err := NewObjectWriter(io.Discard, testCipher(t), testHeader(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	chunk := pattern(ChunkSize)
	if allocs := testing.AllocsPerRun(100, func() { w.Write(chunk) }); allocs != 0 {
		t.Errorf("ObjectWriter.Write allocates %.1f times per chunk, want 0", allocs)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReaderOfKnownSize checks NewObjectReaderOfSize: an object of another size than the
// metadata's is refused at open, whatever was cut or added, and a damaged last chunk,
// which it does not read at open, fails the read that reaches it and no other.
func TestReaderOfKnownSize(t *testing.T) {
	c := testCipher(t)
	h := testHeader(t, 3)
	plain := pattern(3*ChunkSize + 100)
	obj := writeObject(t, c, h, plain)
	open := func(o []byte, want int64) (*ObjectReader, error) {
		return NewObjectReaderOfSize(bytes.NewReader(o), int64(len(o)), c, h, want)
	}
	if _, err := open(obj, int64(len(plain))); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string][]byte{
		"last chunk dropped": obj[:len(obj)-(100+ChunkOverhead)],
		"a chunk appended":   append(bytes.Clone(obj), obj[ObjectHeaderSize:ObjectHeaderSize+sealedLen()]...),
		"cut in a chunk":     obj[:len(obj)-10],
	} {
		if _, err := open(o, int64(len(plain))); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v, want ErrIntegrity", name, err)
		}
	}
	if _, err := open(obj, int64(len(plain))-1); !errors.Is(err, ErrIntegrity) {
		t.Errorf("other expected size: %v", err)
	}
	bad := bytes.Clone(obj)
	bad[len(bad)-5] ^= 1
	r, err := open(bad, int64(len(plain)))
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)
	if _, err := r.ReadAt(p, 0); err != nil || !bytes.Equal(p, plain[:100]) {
		t.Fatalf("first chunk of an object with a damaged last chunk: %v", err)
	}
	if _, err := r.ReadAt(p, int64(len(plain))-100); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("damaged last chunk read: %v, want ErrIntegrity", err)
	}
	// A small object relabelled to the other version keeps its size: it opens, and no
	// byte of it reads.
	small := writeObject(t, c, h, pattern(100))
	other := &formatV1
	if tl == &formatV1 {
		other = &formatV2
	}
	relabelled := bytes.Clone(small)
	relabelled[4], relabelled[5] = other.version, other.shift
	if r, err := open(relabelled, 100); err == nil {
		if n, err := r.ReadAt(p, 0); !errors.Is(err, ErrIntegrity) || n != 0 {
			t.Fatalf("relabelled object read %d bytes, %v", n, err)
		}
	} else if !errors.Is(err, ErrIntegrity) {
		t.Fatal(err)
	}
	// An empty object is checked at open: there is no read to wait for.
	empty := writeObject(t, c, h, nil)
	empty[len(empty)-1] ^= 1
	if _, err := open(empty, 0); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("damaged empty object: %v", err)
	}
}
