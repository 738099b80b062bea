package content

import (
	"dsh/internal/secmem"
	"dsh/vault"
)

// chunkBuf holds one chunk of a file's unflushed data: the chunk's whole current content
// from its start, not only the bytes written, so that a read or a flush never needs to
// merge it with the stored object.
type chunkBuf struct {
	data [vault.ChunkSize]byte
	// n is a high-water mark: data[n:] is all zeros. Bytes between n and the end of the
	// chunk lie beyond the end of the file or were a hole, and zeros are their content
	// if the file grows over them.
	n int
	// dirty has bit k set when block k (vault.BlockSize bytes) of the chunk was written
	// since the chunk was last flushed: a flush that patches the chunk writes only those
	// blocks, so a 4 KiB write costs a 4 KiB patch. The other blocks hold the stored
	// content, read in when the chunk became dirty.
	dirty uint16
}

// blocksPerChunk is how many blocks (vault.BlockSize) a chunk holds: the unit of patches.
const blocksPerChunk = vault.ChunkSize / vault.BlockSize

// markDirty records that bytes [from, to) of the chunk changed; to > from.
func (b *chunkBuf) markDirty(from, to int) {
	for k := from / vault.BlockSize; k <= (to-1)/vault.BlockSize; k++ {
		b.dirty |= 1 << k
	}
}

// chunkPool recycles chunk buffers across all files: in the steady state of a streaming
// write, the buffers a flush releases are the ones the next writes take. They hold
// plaintext, so they live in secret memory (locked, out of core dumps); chunkBuf holds no
// pointers, as secmem requires.
var chunkPool secmem.Pool[chunkBuf]

// zeroChunk is the content of a chunk in a hole. It is only ever read.
var zeroChunk [vault.ChunkSize]byte

// getChunk returns an all-zero buffer, taken from the budget for f (nil: a flush's scratch).
func (s *Store) getChunk(f *File) *chunkBuf {
	s.budget.take(f)
	n := s.buffers.Add(1)
	for p := s.peakBuffers.Load(); n > p && !s.peakBuffers.CompareAndSwap(p, n); p = s.peakBuffers.Load() {
	}
	return chunkPool.Get()
}

// putChunk zeros b, keeping the pool's promise of zeroed buffers and leaving no plaintext
// for the next user or the garbage collector, and returns it to the pool.
func (s *Store) putChunk(b *chunkBuf) {
	clear(b.data[:b.n])
	b.n = 0
	b.dirty = 0
	chunkPool.Put(b)
	s.buffers.Add(-1)
	s.budget.give()
}
