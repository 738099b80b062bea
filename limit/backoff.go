package limit

import (
	"sync"
	"time"
)

// BackoffPolicy says how a Backoff grows. After Free failures in a row a key must wait Base
// before its next attempt, then twice as long after each further failure, never more than
// Max. A key with no failure for Forget starts again from nothing. MaxKeys bounds the keys
// remembered: when it is reached, the key whose last failure is oldest is forgotten first.
type BackoffPolicy struct {
	Free    int
	Base    time.Duration
	Max     time.Duration
	Forget  time.Duration
	MaxKeys int
}

// Backoff throttles attempts per key (a client address, an account) with growing delays
// after failures. It does not sleep: Allow says how long a refused key has to wait, and the
// caller answers at once, so a throttled attacker holds nothing while it waits.
type Backoff[K comparable] struct {
	p   BackoffPolicy
	now func() time.Time

	mu sync.Mutex
	m  map[K]*backoffEntry
}

type backoffEntry struct {
	failures int
	last     time.Time // the last failure
	next     time.Time // no attempt before this
}

// NewBackoff returns a Backoff with policy p; now is its clock (nil: time.Now).
func NewBackoff[K comparable](p BackoffPolicy, now func() time.Time) *Backoff[K] {
	if now == nil {
		now = time.Now
	}
	p.MaxKeys = max(p.MaxKeys, 1)
	p.Forget = max(p.Forget, p.Max)
	return &Backoff[K]{p: p, now: now, m: make(map[K]*backoffEntry)}
}

// delay is the wait after n failures in a row.
func (b *Backoff[K]) delay(n int) time.Duration {
	if n < b.p.Free {
		return 0
	}
	d := b.p.Base
	for i := b.p.Free; i < n && d < b.p.Max; i++ {
		d *= 2
	}
	return min(d, b.p.Max)
}

// Allow reports whether k may make an attempt now; if not, wait is how long until it may.
func (b *Backoff[K]) Allow(k K) (ok bool, wait time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	e, found := b.m[k]
	if !found {
		return true, 0
	}
	if now.Sub(e.last) > b.p.Forget {
		delete(b.m, k)
		return true, 0
	}
	if now.Before(e.next) {
		return false, e.next.Sub(now)
	}
	return true, 0
}

// Fail records a failed attempt of k.
func (b *Backoff[K]) Fail(k K) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	e, found := b.m[k]
	if found && now.Sub(e.last) > b.p.Forget {
		e.failures = 0
	}
	if !found {
		if len(b.m) >= b.p.MaxKeys {
			b.evict(now)
		}
		e = &backoffEntry{}
		b.m[k] = e
	}
	e.failures++
	e.last = now
	e.next = now.Add(b.delay(e.failures))
}

// Reset forgets k's failures (it proved itself).
func (b *Backoff[K]) Reset(k K) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, k)
}

// Len is how many keys are remembered.
func (b *Backoff[K]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// evict makes room for one key: the forgotten ones go, or else the one whose last failure
// is oldest. b.mu must be held.
func (b *Backoff[K]) evict(now time.Time) {
	var oldest K
	var oldestAt time.Time
	first := true
	for k, e := range b.m {
		if now.Sub(e.last) > b.p.Forget {
			delete(b.m, k)
			continue
		}
		if first || e.last.Before(oldestAt) {
			oldest, oldestAt, first = k, e.last, false
		}
	}
	if len(b.m) >= b.p.MaxKeys && !first {
		delete(b.m, oldest)
	}
}
