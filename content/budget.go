package content

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"dsh/vault"
)

// DefaultBudget is the unflushed write data the daemon holds across all open files before
// writers start flushing the largest holders: a share of the daemon's memory budget that
// leaves room for read-ahead, the metadata store and FUSE's own buffers.
const DefaultBudget = 96 << 20

// Budget bounds the plaintext chunk buffers that every File of the Stores sharing it
// holds, unflushed or being flushed. Each File is also bounded by MaxDirty, but many open
// files (many writers, or one uid with many stalled streams) would add up past any memory
// budget without it. A writer that finds the budget spent flushes the File holding the
// most (possibly its own) and, if the others are all mid-flush, waits a little: the budget
// is kept within the few chunks one write takes, per writer.
type Budget struct {
	limit int64
	held  atomic.Int64

	mu    sync.Mutex
	files map[*File]struct{} // Files that took a chunk since they were last found empty
}

// NewBudget returns a budget of limit bytes (DefaultBudget if limit ≤ 0).
func NewBudget(limit int64) *Budget {
	if limit <= 0 {
		limit = DefaultBudget
	}
	return &Budget{limit: limit, files: make(map[*File]struct{})}
}

// Held is how many bytes of chunk buffers the budget's Files hold now.
func (b *Budget) Held() int64 { return b.held.Load() }

func (b *Budget) over() bool { return b != nil && b.held.Load() > b.limit }

func (b *Budget) take(f *File) {
	if b == nil {
		return
	}
	if b.held.Add(vault.ChunkSize) > 0 && f != nil {
		b.mu.Lock()
		b.files[f] = struct{}{}
		b.mu.Unlock()
	}
}

func (b *Budget) give() {
	if b != nil {
		b.held.Add(-vault.ChunkSize)
	}
}

func (b *Budget) forget(f *File) {
	if b != nil {
		b.mu.Lock()
		delete(b.files, f)
		b.mu.Unlock()
	}
}

// relieve flushes the Files holding the most until the budget has room again, or gives up
// after a few rounds (a failing store: the writers' own flushes report it).
func (b *Budget) relieve(ctx context.Context) {
	for round := 0; b.over() && round < 16; round++ {
		if f := b.largest(); f != nil {
			_ = f.Flush(ctx)
			continue
		}
		// Every holder is being flushed by someone already.
		time.Sleep(5 * time.Millisecond)
	}
}

// largest returns the File with the most unflushed chunks, dropping Files that hold none.
func (b *Budget) largest() *File {
	b.mu.Lock()
	files := make([]*File, 0, len(b.files))
	for f := range b.files {
		files = append(files, f)
	}
	b.mu.Unlock()
	var best *File
	var most int
	for _, f := range files {
		f.mu.RLock()
		n, closed := len(f.dirty), f.closed
		f.mu.RUnlock()
		if n == 0 || closed {
			if closed {
				b.forget(f)
			}
			continue
		}
		if n > most {
			best, most = f, n
		}
	}
	return best
}
