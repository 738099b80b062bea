package limit

import "sync"

// PerKey caps how many things each key (a uid, a client address) holds at once. It keeps an
// entry only for keys that hold something, so it never grows past what is held.
type PerKey[K comparable] struct {
	max int

	mu   sync.Mutex
	held map[K]int
}

// NewPerKey returns a PerKey that lets each key hold at most max at once.
func NewPerKey[K comparable](max int) *PerKey[K] {
	return &PerKey[K]{max: max, held: make(map[K]int)}
}

// Max is the cap per key.
func (p *PerKey[K]) Max() int { return p.max }

// TryAcquire takes one for k without waiting; it reports false when k already holds max.
func (p *PerKey[K]) TryAcquire(k K) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[k] >= p.max {
		return false
	}
	p.held[k]++
	return true
}

// Release gives back one that TryAcquire gave k.
func (p *PerKey[K]) Release(k K) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
