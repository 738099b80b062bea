// Package inline is a blob.Store that keeps small objects started with CreateSmall (the
// patches of small writes) in the metadata's kv store, carried by the metadata commit that
// names them (kv.Carrier), and every other object in a second blob.Store (the local
// folder). A 4 KiB write and fsync then costs one commit and one sync of the metadata's
// log, instead of a file, its sync, and then that commit and sync.
//
// It owns the choice between the two stores and the kv keys under Prefix. It must never
// see plaintext (it stores the sealed objects it is given, unchanged), never put an object
// in both stores, never let an object become durable after the metadata naming it (a
// carried write is committed by the next transaction of the metadata, whoever makes it),
// and never hold more than its budget in the kv store: small files once lived there too,
// and compacting that much data took Badger's memory past the daemon's target (77e11ed).
package inline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"dsh/blob"
	"dsh/kv"
)

// Prefix starts the kv key of every inline object: Prefix | raw ID (16 bytes). It has two
// slashes so that kv.KeyClass, which logs and metrics use, never shows bytes of an ID.
const Prefix = "blob/o/"

// Defaults of Options.
const (
	// DefaultMax is the largest object kept inline: the patch of a write of a few blocks
	// (a sealed 4 KiB block is 4,124 bytes, plus the 48-byte header).
	DefaultMax = 16 << 10
	// DefaultBudget bounds the bytes of all inline objects: 4,000 patches of one block.
	// Past it, small objects go to the large store until patches are dropped.
	DefaultBudget = 16 << 20
)

// headerLen is the value's header: the commit time (Unix nanoseconds, big-endian).
const headerLen = 8

var (
	_ blob.Store    = (*Store)(nil)
	_ blob.Small    = (*Store)(nil)
	_ blob.Reserver = (*Store)(nil)
)

// Options tune New; the zero value takes the defaults.
type Options struct {
	// Max is the largest object kept inline (DefaultMax if 0).
	Max int
	// Budget bounds the bytes kept inline in all (DefaultBudget if 0).
	Budget int64
}

// Store keeps small objects in db and the others in large.
type Store struct {
	db     *kv.Carrier
	large  blob.Store
	max    int
	budget int64
	used   atomic.Int64 // bytes of inline objects, as counted at New and since

	// The spiller (spill.go).
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	spilled   atomic.Uint64 // objects moved to the large store
	spillErrs atomic.Uint64 // passes that stopped on an error (retried at the next kick)
}

// New returns a store keeping the objects CreateSmall starts, up to opts.Max bytes and
// within opts.Budget, in db, and every other one in large. It counts what db already
// holds, and starts the goroutine that moves objects to large when the budget fills up
// (spill.go): Close stops it.
func New(ctx context.Context, db *kv.Carrier, large blob.Store, opts Options) (*Store, error) {
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	if opts.Budget <= 0 {
		opts.Budget = DefaultBudget
	}
	s := &Store{db: db, large: large, max: min(opts.Max, kv.CarryMax/2-headerLen), budget: opts.Budget}
	var used int64
	err := s.listInline(ctx, func(in blob.Info) error {
		used += in.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open inline objects: %w", err)
	}
	s.used.Store(used)
	s.startSpiller()
	s.maybeSpill()
	return s, nil
}

// Used returns the bytes of the objects kept inline.
func (s *Store) Used() int64 { return s.used.Load() }

// Spilled returns how many objects were moved to the large store to keep inline bytes
// under the budget.
func (s *Store) Spilled() uint64 { return s.spilled.Load() }

func key(id blob.ID) []byte {
	k := make([]byte, 0, len(Prefix)+blob.IDLen)
	k = append(k, Prefix...)
	return append(k, id[:]...)
}

// Create starts an object in the large store: only CreateSmall keeps objects inline. Its
// Commit refuses an ID kept inline, as Commit of a small object refuses one of the large
// store, so that no ID names two objects.
func (s *Store) Create(ctx context.Context, id blob.ID) (blob.Pending, error) {
	lp, err := s.large.Create(ctx, id)
	if err != nil {
		return nil, err
	}
	return &pending{store: s, ctx: ctx, id: id, large: lp}, nil
}

// Reserve reserves an ID in the large store, which is where Create puts objects.
func (s *Store) Reserve() blob.ID { return blob.NewIDFor(s.large) }

// bufPool recycles the buffers that hold an object until it is known to be small.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// CreateSmall starts an object that stays in memory until it grows past the inline limit,
// when it moves to the large store.
func (s *Store) CreateSmall(ctx context.Context, id blob.ID) (blob.Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create object %s: %w", id, err)
	}
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	b.Write(make([]byte, headerLen)) // the commit time goes here
	return &pending{store: s, ctx: ctx, id: id, buf: b}, nil
}

// pending buffers an object while it is small; large is set once it has moved to the
// large store.
type pending struct {
	store *Store
	ctx   context.Context
	id    blob.ID
	buf   *bytes.Buffer
	large blob.Pending
	done  bool
}

func (p *pending) Write(b []byte) (int, error) {
	if p.done {
		return 0, fmt.Errorf("write object %s: %w", p.id, blob.ErrFinished)
	}
	if p.large != nil {
		return p.large.Write(b)
	}
	if p.buf.Len()-headerLen+len(b) <= p.store.max {
		return p.buf.Write(b)
	}
	if err := p.toLarge(); err != nil {
		return 0, err
	}
	return p.large.Write(b)
}

// toLarge moves the object to the large store with what came so far.
func (p *pending) toLarge() error {
	lp, err := p.store.large.Create(p.ctx, p.id)
	if err != nil {
		return err
	}
	if _, err := lp.Write(p.buf.Bytes()[headerLen:]); err != nil {
		lp.Abort()
		return err
	}
	p.large = lp
	p.release()
	return nil
}

func (p *pending) Commit(ctx context.Context) error {
	if p.done {
		return fmt.Errorf("commit object %s: %w", p.id, blob.ErrFinished)
	}
	if err := ctx.Err(); err != nil {
		p.Abort()
		return fmt.Errorf("commit object %s: %w", p.id, err)
	}
	var size int64
	if p.large == nil {
		size = int64(p.buf.Len() - headerLen)
	}
	if p.large == nil && !p.store.take(size) {
		// Over the budget: the object goes where large objects go.
		if err := p.toLarge(); err != nil {
			p.done = true
			return fmt.Errorf("commit object %s: %w", p.id, err)
		}
	}
	p.done = true
	if p.large != nil {
		return p.commitLarge(ctx)
	}
	defer p.release()
	v := p.buf.Bytes()
	binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
	k := key(p.id)
	err := p.store.clash(ctx, p.id, k)
	if err == nil {
		err = p.store.db.Carry(k, v)
		if errors.Is(err, kv.ErrCarryFull) {
			// Many small writes at once: this one is committed on its own, lazily, which
			// the metadata commit naming it still follows.
			err = p.store.db.UpdateLazy(ctx, func(tx kv.Txn) error { return tx.Set(k, v) })
		}
	}
	if err != nil {
		p.store.used.Add(-size)
		return fmt.Errorf("commit object %s: %w", p.id, err)
	}
	p.store.maybeSpill()
	return nil
}

// take counts n more inline bytes if the budget has room for them.
func (s *Store) take(n int64) bool {
	for {
		u := s.used.Load()
		if u+n > s.budget {
			return false
		}
		if s.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// clash reports blob.ErrExists when id is already an object of either store: IDs are
// random, so this is a caller's mistake, never a collision.
func (s *Store) clash(ctx context.Context, id blob.ID, k []byte) error {
	if _, err := s.get(ctx, id); err == nil {
		return blob.ErrExists
	} else if !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	if _, err := s.large.Stat(ctx, id); err == nil {
		return blob.ErrExists
	} else if !errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("look for a clash in the large store: %w", err)
	}
	return nil
}

func (p *pending) commitLarge(ctx context.Context) error {
	if _, err := p.store.get(ctx, p.id); err == nil {
		p.large.Abort()
		return fmt.Errorf("commit object %s: %w", p.id, blob.ErrExists)
	} else if !errors.Is(err, blob.ErrNotFound) {
		p.large.Abort()
		return fmt.Errorf("commit object %s: look for a clash in the metadata store: %w", p.id, err)
	}
	return p.large.Commit(ctx)
}

func (p *pending) Abort() error {
	if p.done {
		return nil
	}
	p.done = true
	if p.large != nil {
		return p.large.Abort()
	}
	p.release()
	return nil
}

// release returns the buffer, wiped: it held ciphertext only, but there is no reason to
// leave even that in a pooled buffer.
func (p *pending) release() {
	if p.buf == nil {
		return
	}
	clear(p.buf.Bytes())
	if p.buf.Cap() <= 2*(p.store.max+headerLen) {
		bufPool.Put(p.buf)
	}
	p.buf = nil
}

// get returns the stored value of an inline object (header and bytes), or an error wrapping
// blob.ErrNotFound.
func (s *Store) get(ctx context.Context, id blob.ID) ([]byte, error) {
	var v []byte
	err := s.db.View(ctx, func(tx kv.Txn) error {
		var err error
		v, err = tx.Get(key(id))
		return err
	})
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return nil, blob.ErrNotFound
	case err != nil:
		return nil, err
	case len(v) < headerLen:
		return nil, fmt.Errorf("inline object %s: %d-byte record", id, len(v))
	}
	return v, nil
}

func info(id blob.ID, v []byte) blob.Info {
	return blob.Info{
		ID:      id,
		Size:    int64(len(v) - headerLen),
		ModTime: time.Unix(0, int64(binary.BigEndian.Uint64(v))),
	}
}

// Open opens an object from whichever store holds it.
func (s *Store) Open(ctx context.Context, id blob.ID) (blob.Object, error) {
	o, err := find(ctx, s, id, s.large.Open, func(v []byte) blob.Object { return object{bytes.NewReader(v[headerLen:])} })
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("open object %s: %w", id, err)
	}
	return o, err
}

// find looks id up in the large store first, where every segment's object is, so that
// opening one costs no metadata lookup; then inline; and in the large store once more when
// both miss, since a spill may have moved the object between the two looks (it commits
// the copy before it deletes the record, so the second look finds it).
func find[T any](ctx context.Context, s *Store, id blob.ID, large func(context.Context, blob.ID) (T, error), inline func([]byte) T) (T, error) {
	x, err := large(ctx, id)
	if !errors.Is(err, blob.ErrNotFound) {
		return x, err
	}
	v, err := s.get(ctx, id)
	switch {
	case err == nil:
		return inline(v), nil
	case errors.Is(err, blob.ErrNotFound):
		return large(ctx, id)
	default:
		var zero T
		return zero, err
	}
}

// object is an inline object in memory: immutable, so a copy is as good as the original.
type object struct{ r *bytes.Reader }

func (o object) ReadAt(b []byte, off int64) (int, error) { return o.r.ReadAt(b, off) }
func (o object) Size() int64                             { return o.r.Size() }
func (o object) Close() error                            { return nil }

// Stat describes an object from whichever store holds it.
func (s *Store) Stat(ctx context.Context, id blob.ID) (blob.Info, error) {
	in, err := find(ctx, s, id, s.large.Stat, func(v []byte) blob.Info { return info(id, v) })
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return blob.Info{}, fmt.Errorf("stat object %s: %w", id, err)
	}
	return in, err
}

// Delete removes an object from whichever store holds it: both, after a crash in the
// middle of a spill. An inline delete is lazy, as blob.Store allows: the next durable
// commit carries it.
func (s *Store) Delete(ctx context.Context, id blob.ID) error {
	size, found, err := s.deleteRecord(ctx, id)
	if err != nil {
		return fmt.Errorf("delete object %s: %w", id, err)
	}
	err = s.large.Delete(ctx, id)
	if found {
		s.used.Add(-size)
		if errors.Is(err, blob.ErrNotFound) {
			err = nil
		}
	}
	return err
}

// deleteRecord deletes the inline record of id, if there is one, lazily, and returns the
// size of the object it held.
func (s *Store) deleteRecord(ctx context.Context, id blob.ID) (size int64, found bool, err error) {
	k := key(id)
	err = s.db.UpdateLazy(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(k)
		if errors.Is(err, kv.ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		found, size = true, int64(len(v)-headerLen)
		return tx.Delete(k)
	})
	return size, found, err
}

// listBatch is how many inline objects List reads per transaction; fn runs between them.
const listBatch = 256

// List reports the inline objects, then those of the large store. Objects still carried
// (no metadata commit since theirs) are committed first, so that the scan sees them.
func (s *Store) List(ctx context.Context, fn func(blob.Info) error) error {
	if err := s.db.Flush(ctx); err != nil {
		return fmt.Errorf("list inline objects: %w", err)
	}
	if err := s.listInline(ctx, fn); err != nil {
		return err
	}
	return s.large.List(ctx, fn)
}

func (s *Store) listInline(ctx context.Context, fn func(blob.Info) error) error {
	prefix := []byte(Prefix)
	var start []byte
	for {
		var batch []blob.Info
		err := s.db.View(ctx, func(tx kv.Txn) error {
			return tx.Scan(prefix, start, func(k, v []byte) (bool, error) {
				if len(k) != len(prefix)+blob.IDLen || len(v) < headerLen {
					return true, nil // not an object record; nothing else writes here
				}
				var id blob.ID
				copy(id[:], k[len(prefix):])
				batch = append(batch, info(id, v))
				return len(batch) < listBatch, nil
			})
		})
		if err != nil {
			return fmt.Errorf("list inline objects: %w", err)
		}
		for _, in := range batch {
			if err := fn(in); err != nil {
				return err
			}
		}
		if len(batch) < listBatch {
			return nil
		}
		last := batch[len(batch)-1].ID
		start = append(key(last), 0) // the next key after the last one seen
	}
}
