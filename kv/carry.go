package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Carried writes: one commit, one sync.
//
// A small write and fsync of a big file stores a patch object and then commits the
// metadata that names it; the object must be durable no later than that commit. Kept in a
// file, the object costs a sync of its own before the commit's; kept in this store with a
// commit of its own, it costs a commit. A Carrier instead holds such a write in memory
// and adds it to the next transaction that commits, whoever makes it: the metadata commit
// naming the object carries the object, and one sync of the log makes both durable.
//
// What a Carrier promises for a write carried before Update (or UpdateLazy) was called:
// that transaction commits it too, or an earlier one did. Every transaction sets every
// write still carried when it starts (not only those not yet taken by another running
// transaction), so no commit can overtake the one that holds a write it depends on. A
// carried write is visible at once to Get in View and in every transaction that starts
// after Carry returns (it is set first, so the transaction's own writes win over it), but
// not to Scan until committed. Until then it lives in this process only: a crash loses it,
// and with it nothing that a commit depends on, since every commit carries it.
//
// A transaction that took a carried write and commits after another one deleted that key
// writes it again: nothing reads it there, so the store sees no conflict. Carried writes
// are objects under fresh IDs, deleted only when nothing names them (a failed flush, the
// collector), so what comes back is unreferenced, and the sweep of unreferenced objects
// at the next start removes it.

// CarryMax bounds the bytes (keys and values) a Carrier holds: small, so that every
// transaction can carry them within the limits (MaxTxnBytes) and memory stays bounded.
const CarryMax = 64 << 10

// CarryWritesMax bounds the writes a Carrier holds.
const CarryWritesMax = 64

// Carrier is a Store that can also carry small writes to the next commit (Carry). Every
// other method is the inner Store's.
type Carrier struct {
	inner Store

	mu      sync.Mutex
	pending map[string]carried
	bytes   int
	seq     uint64
	// n is len(pending), read without the lock by View's fast path.
	n atomic.Int64
}

type carried struct {
	value []byte
	seq   uint64
}

var _ Store = (*Carrier)(nil)

// NewCarrier returns a Carrier over inner. Every transaction that names a carried write
// must go through the Carrier, not inner.
func NewCarrier(inner Store) *Carrier {
	return &Carrier{inner: inner, pending: make(map[string]carried)}
}

// ErrCarryFull is returned by Carry when the write would take the Carrier past CarryMax
// or CarryWritesMax: the caller commits it itself instead.
var ErrCarryFull = errors.New("kv: carried writes are at their limit")

// Carry holds key=value for the next transaction that commits (see above). It checks the
// key and value as Set does. A later Carry of the same key replaces the value.
func (c *Carrier) Carry(key, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes, limit %d", ErrTooBig, len(value), MaxValueSize)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.pending[string(key)]
	n := c.bytes + len(key) + len(value)
	if had {
		n -= len(key) + len(old.value)
	}
	if n > CarryMax || (!had && len(c.pending)+1 > CarryWritesMax) {
		return ErrCarryFull
	}
	c.seq++
	c.pending[string(key)] = carried{value: bytes.Clone(value), seq: c.seq}
	c.bytes = n
	c.n.Store(int64(len(c.pending)))
	return nil
}

// batch is a snapshot of the carried writes, set by one transaction.
type batch struct {
	keys   []string
	values []carried
}

func (c *Carrier) snapshot() batch {
	if c.n.Load() == 0 {
		// Most transactions (logins, namespace changes) find nothing carried; they
		// take no lock for it.
		return batch{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := batch{keys: make([]string, 0, len(c.pending)), values: make([]carried, 0, len(c.pending))}
	for k, v := range c.pending {
		b.keys = append(b.keys, k)
		b.values = append(b.values, v)
	}
	return b
}

// setIn sets the writes of b in tx.
func (b batch) setIn(tx Txn) error {
	for i, k := range b.keys {
		if err := tx.Set([]byte(k), b.values[i].value); err != nil {
			return err
		}
	}
	return nil
}

// committed drops the writes of b that a commit made durable as far as this process goes,
// unless they were carried again since.
func (c *Carrier) committed(b batch) {
	if len(b.keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range b.keys {
		if v, ok := c.pending[k]; ok && v.seq == b.values[i].seq {
			delete(c.pending, k)
			c.bytes -= len(k) + len(v.value)
		}
	}
	c.n.Store(int64(len(c.pending)))
}

// carrySetError marks a failure to set a carried write, as opposed to fn's own.
type carrySetError struct{ err error }

func (e carrySetError) Error() string { return "set a carried write: " + e.err.Error() }
func (e carrySetError) Unwrap() error { return e.err }

// update runs fn through run (the inner Update or UpdateLazy), carrying every write held
// when each attempt starts.
func (c *Carrier) update(ctx context.Context, fn func(Txn) error, run func(context.Context, func(Txn) error) error) error {
	var b batch
	err := run(ctx, func(tx Txn) error {
		b = c.snapshot() // again at each attempt: it must hold what is carried now
		if err := b.setIn(tx); err != nil {
			return carrySetError{err}
		}
		return fn(tx)
	})
	if err == nil {
		c.committed(b)
		return nil
	}
	var ce carrySetError
	if len(b.keys) == 0 || !(errors.As(err, &ce) || errors.Is(err, ErrTooBig)) {
		return err
	}
	// The carried writes did not fit with fn's: commit them on their own first (lazily:
	// this commit follows and covers them), then fn without them.
	if ferr := c.Flush(ctx); ferr != nil {
		return fmt.Errorf("%w (and committing the carried writes alone: %w)", err, ferr)
	}
	return run(ctx, fn)
}

// Flush commits the carried writes on their own, lazily (UpdateLazy), for a reader that
// must see them through Scan. Nothing is committed when nothing is carried.
func (c *Carrier) Flush(ctx context.Context) error {
	if c.n.Load() == 0 {
		return nil
	}
	var b batch
	err := c.inner.UpdateLazy(ctx, func(tx Txn) error {
		b = c.snapshot()
		return b.setIn(tx)
	})
	if err == nil {
		c.committed(b)
	}
	return err
}

// Update is the inner Store's Update, carrying the held writes; see Store.
func (c *Carrier) Update(ctx context.Context, fn func(Txn) error) error {
	return c.update(ctx, fn, c.inner.Update)
}

// UpdateLazy is the inner Store's UpdateLazy, carrying the held writes; see Store.
func (c *Carrier) UpdateLazy(ctx context.Context, fn func(Txn) error) error {
	return c.update(ctx, fn, c.inner.UpdateLazy)
}

// Sync makes every earlier commit durable, and the writes carried before it was called.
func (c *Carrier) Sync(ctx context.Context) error {
	if c.n.Load() > 0 {
		if err := c.Flush(ctx); err != nil {
			return err
		}
	}
	return c.inner.Sync(ctx)
}

// View is the inner Store's View; Get also sees the carried writes.
func (c *Carrier) View(ctx context.Context, fn func(Txn) error) error {
	if c.n.Load() == 0 {
		return c.inner.View(ctx, fn)
	}
	return c.inner.View(ctx, func(tx Txn) error { return fn(&carryView{Txn: tx, c: c}) })
}

// carryView is a read-only transaction whose Get looks at the carried writes first.
type carryView struct {
	Txn
	c *Carrier
}

func (t *carryView) Get(key []byte) ([]byte, error) {
	t.c.mu.Lock()
	v, ok := t.c.pending[string(key)]
	t.c.mu.Unlock()
	if ok {
		// Through the inner Get first, so that a finished transaction or a bad key fails
		// as it would there.
		if _, err := t.Txn.Get(key); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return bytes.Clone(v.value), nil
	}
	return t.Txn.Get(key)
}

// Close commits what is still carried (lazily: a crash of the machine may take it, as it
// may any lazy commit), then closes the inner Store.
func (c *Carrier) Close() error {
	var err error
	if c.n.Load() > 0 {
		err = c.Flush(context.Background())
	}
	if cerr := c.inner.Close(); cerr != nil {
		return cerr
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("kv: close: commit the carried writes: %w", err)
	}
	return nil
}
