package limit

import (
	"context"
	"sync"
)

// PerKey caps how many things each key (a uid, a client address) holds at once. It keeps an
// entry only for keys that hold or wait for something, so it never grows past that.
type PerKey[K comparable] struct {
	max int

	mu   sync.Mutex
	held map[K]int
	// waiting are the callers of Acquire waiting for each key, oldest first.
	waiting map[K][]chan struct{}
}

// NewPerKey returns a PerKey that lets each key hold at most max at once.
func NewPerKey[K comparable](max int) *PerKey[K] {
	return &PerKey[K]{max: max, held: make(map[K]int), waiting: make(map[K][]chan struct{})}
}

// Max is the cap per key.
func (p *PerKey[K]) Max() int { return p.max }

// TryAcquire takes one for k without waiting; it reports false when k already holds max
// (or others of k are waiting).
func (p *PerKey[K]) TryAcquire(k K) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[k] >= p.max || len(p.waiting[k]) > 0 {
		return false
	}
	p.held[k]++
	return true
}

// Acquire takes one for k, waiting in turn behind k's earlier waiters until ctx ends.
func (p *PerKey[K]) Acquire(ctx context.Context, k K) error {
	p.mu.Lock()
	if p.held[k] < p.max && len(p.waiting[k]) == 0 {
		p.held[k]++
		p.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	p.waiting[k] = append(p.waiting[k], ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	q := p.waiting[k]
	for i, c := range q {
		if c == ch {
			if len(q) == 1 {
				delete(p.waiting, k)
			} else {
				p.waiting[k] = append(q[:i:i], q[i+1:]...)
			}
			p.mu.Unlock()
			return ctx.Err()
		}
	}
	p.mu.Unlock()
	// Handed over as ctx ended: pass it on.
	p.Release(k)
	return ctx.Err()
}

// Release gives back one that k holds: to k's oldest waiter, if any.
func (p *PerKey[K]) Release(k K) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if q := p.waiting[k]; len(q) > 0 {
		if len(q) == 1 {
			delete(p.waiting, k)
		} else {
			p.waiting[k] = q[1:]
		}
		close(q[0])
		return
	}
	switch n := p.held[k]; {
	case n > 1:
		p.held[k] = n - 1
	case n == 1:
		delete(p.held, k)
	}
}

// Held is how many k holds now.
func (p *PerKey[K]) Held(k K) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[k]
}
