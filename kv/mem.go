package kv

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Mem is a Store in memory, for unit tests of the packages above kv; nothing in it is
// durable, which is its one intended difference from Badger. It behaves like Badger
// where a test could notice: snapshot reads, optimistic commits that conflict on keys read
// (so fn really is re-run, as it will be in production), the same limits and errors. Scan
// hands fn values that are overwritten after the call, so that code keeping them past the
// callback fails in tests instead of in production.
type Mem struct {
	gate gate

	mu      sync.RWMutex
	ts      uint64                // timestamp of the last commit
	keys    []string              // sorted; every key with at least one version
	vers    map[string][]memValue // per key, ascending by ts
	readers map[uint64]int        // open transactions by read timestamp, for pruning
}

// memValue is one committed version of a key. Its bytes are never modified once stored,
// which is what lets readers use them without copying under the lock.
type memValue struct {
	ts      uint64
	val     []byte
	deleted bool
}

var _ Store = (*Mem)(nil)

// NewMem returns an empty in-memory store.
func NewMem() *Mem {
	return &Mem{vers: map[string][]memValue{}, readers: map[uint64]int{}}
}

// Close refuses new transactions after waiting for running ones; see Store.
func (m *Mem) Close() error {
	m.gate.close()
	return nil
}

// View runs fn in a read-only transaction; see Store.
func (m *Mem) View(ctx context.Context, fn func(Txn) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kv: view: %w", err)
	}
	if err := m.gate.enter(); err != nil {
		return err
	}
	defer m.gate.leave()
	t := m.begin(false)
	defer m.end(t)
	err := fn(t)
	t.g.done = true
	return err
}

// Update runs fn in a read-write transaction, retrying it on conflict; see Store.
func (m *Mem) Update(ctx context.Context, fn func(Txn) error) error {
	if err := m.gate.enter(); err != nil {
		return err
	}
	defer m.gate.leave()
	return retryConflicts(ctx, func() (bool, error) {
		t := m.begin(true)
		defer m.end(t)
		err := fn(t)
		t.g.done = true
		if err != nil {
			return false, err
		}
		return !m.commit(t), nil
	})
}

// UpdateLazy is Update: nothing in Mem outlives the process anyway.
func (m *Mem) UpdateLazy(ctx context.Context, fn func(Txn) error) error {
	return m.Update(ctx, fn)
}

// Sync returns nil after the checks every Store makes: Mem has no disk to wait for.
func (m *Mem) Sync(ctx context.Context) error {
	if err := m.gate.enter(); err != nil {
		return err
	}
	m.gate.leave()
	return ctx.Err()
}

func (m *Mem) begin(writable bool) *memTxn {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.readers[m.ts]++
	t := &memTxn{m: m, readTS: m.ts, g: txnGuard{writable: writable}}
	if writable {
		t.pending = map[string]memWrite{}
		t.reads = map[string]struct{}{}
	}
	return t
}

func (m *Mem) end(t *memTxn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readers[t.readTS]--; m.readers[t.readTS] == 0 {
		delete(m.readers, t.readTS)
	}
}

// commit applies t's writes unless a key t read has changed since t's snapshot, the
// conflict rule of Badger. It reports whether it committed.
func (m *Mem) commit(t *memTxn) bool {
	if len(t.pending) == 0 {
		return true // nothing to write, so nothing to conflict with, as in Badger
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range t.reads {
		if vs := m.vers[k]; len(vs) > 0 && vs[len(vs)-1].ts > t.readTS {
			return false
		}
	}
	m.ts++
	// t's own snapshot no longer matters: fn has returned. Other open snapshots do.
	oldest := m.ts
	for ts, n := range m.readers {
		if ts != t.readTS || n > 1 {
			oldest = min(oldest, ts)
		}
	}
	for k, w := range t.pending {
		vs, ok := m.vers[k]
		if !ok && w.deleted {
			continue // deleting a key nobody can see: nothing to record
		}
		vs = prune(append(vs, memValue{ts: m.ts, val: w.val, deleted: w.deleted}), oldest)
		i, found := slices.BinarySearch(m.keys, k)
		switch {
		case len(vs) == 1 && vs[0].deleted && vs[0].ts <= oldest:
			// A tombstone no open snapshot needs: the key is gone for good.
			delete(m.vers, k)
			m.keys = slices.Delete(m.keys, i, i+1)
		case !found:
			m.vers[k] = vs
			m.keys = slices.Insert(m.keys, i, k)
		default:
			m.vers[k] = vs
		}
	}
	return true
}

// prune drops the versions that no open or future transaction can read: all but the newest
// one at or before the oldest open snapshot. A tombstone kept for an open snapshot stays
// until the next commit that writes its key; that costs a little memory in tests and keeps
// pruning out of the read path.
func prune(vs []memValue, oldest uint64) []memValue {
	keep := 0
	for i, v := range vs {
		if v.ts <= oldest {
			keep = i
		}
	}
	return slices.Clip(vs[keep:])
}

// visible returns the value of key in the snapshot at ts. Call with m.mu held.
func (m *Mem) visible(key string, ts uint64) ([]byte, bool) {
	vs := m.vers[key]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].ts <= ts {
			return vs[i].val, !vs[i].deleted
		}
	}
	return nil, false
}

type memWrite struct {
	val     []byte
	deleted bool
}

type memTxn struct {
	m       *Mem
	g       txnGuard
	readTS  uint64
	pending map[string]memWrite // nil in a read-only transaction
	reads   map[string]struct{}
}

func (t *memTxn) Get(key []byte) ([]byte, error) {
	if err := t.g.checkRead(key); err != nil {
		return nil, err
	}
	if w, ok := t.pending[string(key)]; ok {
		if w.deleted {
			return nil, ErrNotFound
		}
		return clone(w.val), nil
	}
	t.read(string(key))
	t.m.mu.RLock()
	v, ok := t.m.visible(string(key), t.readTS)
	t.m.mu.RUnlock()
	if !ok {
		return nil, ErrNotFound
	}
	return clone(v), nil
}

func (t *memTxn) read(key string) {
	if t.reads != nil {
		t.reads[key] = struct{}{}
	}
}

func (t *memTxn) Set(key, value []byte) error {
	if err := t.g.checkWrite(key, value); err != nil {
		return err
	}
	t.pending[string(key)] = memWrite{val: clone(value)}
	return nil
}

// setRaw is Set without the size limits, for Sealed, which checked them on the plaintext.
func (t *memTxn) setRaw(key, value []byte) error {
	if err := t.g.checkRawWrite(key); err != nil {
		return err
	}
	t.pending[string(key)] = memWrite{val: clone(value)}
	return nil
}

func (t *memTxn) Delete(key []byte) error {
	if err := t.g.checkWrite(key, nil); err != nil {
		return err
	}
	t.pending[string(key)] = memWrite{deleted: true}
	return nil
}

// scanChunk is how many committed entries Scan copies per hold of the lock: fn runs without
// the lock (it may commit), and the snapshot is immutable, so chunks need no stitching.
const scanChunk = 64

type memEntry struct {
	key     string
	val     []byte
	deleted bool
}

func (t *memTxn) Scan(prefix, start []byte, fn func(key, value []byte) (bool, error)) error {
	if err := t.g.checkScan(); err != nil {
		return err
	}
	from := string(scanFrom(prefix, start))
	p := string(prefix)
	// Own writes as they are now, sorted; later writes by fn are not seen, as in Badger.
	var own []memEntry
	for _, k := range slices.Sorted(maps.Keys(t.pending)) {
		if k >= from && strings.HasPrefix(k, p) {
			w := t.pending[k]
			own = append(own, memEntry{key: k, val: w.val, deleted: w.deleted})
		}
	}
	var (
		chunk []memEntry
		next  = from // first committed key not yet copied
		done  bool   // committed keys exhausted
		kbuf  []byte
		vbuf  []byte
	)
	for {
		if len(chunk) == 0 && !done {
			chunk, next, done = t.committed(p, next)
		}
		var e memEntry
		switch {
		case len(chunk) == 0 && len(own) == 0:
			return nil
		case len(own) == 0 || len(chunk) > 0 && chunk[0].key < own[0].key:
			e, chunk = chunk[0], chunk[1:]
		default:
			if len(chunk) > 0 && chunk[0].key == own[0].key {
				chunk = chunk[1:] // own write shadows the committed value
			}
			e, own = own[0], own[1:]
		}
		if e.deleted {
			continue
		}
		t.read(e.key)
		kbuf = append(kbuf[:0], e.key...)
		vbuf = append(vbuf[:0], e.val...)
		more, err := fn(kbuf, vbuf)
		scribble(kbuf)
		scribble(vbuf)
		if err != nil || !more {
			return err
		}
	}
}

// committed copies up to scanChunk entries of t's snapshot with the prefix, from key from
// on. It returns where the next chunk starts and whether the range is exhausted.
func (t *memTxn) committed(prefix, from string) (chunk []memEntry, next string, done bool) {
	t.m.mu.RLock()
	defer t.m.mu.RUnlock()
	keys := t.m.keys
	for i := sort.SearchStrings(keys, from); i < len(keys); i++ {
		k := keys[i]
		if !strings.HasPrefix(k, prefix) {
			return chunk, "", true
		}
		if len(chunk) == scanChunk {
			return chunk, k, false
		}
		if v, ok := t.m.visible(k, t.readTS); ok {
			chunk = append(chunk, memEntry{key: k, val: v})
		}
	}
	return chunk, "", true
}

// scribble overwrites a buffer handed to a Scan callback, so that a caller that kept it
// sees garbage at once rather than, in production, data that changes under it later.
func scribble(b []byte) {
	for i := range b {
		b[i] = 0xA5
	}
}
