package limit

import (
	"context"
	"sync"
)

// Fair is a few slots shared in turn among keys (users, say). A slot that comes free goes to
// the waiting key that holds the fewest slots, the longest-waiting such key first, so one
// key with many requests waiting cannot keep another key's single request out. A key with
// nobody else waiting may use every slot. Slots are meant to be held briefly (while
// writing, not while waiting for a network), which is what keeps the turns short.
type Fair[K comparable] struct {
	mu   sync.Mutex
	free int
	held map[K]int
	// queues are the waiters of each key, oldest first; order is the keys that have
	// waiters, in the order they began to wait.
	queues map[K][]chan struct{}
	order  []K
}

// NewFair returns a Fair with n slots.
func NewFair[K comparable](n int) *Fair[K] {
	return &Fair[K]{free: max(n, 1), held: make(map[K]int), queues: make(map[K][]chan struct{})}
}

// Acquire takes a slot for k, waiting for its turn until ctx ends.
func (f *Fair[K]) Acquire(ctx context.Context, k K) error {
	f.mu.Lock()
	if f.free > 0 && len(f.order) == 0 {
		f.free--
		f.held[k]++
		f.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if len(f.queues[k]) == 0 {
		f.order = append(f.order, k)
	}
	f.queues[k] = append(f.queues[k], ch)
	f.mu.Unlock()

	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	q := f.queues[k]
	for i, c := range q {
		if c == ch {
			f.queues[k] = append(q[:i:i], q[i+1:]...)
			if len(f.queues[k]) == 0 {
				f.dropKey(k)
			}
			f.mu.Unlock()
			return ctx.Err()
		}
	}
	f.mu.Unlock()
	// The slot was handed over as ctx ended: pass it on.
	f.Release(k)
	return ctx.Err()
}

// Release gives back a slot that Acquire gave k, handing it to the next in turn.
func (f *Fair[K]) Release(k K) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.held[k]; n > 1 {
		f.held[k] = n - 1
	} else {
		delete(f.held, k)
	}
	if len(f.order) == 0 {
		f.free++
		return
	}
	next, best := 0, -1
	for i, key := range f.order {
		if h := f.held[key]; best < 0 || h < best {
			next, best = i, h
		}
	}
	key := f.order[next]
	q := f.queues[key]
	ch := q[0]
	f.queues[key] = q[1:]
	// The key goes to the back of the turn order, or out of it when nobody of it waits.
	f.order = append(f.order[:next:next], f.order[next+1:]...)
	if len(f.queues[key]) > 0 {
		f.order = append(f.order, key)
	} else {
		delete(f.queues, key)
	}
	f.held[key]++
	close(ch)
}

// dropKey removes k, which has no waiters left, from the turn order. f.mu must be held.
func (f *Fair[K]) dropKey(k K) {
	delete(f.queues, k)
	for i, key := range f.order {
		if key == k {
			f.order = append(f.order[:i:i], f.order[i+1:]...)
			return
		}
	}
}

// Held is how many slots k holds now.
func (f *Fair[K]) Held(k K) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[k]
}
