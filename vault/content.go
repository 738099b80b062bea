package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"

	"dsh/internal/secmem"
)

// Sizes of the content format (FORMAT.md section 4).
const (
	// ChunkSize is the unit in which content is placed: ObjectHeader.FirstChunk counts
	// them, and package content buffers whole ones. In version 1 it is also the sealed
	// chunk and objects start at a multiple of it; version 2 seals it as BlockSize pieces,
	// so that a small random read authenticates only what it needs, and lets an object
	// start at any of them (ObjectHeader.FirstBlock), so that a patch is a few blocks.
	ChunkSize = 1 << chunkShift
	// BlockSize is the plaintext size of the sealed chunks of version 2, the version new
	// objects are written in.
	BlockSize = 1 << blockShift
	// ChunkOverhead is what sealing adds to a chunk: a 12-byte nonce and a 16-byte tag.
	ChunkOverhead = 12 + 16
	// ObjectHeaderSize is the size of the header that starts every object.
	ObjectHeaderSize = 48
)

const (
	// objectVersion is the version new objects are written in; every version up to it is
	// read.
	objectVersion = 2
	chunkShift    = 16
	blockShift    = 12
	// maxChunks bounds absolute chunk indexes so that byte offsets index·ChunkSize fit an int64.
	maxChunks   = 1 << (63 - chunkShift)
	chunkADSize = len("dsh v1 content chunk") + 1 + 1 + 16 + 16 + 8 + 1
)

// format is what an object's version fixes: the size of its sealed chunks and the domain
// of their additional data. Each version allows exactly one chunk size, so that one header
// has one encoding.
type format struct {
	version uint8
	shift   uint8  // log2 of the sealed chunk's plaintext size
	chunk   int64  // plaintext size of a sealed chunk
	sealed  int64  // its stored size
	perUnit uint64 // sealed chunks per ChunkSize: the absolute index of chunk k is FirstChunk·perUnit + k
	domain  string // of the additional data; every version's is the same length
}

var (
	formatV1 = format{version: 1, shift: chunkShift, chunk: ChunkSize, sealed: ChunkSize + ChunkOverhead, perUnit: 1, domain: "dsh v1 content chunk"}
	formatV2 = format{version: 2, shift: blockShift, chunk: BlockSize, sealed: BlockSize + ChunkOverhead, perUnit: ChunkSize / BlockSize, domain: "dsh v2 content chunk"}
	// current is the format of objectVersion.
	current = formatV2
)

// formatOf returns the format of a version this dsh reads.
func formatOf(v uint8) (format, bool) {
	switch v {
	case 1:
		return formatV1, true
	case 2:
		return formatV2, true
	}
	return format{}, false
}

var objectMagic = []byte("DSHO")

// Sentinel errors of the content and key formats. Callers match them with errors.Is.
var (
	// ErrIntegrity is wrapped by every error that stored content or a wrapped key failed to
	// authenticate or is malformed: a changed byte, a moved, reordered or missing chunk, a
	// replayed object, or the wrong key. The filesystem turns it into EIO.
	ErrIntegrity = errors.New("content integrity check failed")
	// ErrUnsupportedVersion is wrapped when stored data carries a format version this dsh
	// does not know, most likely because a newer dsh wrote it.
	ErrUnsupportedVersion = errors.New("format version not supported by this dsh")
)

// FileID names a file's content for the whole life of the file: it is authenticated with
// every chunk, so that no chunk can be moved to another file.
type FileID [16]byte

// ObjectID names one immutable object. A new one is drawn for every object written, so an
// older object of the same file can never stand in for the one the metadata points at.
type ObjectID [16]byte

// NewFileID returns a random file ID.
func NewFileID() (FileID, error) {
	var id FileID
	if _, err := io.ReadFull(rand.Reader, id[:]); err != nil {
		return FileID{}, fmt.Errorf("generate file ID: %w", err)
	}
	return id, nil
}

// NewObjectID returns a random object ID.
func NewObjectID() (ObjectID, error) {
	var id ObjectID
	if _, err := io.ReadFull(rand.Reader, id[:]); err != nil {
		return ObjectID{}, fmt.Errorf("generate object ID: %w", err)
	}
	return id, nil
}

// String returns the ID in lower-case hex.
func (id FileID) String() string { return hex.EncodeToString(id[:]) }

// String returns the ID in lower-case hex.
func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

// ContentCipher seals and opens the chunks of one file under its content key. It is safe
// for concurrent use. It holds AES's expanded key schedule, which cannot be wiped: drop it
// when the key's session ends.
type ContentCipher struct {
	aead cipher.AEAD
}

// NewContentCipher returns the cipher for a file's content key. The caller may wipe key
// afterwards.
func NewContentCipher(key *Key) (*ContentCipher, error) {
	if key == nil || key.IsZero() {
		// An all-zero key is what a wiped key looks like; sealing under it would be a silent
		// disaster, so refuse it.
		return nil, errors.New("content cipher: no content key (nil or wiped)")
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("content cipher: %w", err)
	}
	// The standard library draws the nonce and lays it out in front of the ciphertext, which
	// is exactly the chunk layout; no nonce handling of our own to get wrong.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("content cipher: %w", err)
	}
	return &ContentCipher{aead: aead}, nil
}

// ObjectHeader is what an object's header says, and what the metadata expects it to say.
type ObjectHeader struct {
	FileID     FileID
	ObjectID   ObjectID
	FirstChunk uint64 // absolute index of the chunk the object starts in
	// FirstBlock is the block of that chunk at which the object starts: a patch of one
	// 4 KiB write is one block, not a whole chunk. Version 2 only; version 1 seals whole
	// chunks, so its objects start at a chunk's start and this is 0.
	FirstBlock uint8
	// version is the format version a parsed header carries; the metadata does not record
	// it (every chunk's additional data does), so comparisons ignore it.
	version uint8
}

func (h *ObjectHeader) validate() error {
	switch {
	case h.FileID == FileID{}:
		return errors.New("file ID is zero")
	case h.ObjectID == ObjectID{}:
		return errors.New("object ID is zero")
	case h.FirstChunk >= maxChunks:
		return fmt.Errorf("first chunk %d is beyond the largest chunk index", h.FirstChunk)
	case h.FirstBlock >= ChunkSize/BlockSize:
		return fmt.Errorf("first block %d is beyond the %d blocks of a chunk", h.FirstBlock, ChunkSize/BlockSize)
	}
	return nil
}

// base is the absolute index, in l's sealed chunks, of the object's first sealed chunk.
func (h *ObjectHeader) base(l *format) uint64 {
	return h.FirstChunk*l.perUnit + uint64(h.FirstBlock)
}

// MarshalBinary returns the 48-byte header. A zero ID is refused: it means the caller forgot
// to draw one.
func (h ObjectHeader) MarshalBinary() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("object header: %w", err)
	}
	b := make([]byte, 0, ObjectHeaderSize)
	b = append(b, objectMagic...)
	b = append(b, current.version, current.shift, h.FirstBlock, 0)
	b = append(b, h.FileID[:]...)
	b = append(b, h.ObjectID[:]...)
	return binary.BigEndian.AppendUint64(b, h.FirstChunk), nil
}

// ParseObjectHeader parses a 48-byte object header. It accepts exactly what MarshalBinary
// writes, so that one header has one encoding; anything else wraps ErrIntegrity, or
// ErrUnsupportedVersion for a newer version.
func ParseObjectHeader(b []byte) (ObjectHeader, error) {
	if len(b) != ObjectHeaderSize {
		return ObjectHeader{}, fmt.Errorf("%w: object header is %d bytes, not %d", ErrIntegrity, len(b), ObjectHeaderSize)
	}
	if !bytes.Equal(b[:4], objectMagic) {
		return ObjectHeader{}, fmt.Errorf("%w: not a dsh object (bad magic)", ErrIntegrity)
	}
	l, ok := formatOf(b[4])
	if !ok {
		if b[4] > objectVersion {
			return ObjectHeader{}, fmt.Errorf("object header: version %d: %w", b[4], ErrUnsupportedVersion)
		}
		return ObjectHeader{}, fmt.Errorf("%w: object header: invalid version %d", ErrIntegrity, b[4])
	}
	if b[5] != l.shift {
		return ObjectHeader{}, fmt.Errorf("%w: object header: chunk size 2^%d is not allowed in version %d", ErrIntegrity, b[5], l.version)
	}
	if b[7] != 0 {
		return ObjectHeader{}, fmt.Errorf("%w: object header: reserved byte is not zero", ErrIntegrity)
	}
	if uint64(b[6]) >= l.perUnit {
		// Version 1 has one sealed chunk per chunk, so its objects start at block 0.
		return ObjectHeader{}, fmt.Errorf("%w: object header: first block %d is not allowed in version %d", ErrIntegrity, b[6], l.version)
	}
	var h ObjectHeader
	h.FirstBlock = b[6]
	copy(h.FileID[:], b[8:24])
	copy(h.ObjectID[:], b[24:40])
	h.FirstChunk = binary.BigEndian.Uint64(b[40:48])
	if err := h.validate(); err != nil {
		return ObjectHeader{}, fmt.Errorf("%w: object header: %w", ErrIntegrity, err)
	}
	h.version = l.version
	return h, nil
}

// ObjectSize returns the stored size of an object holding plaintext bytes, in the version
// new objects are written in.
func ObjectSize(plaintext int64) (int64, error) { return current.objectSize(plaintext) }

func (l format) objectSize(plaintext int64) (int64, error) {
	if plaintext < 0 {
		return 0, fmt.Errorf("object size: negative plaintext size %d", plaintext)
	}
	n := l.chunkCount(plaintext)
	if plaintext > math.MaxInt64-ObjectHeaderSize-n*ChunkOverhead {
		return 0, fmt.Errorf("object size: plaintext of %d bytes is too large", plaintext)
	}
	return ObjectHeaderSize + plaintext + n*ChunkOverhead, nil
}

// PlaintextSize returns the plaintext size of an object of objectSize stored bytes in the
// version new objects are written in. A size that no object can have (cut inside a chunk
// or down to the header) wraps ErrIntegrity.
func PlaintextSize(objectSize int64) (int64, error) { return current.plaintextSize(objectSize) }

func (l format) plaintextSize(objectSize int64) (int64, error) {
	if objectSize >= ObjectHeaderSize+ChunkOverhead {
		body := objectSize - ObjectHeaderSize
		q, r := body/l.sealed, body%l.sealed
		switch {
		case r == 0:
			return q * l.chunk, nil
		case r > ChunkOverhead:
			return q*l.chunk + r - ChunkOverhead, nil
		case r == ChunkOverhead && q == 0:
			return 0, nil
		}
	}
	return 0, fmt.Errorf("%w: no object can be %d bytes long", ErrIntegrity, objectSize)
}

// Seals returns how many chunks an object of plaintext bytes seals under its file's key
// in the version new objects are written in: what the per-key budget of FORMAT.md counts.
func Seals(plaintext int64) uint64 { return uint64(current.chunkCount(plaintext)) }

// chunkCount is how many chunks hold plaintext bytes: at least one, since an empty object
// still carries a flagged chunk that proves it is complete.
func (l format) chunkCount(plaintext int64) int64 {
	n := plaintext / l.chunk
	if plaintext%l.chunk != 0 || n == 0 {
		n++
	}
	return n
}

// chunkAD is the additional data of one chunk (FORMAT.md section 4). It lives in
// long-lived buffers because a slice passed through the cipher.AEAD interface escapes, and
// a fresh one per chunk would allocate.
type chunkAD [chunkADSize]byte

const (
	adIndex = chunkADSize - 9
	adLast  = chunkADSize - 1
)

func (a *chunkAD) setHeader(l *format, h *ObjectHeader) {
	n := copy(a[:], l.domain)
	a[n] = l.version
	a[n+1] = l.shift
	n += 2
	n += copy(a[n:], h.FileID[:])
	copy(a[n:], h.ObjectID[:])
}

func (a *chunkAD) setChunk(index uint64, last bool) {
	binary.BigEndian.PutUint64(a[adIndex:adLast], index)
	a[adLast] = 0
	if last {
		a[adLast] = 1
	}
}

// chunkBuffers is the scratch space of one chunk on its way in or out: both writers and
// readers take one from chunkPool, so the steady state allocates nothing.
type chunkBuffers struct {
	plain [ChunkSize]byte // the largest chunk of any version
	// sealed holds one sealed chunk of version 1, or a ChunkSize of version 2's: a read
	// fetches that many small chunks with one system call.
	sealed [ChunkSize + ChunkSize/BlockSize*ChunkOverhead]byte
	ad     chunkAD
}

// chunkPool keeps the buffers in secret memory (locked, out of core dumps): they hold
// plaintext. chunkBuffers holds no pointers, as secmem requires.
var chunkPool secmem.Pool[chunkBuffers]

// ObjectWriter seals a stream of plaintext into one object. It is not safe for concurrent
// use. Close must be called to seal the last chunk; without it the object is incomplete and
// will not open.
type ObjectWriter struct {
	w       io.Writer
	c       *ContentCipher
	l       *format
	buf     *chunkBuffers
	n       int    // plaintext bytes waiting in buf.plain
	index   uint64 // absolute index of the chunk in buf.plain
	written int64
	err     error // sticky: after a failed write the object is unusable
}

var errWriterClosed = errors.New("object writer is closed")

// NewObjectWriter writes h to w and returns a writer for the object's plaintext. The caller
// draws a fresh ObjectID for every object and records h in the metadata.
func NewObjectWriter(w io.Writer, c *ContentCipher, h ObjectHeader) (*ObjectWriter, error) {
	return newObjectWriter(w, c, h, &current)
}

// newObjectWriter writes an object in format l: older versions only for tests.
func newObjectWriter(w io.Writer, c *ContentCipher, h ObjectHeader, l *format) (*ObjectWriter, error) {
	if c == nil {
		return nil, errors.New("new object writer: no content cipher")
	}
	hdr, err := h.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("new object writer: %w", err)
	}
	if uint64(h.FirstBlock) >= l.perUnit {
		return nil, fmt.Errorf("new object writer: version %d objects cannot start at block %d", l.version, h.FirstBlock)
	}
	hdr[4], hdr[5] = l.version, l.shift
	if _, err := w.Write(hdr); err != nil {
		return nil, fmt.Errorf("object %s: write header: %w", h.ObjectID, err)
	}
	buf := chunkPool.Get()
	buf.ad.setHeader(l, &h)
	return &ObjectWriter{w: w, c: c, l: l, buf: buf, index: h.base(l)}, nil
}

// Write buffers p and seals every chunk that is known not to be the last. A full chunk is
// held back until the next byte arrives, because only then is it certain that the chunk
// must not carry the last-chunk flag.
func (ow *ObjectWriter) Write(p []byte) (int, error) {
	if ow.err != nil {
		return 0, ow.err
	}
	done := 0
	for len(p) > 0 {
		if ow.n == int(ow.l.chunk) {
			if ow.index+1 >= maxChunks*ow.l.perUnit {
				ow.err = fmt.Errorf("object runs past the largest chunk index %d", maxChunks-1)
				return done, ow.err
			}
			if err := ow.seal(false); err != nil {
				return done, err
			}
		}
		k := copy(ow.buf.plain[ow.n:ow.l.chunk], p)
		ow.n += k
		ow.written += int64(k)
		done += k
		p = p[k:]
	}
	return done, nil
}

func (ow *ObjectWriter) seal(last bool) error {
	ow.buf.ad.setChunk(ow.index, last)
	sealed := ow.c.aead.Seal(ow.buf.sealed[:0], nil, ow.buf.plain[:ow.n], ow.buf.ad[:])
	if _, err := ow.w.Write(sealed); err != nil {
		ow.err = fmt.Errorf("write chunk %d: %w", ow.index, err)
		return ow.err
	}
	ow.index++
	ow.n = 0
	return nil
}

// Written returns the number of plaintext bytes accepted so far.
func (ow *ObjectWriter) Written() int64 { return ow.written }

// Close seals the last chunk (possibly empty) with the last-chunk flag and writes it. It
// does not close the underlying writer. After a failed Write, Close returns that error and
// the object must be discarded.
func (ow *ObjectWriter) Close() error {
	if ow.buf == nil {
		return errWriterClosed
	}
	err := ow.err
	if err == nil {
		err = ow.seal(true)
	}
	// The plaintext of the last chunk sealed is still in the buffer; do not leave it for the
	// pool's next user or the garbage collector.
	clear(ow.buf.plain[:min(ow.written, ChunkSize)])
	chunkPool.Put(ow.buf)
	ow.buf = nil
	ow.err = errWriterClosed
	return err
}

// ObjectReader reads the plaintext of one object at random offsets, authenticating every
// chunk it uses. It is safe for concurrent use, as io.ReaderAt requires.
type ObjectReader struct {
	r      io.ReaderAt
	c      *ContentCipher
	h      ObjectHeader
	l      *format
	size   int64 // plaintext
	chunks int64
}

// NewObjectReader opens an object of size stored bytes read from r, checking that its
// header is the one the metadata expects (want) and that its last chunk authenticates, so
// that Size is trustworthy and a truncated object fails here rather than at its end. Any
// mismatch wraps ErrIntegrity; I/O errors of r are returned wrapped as they are.
func NewObjectReader(r io.ReaderAt, size int64, c *ContentCipher, want ObjectHeader) (*ObjectReader, error) {
	return newObjectReader(r, size, c, want, -1)
}

// NewObjectReaderOfSize is NewObjectReader for a caller that knows, from authenticated
// metadata, how many plaintext bytes the object holds: an object of another size is
// refused, and the last chunk is authenticated by the read that uses it rather than at
// open. Nothing is checked less: a cut or extended object has another size, and every
// chunk read is authenticated with its index and last-chunk mark. It spares a read and a
// decryption for each object opened for a small read. The header's version and chunk
// size, like every chunk's bytes, are then authenticated by the first read (they are in
// each chunk's AD): a relabelled object opens but none of its bytes read.
func NewObjectReaderOfSize(r io.ReaderAt, size int64, c *ContentCipher, want ObjectHeader, plaintext int64) (*ObjectReader, error) {
	if plaintext < 0 {
		return nil, fmt.Errorf("open object %s: negative expected size %d", want.ObjectID, plaintext)
	}
	return newObjectReader(r, size, c, want, plaintext)
}

// newObjectReader opens an object; with expect ≥ 0, of exactly that plaintext size and
// without reading its last chunk.
func newObjectReader(r io.ReaderAt, size int64, c *ContentCipher, want ObjectHeader, expect int64) (*ObjectReader, error) {
	if r == nil || c == nil {
		return nil, errors.New("open object: no reader or no content cipher")
	}
	if err := want.validate(); err != nil {
		return nil, fmt.Errorf("open object: expected header: %w", err)
	}
	if size < ObjectHeaderSize+ChunkOverhead {
		return nil, fmt.Errorf("object %s: %w: no object can be %d bytes long", want.ObjectID, ErrIntegrity, size)
	}
	var hb [ObjectHeaderSize]byte
	if err := readFullAt(r, hb[:], 0); err != nil {
		return nil, fmt.Errorf("object %s: read header: %w", want.ObjectID, err)
	}
	h, err := ParseObjectHeader(hb[:])
	if errors.Is(err, ErrUnsupportedVersion) {
		// The metadata that names this object was written by this dsh or an older one, so
		// a newer version here is a mismatch as much as a changed byte is.
		err = fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", want.ObjectID, err)
	}
	if err := want.mismatch(&h); err != nil {
		return nil, fmt.Errorf("object %s: %w", want.ObjectID, err)
	}
	l, _ := formatOf(h.version)
	plain, err := l.plaintextSize(size)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", want.ObjectID, err)
	}
	or := &ObjectReader{r: r, c: c, h: h, l: &l, size: plain, chunks: l.chunkCount(plain)}
	if h.base(&l)+uint64(or.chunks) > maxChunks*l.perUnit {
		return nil, fmt.Errorf("%w: object %s runs past the largest chunk index", ErrIntegrity, h.ObjectID)
	}
	if expect >= 0 {
		if plain != expect {
			return nil, fmt.Errorf("%w: object %s holds %d bytes, the metadata says %d", ErrIntegrity, h.ObjectID, plain, expect)
		}
		if plain > 0 {
			// Its first read authenticates the header's version and chunk size too (they
			// are in every chunk's AD). An empty object has no read to wait for: its one
			// chunk is checked now.
			return or, nil
		}
	}
	buf := chunkPool.Get()
	defer chunkPool.Put(buf)
	last, err := or.openChunk(buf, or.chunks-1, buf.plain[:0])
	clear(last)
	if err != nil {
		return nil, err
	}
	return or, nil
}

// mismatch names the first field in which the stored header got differs from h, the one
// the metadata expects.
func (h *ObjectHeader) mismatch(got *ObjectHeader) error {
	switch {
	case got.FileID != h.FileID:
		return fmt.Errorf("%w: object belongs to another file", ErrIntegrity)
	case got.ObjectID != h.ObjectID:
		return fmt.Errorf("%w: object is not the one the metadata names (an older or foreign object?)", ErrIntegrity)
	case got.FirstChunk != h.FirstChunk || got.FirstBlock != h.FirstBlock:
		return fmt.Errorf("%w: object starts at block %d of chunk %d, the metadata says block %d of chunk %d", ErrIntegrity,
			got.FirstBlock, got.FirstChunk, h.FirstBlock, h.FirstChunk)
	}
	return nil
}

// Size returns the plaintext size of the object, as authenticated by its last chunk, or
// as the metadata gave it to NewObjectReaderOfSize.
func (or *ObjectReader) Size() int64 { return or.size }

// chunkLen is the plaintext length of chunk k (relative to the object).
func (or *ObjectReader) chunkLen(k int64) int {
	if k == or.chunks-1 {
		return int(or.size - k*or.l.chunk)
	}
	return int(or.l.chunk)
}

// openChunk reads chunk k (relative to the object) and appends its plaintext to dst. dst
// must not overlap buf.
func (or *ObjectReader) openChunk(buf *chunkBuffers, k int64, dst []byte) ([]byte, error) {
	if err := or.fetch(buf, k, 1); err != nil {
		return nil, err
	}
	return or.openFetched(buf, k, 0, dst)
}

// fetch reads the stored bytes of m chunks from chunk k into buf.sealed.
func (or *ObjectReader) fetch(buf *chunkBuffers, k, m int64) error {
	end := ObjectHeaderSize + (k+m-1)*or.l.sealed + int64(or.chunkLen(k+m-1)) + ChunkOverhead
	start := ObjectHeaderSize + k*or.l.sealed
	if err := readFullAt(or.r, buf.sealed[:end-start], start); err != nil {
		return fmt.Errorf("object %s: read chunk %d: %w", or.h.ObjectID, or.h.base(or.l)+uint64(k), err)
	}
	return nil
}

// openFetched authenticates chunk k, the j-th that fetch read into buf, and appends its
// plaintext to dst. dst must not overlap buf.
func (or *ObjectReader) openFetched(buf *chunkBuffers, k, j int64, dst []byte) ([]byte, error) {
	index := or.h.base(or.l) + uint64(k)
	sealed := buf.sealed[j*or.l.sealed : j*or.l.sealed+int64(or.chunkLen(k))+ChunkOverhead]
	buf.ad.setHeader(or.l, &or.h)
	buf.ad.setChunk(index, k == or.chunks-1)
	pt, err := or.c.aead.Open(dst, nil, sealed, buf.ad[:])
	if err != nil {
		return nil, fmt.Errorf("%w: object %s chunk %d", ErrIntegrity, or.h.ObjectID, index)
	}
	return pt, nil
}

// ReadAt reads len(p) plaintext bytes at offset off of the object, decrypting only the
// chunks that hold them. If a chunk fails to authenticate it returns the bytes of the chunks
// before it and an error wrapping ErrIntegrity; p beyond those bytes holds nothing of the
// bad chunk. Reads past the end return io.EOF, as io.ReaderAt requires.
func (or *ObjectReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("object %s: read at negative offset %d", or.h.ObjectID, off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= or.size {
		return 0, io.EOF
	}
	want := p
	if rest := or.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	buf := chunkPool.Get()
	defer chunkPool.Put(buf)
	n := 0
	lastK := (off + int64(len(want)) - 1) / or.l.chunk
	perFetch := int64(len(buf.sealed)) / or.l.sealed
	for n < len(want) {
		// The chunks the rest of the read needs, as many as buf holds, in one read.
		k0 := (off + int64(n)) / or.l.chunk
		m := min(lastK-k0+1, perFetch)
		if err := or.fetch(buf, k0, m); err != nil {
			return n, err
		}
		for j := range m {
			pos := off + int64(n)
			k, in := k0+j, int(pos%or.l.chunk)
			clen := or.chunkLen(k)
			if in == 0 && len(want)-n >= clen {
				// A whole chunk is wanted: decrypt straight into p and save a copy. The cap
				// keeps the AEAD from touching p beyond this chunk.
				dst := want[n : n : n+clen]
				if _, err := or.openFetched(buf, k, j, dst); err != nil {
					clear(want[n : n+clen])
					return n, err
				}
				n += clen
				continue
			}
			pt, err := or.openFetched(buf, k, j, buf.plain[:0])
			if err != nil {
				return n, err
			}
			n += copy(want[n:], pt[in:])
			clear(pt)
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readFullAt reads exactly len(p) bytes at off. A short read means the stored object is
// shorter than the size it was opened with.
func readFullAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
