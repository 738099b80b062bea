package content

import (
	"dsh/internal/secmem"
	"dsh/vault"
)

// chunkBuf holds one chunk of a file's unflushed data: the chunk's current content, block
// by block (vault.BlockSize). A block the writes covered whole is never read from the
// stored object; the others are read in when a write or a truncate needs part of them
// (loaded). A block not loaded still holds what the stored state holds there, which has
// not changed since: only a flush of this very buffer changes it, and that flush writes
// only loaded blocks. So a 4 KiB write in place reads nothing, and reads and a flush that
// rewrites the segment take the blocks not loaded from the stored state.
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
	// loaded has bit k set when data holds block k's content; data is zero in the others.
	// Every dirty block is loaded.
	loaded uint16
}

// allBlocks is the loaded mask of a chunk whose every block is in the buffer.
const allBlocks = 1<<blocksPerChunk - 1

// blocksIn returns the mask of the blocks that bytes [from, to) of a chunk touch (to >
// from), and of those they cover whole.
func blocksIn(from, to int) (touched, whole uint16) {
	for k := from / vault.BlockSize; k <= (to-1)/vault.BlockSize; k++ {
		touched |= 1 << k
		if k*vault.BlockSize >= from && (k+1)*vault.BlockSize <= to {
			whole |= 1 << k
		}
	}
	return touched, whole
}

// blocksPerChunk is how many blocks (vault.BlockSize) a chunk holds: the unit of patches.
const blocksPerChunk = vault.ChunkSize / vault.BlockSize

// markDirty records that bytes [from, to) of the chunk changed; to > from. The blocks they
// touch must be loaded, or covered whole by the change.
func (b *chunkBuf) markDirty(from, to int) {
	touched, _ := blocksIn(from, to)
	b.dirty |= touched
	b.loaded |= touched
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
	b.dirty, b.loaded = 0, 0
	chunkPool.Put(b)
	s.buffers.Add(-1)
	s.budget.give()
}
