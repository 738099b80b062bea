package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"io"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// The numbers in FORMAT.md ("Why AES-256-GCM", "Why 64 KiB chunks") come from
//
//	go test -run '^$' -bench . -benchmem ./vault/

const benchObjectSize = 16 << 20

// fuseIO is the size of the pieces FUSE moves by default (go-fuse's MaxWrite, the kernel's
// readahead), so the object benchmarks see the calls the filesystem will make.
const fuseIO = 128 << 10

func BenchmarkSeal(b *testing.B) {
	c := testCipher(b)
	h := testHeader(b, 0)
	plain := pattern(benchObjectSize)

	// 64 KiB as the current version seals it: sixteen 4 KiB chunks.
	b.Run("chunk=64KiB", func(b *testing.B) {
		var buf chunkBuffers
		copy(buf.plain[:], plain)
		buf.ad.setHeader(&current, &h)
		b.SetBytes(ChunkSize)
		b.ReportAllocs()
		var i uint64
		for b.Loop() {
			for k := int64(0); k < ChunkSize; k += current.chunk {
				buf.ad.setChunk(i, false)
				c.aead.Seal(buf.sealed[:0], nil, buf.plain[k:k+current.chunk], buf.ad[:])
				i++
			}
		}
	})

	// The writer's steady state: one more chunk into an open object.
	b.Run("writer-chunk=64KiB", func(b *testing.B) {
		w, err := NewObjectWriter(io.Discard, c, h)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(ChunkSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := w.Write(plain[:ChunkSize]); err != nil {
				b.Fatal(err)
			}
		}
		w.Close()
	})

	b.Run("object=16MiB", func(b *testing.B) {
		b.SetBytes(benchObjectSize)
		b.ReportAllocs()
		for b.Loop() {
			w, err := NewObjectWriter(io.Discard, c, h)
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < len(plain); off += fuseIO {
				if _, err := w.Write(plain[off : off+fuseIO]); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	c := testCipher(b)
	h := testHeader(b, 0)
	plain := pattern(benchObjectSize)
	obj := writeObject(b, c, h, plain)
	r, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)), c, h)
	if err != nil {
		b.Fatal(err)
	}

	// 64 KiB read and authenticated: one fetch of sixteen 4 KiB chunks.
	b.Run("chunk=64KiB", func(b *testing.B) {
		p := make([]byte, ChunkSize)
		b.SetBytes(ChunkSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.ReadAt(p, ChunkSize); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("object=16MiB", func(b *testing.B) {
		p := make([]byte, fuseIO)
		b.SetBytes(benchObjectSize)
		b.ReportAllocs()
		for b.Loop() {
			r, err := NewObjectReader(bytes.NewReader(obj), int64(len(obj)), c, h)
			if err != nil {
				b.Fatal(err)
			}
			for off := int64(0); off < r.Size(); off += fuseIO {
				if _, err := r.ReadAt(p, off); err != nil {
					b.Fatal(err)
				}
			}
		}
	})

	// What a random small read costs: one 4 KiB chunk (a whole 64 KiB one in version 1).
	b.Run("random-read=4KiB", func(b *testing.B) {
		p := make([]byte, 4<<10)
		rng := rand.New(rand.NewPCG(1, 1))
		b.SetBytes(int64(len(p)))
		b.ReportAllocs()
		for b.Loop() {
			off := rng.Int64N(r.Size()-int64(len(p))) &^ 4095
			if _, err := r.ReadAt(p, off); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchAEAD measures an AEAD alone on one 64 KiB chunk, with the content format's AD size.
func benchAEAD(b *testing.B, aead cipher.AEAD) {
	plain := pattern(ChunkSize)
	nonce := make([]byte, aead.NonceSize())
	ad := make([]byte, chunkADSize)
	sealed := aead.Seal(nil, nonce, plain, ad)
	out := make([]byte, 0, len(sealed))
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(ChunkSize)
		b.ReportAllocs()
		for b.Loop() {
			out = aead.Seal(out[:0], nonce, plain, ad)
		}
	})
	b.Run("open", func(b *testing.B) {
		b.SetBytes(ChunkSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := aead.Open(out[:0], nonce, sealed, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAESGCMRaw(b *testing.B) {
	key := newTestKey(b)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	benchAEAD(b, aead)
}

func BenchmarkXChaCha20Poly1305Raw(b *testing.B) {
	key := newTestKey(b)
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		b.Fatal(err)
	}
	benchAEAD(b, aead)
}
