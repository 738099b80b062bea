// Package secmem holds secrets in memory that is never written to swap and never appears
// in a core dump: pages outside the Go heap, mapped anonymously, locked (mlock) and marked
// MADV_DONTDUMP. Key material and plaintext buffers are allocated here; Harden keeps the
// whole process out of core dumps besides. It must never hand out memory that holds
// another caller's bytes: memory is zero when first handed out, and callers wipe what they
// give back.
//
// Memory is taken from the kernel in arenas and kept: what a Pool gives back is reused by
// the next Get, so the locked memory is the peak the daemon needed. When the kernel refuses
// to lock more (RLIMIT_MEMLOCK without CAP_IPC_LOCK), the memory is still kept out of core
// dumps and Locked reports false; Stats counts such arenas.
package secmem

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// arenaSize is how much is mapped at a time; a Pool's items are carved from arenas.
const arenaSize = 4 << 20

var (
	arenaMu sync.Mutex
	arena   []byte // the unused rest of the current arena

	lockedBytes  atomic.Int64
	refused      atomic.Int64
	heapFallback atomic.Int64
)

// Stats reports the memory held here: locked bytes, arenas the kernel would not lock, and
// allocations that fell back to the Go heap (mapping failed).
func Stats() (locked, refusedArenas, heapAllocs int64) {
	return lockedBytes.Load(), refused.Load(), heapFallback.Load()
}

// Locked reports whether every arena so far could be locked.
func Locked() bool { return refused.Load() == 0 && heapFallback.Load() == 0 }

// alloc returns n bytes of zeroed secret memory, 64-byte aligned, never freed.
func alloc(n int) []byte {
	n = (n + 63) &^ 63
	if n > arenaSize {
		return mapArena(n)[:n:n]
	}
	arenaMu.Lock()
	defer arenaMu.Unlock()
	if len(arena) < n {
		arena = mapArena(arenaSize)
	}
	b := arena[:n:n]
	arena = arena[n:]
	return b
}

// mapArena maps, locks and hides size bytes; on failure it falls back to the heap, which
// Harden still keeps out of core dumps.
func mapArena(size int) []byte {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		heapFallback.Add(1)
		return make([]byte, size)
	}
	_ = unix.Madvise(b, unix.MADV_DONTDUMP)
	if err := unix.Mlock(b); err != nil {
		refused.Add(1)
	} else {
		lockedBytes.Add(int64(size))
	}
	return b
}

// Pool hands out *T in secret memory and takes them back. T must hold no pointers (keys,
// fixed-size byte buffers): the garbage collector does not scan this memory.
type Pool[T any] struct {
	mu   sync.Mutex
	free []*T
}

// Get returns a *T: zero when new, as the last user left it (wiped) when reused.
func (p *Pool[T]) Get() *T {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		t := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return t
	}
	p.mu.Unlock()
	var zero T
	b := alloc(int(unsafe.Sizeof(zero)))
	return (*T)(unsafe.Pointer(unsafe.SliceData(b)))
}

// Put keeps t for the next Get. The caller wipes what t holds first, as its type requires
// (a key entirely; a buffer up to where it was used): Put does not, so that a buffer
// recycled on every read costs no clearing of bytes it never touched. t must have come
// from this Pool's Get and must not be used afterwards.
func (p *Pool[T]) Put(t *T) {
	if t == nil {
		return
	}
	p.mu.Lock()
	p.free = append(p.free, t)
	p.mu.Unlock()
}

// Harden keeps the process out of core dumps altogether (and from ptrace by other users):
// whatever the Go runtime copied where this package cannot see (a stack, a register
// spill), a crash does not write it to disk.
func Harden() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
