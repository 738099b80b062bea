package content

import (
	"context"
	"sync"
	"sync/atomic"

	"dsh/vault"
)

// Read-ahead. The filesystem serves reads with direct I/O, so the kernel reads nothing
// ahead and a sequential reader's every read would wait for the disk and the decryption.
// A File that sees reads arrive in order (each one starting where the last ended) reads
// the next few windows of stored bytes in the background, so that the next read copies
// from memory while the disk works on the one after.
//
// What a window holds is the plaintext of part of one object, and objects never change
// once written: a window is found by the object's identity (ID, segment index, length),
// like a cached reader, and is used only where the read path would have read that object
// itself, after the unflushed chunks were looked up and clamped to the segment's valid
// length. A write, truncation or flush thus never makes a window wrong; flushes and
// truncations still drop a File's windows, as they no longer match what will be read.
// A window serves only the bytes that authenticated: a read that needs anything else
// (a chunk that failed, an object that did not open) reads the object as it would without
// read-ahead, and fails there with the same error; read-ahead never reports one.
const (
	// raWindowSize is the most bytes one window holds (a multiple of the chunk size).
	raWindowSize = 1 << 20
	// raWindows is how many windows a File holds at once, read or being read: the depth
	// of the read-ahead, raWindows·raWindowSize bytes.
	raWindows = 4
	// raMaxBuffers caps the windows of all Files together.
	raMaxBuffers = 32
)

// raBuffers counts the window buffers in use in the process: it enforces raMaxBuffers
// with no lock. raPeak is its highest value, for the tests.
var raBuffers, raPeak atomic.Int64

type raBuf [raWindowSize]byte

// raPool recycles window buffers; they are zeroed before they go back.
var raPool = sync.Pool{New: func() any { return new(raBuf) }}

// getRABuf takes a buffer if the global cap allows, else returns nil.
func getRABuf() *raBuf {
	n := raBuffers.Add(1)
	if n > raMaxBuffers {
		raBuffers.Add(-1)
		return nil
	}
	for p := raPeak.Load(); n > p && !raPeak.CompareAndSwap(p, n); p = raPeak.Load() {
	}
	return raPool.Get().(*raBuf)
}

// putRABuf wipes the first n bytes of b (the rest is still zero) and returns it to the pool.
func putRABuf(b *raBuf, n int) {
	clear(b[:n])
	raPool.Put(b)
	raBuffers.Add(-1)
}

// raWindow is one window: bytes [rel, rel+n) of segment seg's object, at file offset off.
type raWindow struct {
	used     bool // the slot holds a window
	inflight bool // a worker is reading it; it owns buf until it is done
	dropped  bool // no longer served; freed when the worker is done
	seg      segState
	off      int64
	rel      int64
	n        int
	good     int // bytes that authenticated, once read
	buf      *raBuf
}

// matches reports whether w is a live window of e's object holding object offset rel.
func (w *raWindow) matches(e segState, rel int64) bool {
	return w.used && !w.dropped && w.seg.obj == e.obj && w.seg.index == e.index &&
		w.seg.objLen == e.objLen && rel >= w.rel && rel < w.rel+int64(w.n)
}

// readAhead is a File's read-ahead state. Its lock is the File's own: readers of other
// files never wait for it.
type readAhead struct {
	mu   sync.Mutex
	cond sync.Cond // signalled when a window's worker is done
	// next is where the last read ended, seq how many reads in a row started where the
	// one before ended.
	next    int64
	seq     int
	live    int // windows in use
	stopped bool
	wins    [raWindows]raWindow
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	window  int64 // bytes per window for this File's segment size
	// started counts the windows started and served the bytes read from windows, for
	// the tests.
	started, served int64
}

func (ra *readAhead) init(segChunks int64) {
	ra.cond.L = &ra.mu
	ra.next = -1
	ra.ctx, ra.cancel = context.WithCancel(context.Background())
	// The largest window that divides the segment, so that windows never straddle one.
	k := int64(raWindowSize / vault.ChunkSize)
	for segChunks%k != 0 {
		k--
	}
	ra.window = k * vault.ChunkSize
}

// note records a read of [off, end) and reports whether it continues a sequential run
// that is worth reading ahead for: one read of at least a chunk that starts where the one
// before ended, or two smaller ones in a row. A random reader of small blocks thus
// practically never starts it.
func (ra *readAhead) note(off, end int64) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if off == ra.next {
		ra.seq++
	} else {
		ra.seq = 0
	}
	ra.next = end
	need := 2
	if end-off >= vault.ChunkSize {
		need = 1
	}
	return ra.seq >= need && !ra.stopped
}

// free empties slot w, or leaves it to its worker. ra.mu must be held.
func (ra *readAhead) free(w *raWindow) {
	if w.inflight {
		w.dropped = true
		return
	}
	putRABuf(w.buf, w.n)
	*w = raWindow{}
	ra.live--
}

// dropAll drops every window. ra.mu must be held.
func (ra *readAhead) dropAll() {
	for i := range ra.wins {
		if w := &ra.wins[i]; w.used && !w.dropped {
			ra.free(w)
		}
	}
}

// reset drops the File's windows: its segments changed. f.mu must be held exclusively.
func (f *File) resetReadAhead() {
	ra := &f.ra
	ra.mu.Lock()
	ra.dropAll()
	ra.mu.Unlock()
}

// stopReadAhead drops every window and waits for the workers. f.mu must be held
// exclusively, so that no read starts a worker meanwhile; the workers never take it.
func (f *File) stopReadAhead() {
	ra := &f.ra
	ra.mu.Lock()
	ra.stopped = true
	ra.dropAll()
	ra.mu.Unlock()
	ra.cancel()
	ra.wg.Wait()
}

// pauseReadAhead wipes every window and waits for the workers, like stopReadAhead, but
// lets later reads start new ones. f.mu must be held exclusively.
func (f *File) pauseReadAhead() {
	f.stopReadAhead()
	ra := &f.ra
	ra.mu.Lock()
	ra.stopped = false
	ra.next, ra.seq = -1, 0
	ra.ctx, ra.cancel = context.WithCancel(context.Background())
	ra.mu.Unlock()
}

// readAhead starts reading the windows from the one holding end on, up to the File's
// depth, after a sequential read that ended at end. f.mu must be held (shared at least).
func (f *File) readAhead(end int64) {
	ra := &f.ra
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.stopped || f.cipher == nil {
		return
	}
	// Windows wholly behind the reader are of no more use.
	for i := range ra.wins {
		if w := &ra.wins[i]; w.used && !w.dropped && w.off+int64(w.n) <= end {
			ra.free(w)
		}
	}
	first := end - end%ra.window
	for k := range int64(raWindows) {
		ws := first + k*ra.window
		if ws >= f.size || ra.live >= raWindows {
			return
		}
		seg := ws / f.segSize
		i, ok := findSeg(f.segs, seg)
		if !ok {
			continue // a hole reads as zeros without I/O
		}
		e := f.segs[i]
		rel := ws - seg*f.segSize
		n := min(ra.window, e.valid-rel)
		if n <= 0 || len(e.patches) > 0 { // windows hold whole objects, not patched ones
			continue
		}
		if ra.find(e, rel) != nil {
			continue
		}
		buf := getRABuf()
		if buf == nil {
			return // the process-wide cap
		}
		var w *raWindow
		for j := range ra.wins {
			if !ra.wins[j].used {
				w = &ra.wins[j]
				break
			}
		}
		*w = raWindow{used: true, inflight: true, seg: e, off: ws, rel: rel, n: int(n), buf: buf}
		ra.live++
		ra.started++
		c := f.cipher
		ra.wg.Go(func() { f.fetch(w, c) })
	}
}

// find returns the live window of e's object holding rel. ra.mu must be held.
func (ra *readAhead) find(e segState, rel int64) *raWindow {
	for i := range ra.wins {
		if w := &ra.wins[i]; w.matches(e, rel) {
			return w
		}
	}
	return nil
}

// fetch reads window w with cipher c. It runs without f.mu: Close waits for it instead.
func (f *File) fetch(w *raWindow, c *vault.ContentCipher) {
	ra := &f.ra
	ra.mu.Lock()
	e, rel, buf := w.seg, w.rel, w.buf[:w.n]
	skip := w.dropped
	ra.mu.Unlock()
	good := 0
	if !skip {
		if o, err := f.acquireWith(ra.ctx, e, c); err == nil {
			// Only the bytes before a failure count; the error itself is for the read
			// that needs that chunk, which reads it again.
			good, _ = o.r.ReadAt(buf, rel)
			f.release(o)
		}
	}
	ra.mu.Lock()
	w.inflight = false
	w.good = good
	if w.dropped {
		putRABuf(w.buf, len(buf))
		*w = raWindow{}
		ra.live--
	}
	ra.cond.Broadcast()
	ra.mu.Unlock()
}

// serveAhead copies into dst what the windows hold of e's object from rel on, waiting
// for a window being read, and returns how many bytes it copied: a prefix of dst, which
// may be empty. A window read to its end is freed. f.mu must be held (shared at least).
func (f *File) serveAhead(e segState, dst []byte, rel int64) int {
	ra := &f.ra
	ra.mu.Lock()
	defer ra.mu.Unlock()
	done := 0
	for done < len(dst) && ra.live > 0 {
		pos := rel + int64(done)
		w := ra.find(e, pos)
		if w == nil {
			break
		}
		if w.inflight {
			ra.cond.Wait()
			continue // the window may be gone: look again
		}
		in := int(pos - w.rel)
		if in >= w.good {
			break
		}
		k := copy(dst[done:], w.buf[in:w.good])
		done += k
		ra.served += int64(k)
		if w.rel+int64(w.n) <= rel+int64(done) {
			ra.free(w)
		}
	}
	return done
}
