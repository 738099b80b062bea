// Package kv is the small transactional key-value store under dsh's namespace, ACLs and
// sessions. It owns transactions, their retry on conflict, durability, the size limits
// every backend must honour and the sealing of stored values (Sealed), so that the rest of dsh never imports Badger and the metadata can
// later move to a distributed store (TiKV) without touching acl/ or fs/. It must never
// interpret keys or values: their layout belongs to the packages that write them.
package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Errors returned by every implementation. Callers match them with errors.Is.
var (
	// ErrNotFound is returned by Txn.Get for an absent key.
	ErrNotFound = errors.New("kv: key not found")
	// ErrConflict is returned by Store.Update when every attempt lost a write conflict.
	ErrConflict = errors.New("kv: transaction conflict, retries exhausted")
	// ErrReadOnly is returned by Set and Delete inside Store.View.
	ErrReadOnly = errors.New("kv: write in a read-only transaction")
	// ErrInvalidKey is returned for an empty key, a key longer than MaxKeySize or a key
	// starting with ReservedPrefix.
	ErrInvalidKey = errors.New("kv: invalid key")
	// ErrTooBig is returned by Set and Delete when the value or the transaction would exceed
	// MaxValueSize, MaxTxnWrites or MaxTxnBytes.
	ErrTooBig = errors.New("kv: value or transaction too big")
	// ErrTxnDone is returned when a Txn is used after the function it was given to returned.
	ErrTxnDone = errors.New("kv: transaction already finished")
	// ErrClosed is returned by View and Update after Close.
	ErrClosed = errors.New("kv: store is closed")
)

// Limits that every implementation enforces identically, so that code tested on Mem cannot
// build transactions that Badger (or a later TiKV backend) would refuse. They are far above
// what one metadata change needs; bulk work (removing a whole share) goes in batches.
const (
	// MaxKeySize fits a directory entry (inode prefix plus a 255-byte name) many times over
	// and stays inside the key limits of every store dsh may move to.
	MaxKeySize = 4 << 10
	// MaxValueSize keeps large data in the blob store, where it belongs. Sealed adds
	// SealOverhead to a value, and the sum stays one byte under 1 MiB so that Badger keeps
	// every value in its LSM tree (see valueThreshold).
	MaxValueSize = 1<<20 - 1 - SealOverhead
	// MaxTxnWrites bounds the Set and Delete calls in one transaction (each call counts, even
	// on a key already written in it).
	MaxTxnWrites = 10000
	// MaxTxnBytes bounds the sum of len(key)+len(value) over those calls: room for one
	// MaxValueSize value with its key and a few ordinary small writes.
	MaxTxnBytes = MaxValueSize + 64<<10
)

// ReservedPrefix starts keys that no implementation accepts: Badger keeps its own bookkeeping
// under it, and refusing it everywhere keeps backends interchangeable.
const ReservedPrefix = "!badger!"

// Store is a transactional key-value store. All methods are safe for concurrent use.
//
// Isolation: a transaction reads a consistent snapshot taken when it starts, plus its own
// writes. Update fails with a conflict (and is retried) when another transaction committed,
// after this one started, a write to a key this one read with Get or visited with Scan.
// A key inserted into a scanned range by another transaction is not a conflict, and a
// later backend may only detect write-write conflicts: code whose correctness depends on a
// value staying unchanged must also write that key (for example bump a version in it).
type Store interface {
	// View runs fn in a read-only transaction. Set and Delete inside it fail with
	// ErrReadOnly. The error of fn is returned unchanged.
	View(ctx context.Context, fn func(Txn) error) error
	// Update runs fn in a read-write transaction and commits it. On a write conflict it
	// runs fn again on a fresh snapshot (a few times, with a short random backoff), so fn
	// must be safe to re-run and must not act outside the transaction. When fn returns an
	// error nothing is written and that error is returned unchanged. When Update returns
	// nil the writes are durable: they survive a crash of the process or the machine, and
	// so do those of every UpdateLazy that returned before Update was called.
	Update(ctx context.Context, fn func(Txn) error) error
	// UpdateLazy is Update without the wait for the disk. When it returns nil the writes are
	// visible to every later transaction and survive a crash of the process, but a crash of
	// the machine may undo them until a later Update or Sync returns. What such a crash
	// undoes is always the latest commits: never part of a transaction, never an earlier
	// commit while keeping a later one. It is for writes that a durable commit is sure to follow and
	// depend on: an object that the metadata commit will name, a file that its close will
	// commit.
	UpdateLazy(ctx context.Context, fn func(Txn) error) error
	// Sync returns once every Update and UpdateLazy that returned before it was called is
	// durable.
	Sync(ctx context.Context) error
	// Close waits for running transactions, then releases the store. Later calls to View
	// and Update fail with ErrClosed; calling Close again returns nil.
	Close() error
}

// Txn is one transaction. It is valid only inside the function it was given to and must not
// be used from several goroutines at once.
type Txn interface {
	// Get returns a copy of the value of key, which stays valid after the transaction; a
	// present key with an empty value gives a non-nil empty slice. An absent key gives
	// ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Set writes value under key. Both are copied, so the caller may reuse them at once.
	Set(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	// Scan calls fn for each key that starts with prefix, in byte order, beginning at start
	// (inclusive; nil means the first key with the prefix), until fn returns more=false or
	// an error, which Scan returns unchanged. key and value are only valid during the call
	// and must not be modified. Writes made by fn inside the same transaction may or may
	// not be seen by the running Scan; they are seen by later calls.
	Scan(prefix, start []byte, fn func(key, value []byte) (more bool, err error)) error
}

// txnGuard holds the checks every implementation makes before touching its backend, so
// that Mem and Badger refuse exactly the same operations with the same errors.
type txnGuard struct {
	writable bool
	done     bool
	writes   int
	bytes    int
}

func checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeySize:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidKey, len(key), MaxKeySize)
	case bytes.HasPrefix(key, []byte(ReservedPrefix)):
		return fmt.Errorf("%w: reserved prefix %q", ErrInvalidKey, ReservedPrefix)
	}
	return nil
}

func (g *txnGuard) checkRead(key []byte) error {
	if g.done {
		return ErrTxnDone
	}
	return checkKey(key)
}

func (g *txnGuard) checkScan() error {
	if g.done {
		return ErrTxnDone
	}
	return nil
}

// checkWrite also charges the write to the transaction's budget.
func (g *txnGuard) checkWrite(key, value []byte) error {
	if g.done {
		return ErrTxnDone
	}
	if !g.writable {
		return ErrReadOnly
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes, limit %d", ErrTooBig, len(value), MaxValueSize)
	}
	if g.writes+1 > MaxTxnWrites {
		return fmt.Errorf("%w: more than %d writes", ErrTooBig, MaxTxnWrites)
	}
	if n := g.bytes + len(key) + len(value); n > MaxTxnBytes {
		return fmt.Errorf("%w: %d bytes written, limit %d", ErrTooBig, n, MaxTxnBytes)
	}
	g.writes++
	g.bytes += len(key) + len(value)
	return nil
}

// checkRawWrite is checkWrite without the size budget, for a wrapper (Sealed) that charged
// the write to its own guard on the plaintext.
func (g *txnGuard) checkRawWrite(key []byte) error {
	if g.done {
		return ErrTxnDone
	}
	if !g.writable {
		return ErrReadOnly
	}
	return checkKey(key)
}

// scanFrom returns where a Scan starts: start if it sorts after prefix, else prefix itself,
// because every key with the prefix sorts at or after the prefix.
func scanFrom(prefix, start []byte) []byte {
	if bytes.Compare(start, prefix) > 0 {
		return start
	}
	return prefix
}

// Retry policy of Update. Conflicting transactions usually clear within a commit or two; the
// attempts leave room for bursts (many writers of one directory) and the random backoff
// stops the losers from colliding again in lockstep.
const (
	updateAttempts = 16
	backoffMin     = 100 * time.Microsecond
	backoffMax     = 20 * time.Millisecond
)

// retryConflicts runs attempt until it reports no conflict, up to updateAttempts times.
// attempt reports a conflict only for its own commit, never for an error of the caller's fn,
// so an ErrConflict returned by fn (from a nested Update) is passed through, not retried.
func retryConflicts(ctx context.Context, attempt func() (conflict bool, err error)) error {
	wait := backoffMin
	for i := 1; ; i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kv: update: %w", err)
		}
		conflict, err := attempt()
		if !conflict {
			return err
		}
		if i == updateAttempts {
			return fmt.Errorf("%w (%d attempts)", ErrConflict, i)
		}
		// Full jitter in [wait/2, wait): spreads the losers without ever sleeping 0.
		d := wait/2 + rand.N(wait/2)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kv: update: %w", ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, backoffMax)
	}
}

// gate lets Close wait for running transactions. Unlike a sync.RWMutex it never makes a new
// transaction wait behind a pending Close: one started from inside another (a nested View)
// fails with ErrClosed instead of deadlocking the Close that waits for its parent.
type gate struct {
	mu     sync.Mutex
	idle   *sync.Cond
	active int
	closed bool
}

func (g *gate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.active++
	return nil
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 && g.idle != nil {
		g.idle.Broadcast()
	}
}

// close refuses new transactions and waits for running ones. It reports false when the
// gate was already closed, so that only the first Close releases the backend.
func (g *gate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	if g.idle == nil {
		g.idle = sync.NewCond(&g.mu)
	}
	for g.active > 0 {
		g.idle.Wait()
	}
	return true
}

func clone(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}
