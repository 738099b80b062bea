// Package inline is a blob.Store that keeps small objects in the kv store, next to the
// metadata that names them, and hands every other object to a second blob.Store (the local
// folder). A file of a few KiB then costs no file of its own on disk, and its object
// becomes durable with the metadata commit that names it instead of with two syncs of its
// own (file and folder).
//
// It owns the choice between the two stores and the kv keys under Prefix. It must never
// see plaintext (it stores the sealed objects it is given, unchanged), never put an object
// in both stores, and never let an object become durable after the metadata naming it:
// inline objects are committed with kv.Store.UpdateLazy, which every later Update covers,
// and the metadata commit that names an object is such an Update.
package inline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"dsh/blob"
	"dsh/kv"
)

// Prefix starts the kv key of every inline object: Prefix | raw ID (16 bytes).
const Prefix = "blob/"

// DefaultMax is the largest object kept inline when New is given no limit. An object of
// a file of up to about 16 KiB, the size of most configuration, code and small tables,
// fits; larger objects would crowd the metadata's memtables for little gain.
const DefaultMax = 16 << 10

// headerLen is the value's header: the commit time (Unix nanoseconds, big-endian).
const headerLen = 8

var _ blob.Store = (*Store)(nil)

// Store keeps objects of at most max bytes in db and the others in large.
type Store struct {
	db    kv.Store
	large blob.Store
	max   int
}

// New returns a store keeping objects of at most max bytes (DefaultMax if max <= 0) in db
// and every other one in large. max is capped so that a value fits kv's limits.
func New(db kv.Store, large blob.Store, max int) *Store {
	if max <= 0 {
		max = DefaultMax
	}
	max = min(max, kv.MaxValueSize-headerLen)
	return &Store{db: db, large: large, max: max}
}

func key(id blob.ID) []byte {
	k := make([]byte, 0, len(Prefix)+blob.IDLen)
	k = append(k, Prefix...)
	return append(k, id[:]...)
}

// bufPool recycles the buffers that hold an object until it is known to be small.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Create starts an object that stays in memory until it grows past the inline limit, when
// it moves to the large store.
func (s *Store) Create(ctx context.Context, id blob.ID) (blob.Pending, error) {
	// No check for an existing object here (blob.Store allows that): Commit makes it, in
	// its transaction, and a random ID makes a clash all but impossible.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create object %s: %w", id, err)
	}
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	b.Write(make([]byte, headerLen)) // the commit time goes here
	return &pending{store: s, ctx: ctx, id: id, buf: b}, nil
}

// pending buffers an object while it is small; large is set once it has moved to the large
// store.
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
	// Too big to stay inline: start it in the large store with what came so far.
	lp, err := p.store.large.Create(p.ctx, p.id)
	if err != nil {
		return 0, err
	}
	if _, err := lp.Write(p.buf.Bytes()[headerLen:]); err != nil {
		lp.Abort()
		return 0, err
	}
	p.large = lp
	p.release()
	return lp.Write(b)
}

func (p *pending) Commit(ctx context.Context) error {
	if p.done {
		return fmt.Errorf("commit object %s: %w", p.id, blob.ErrFinished)
	}
	p.done = true
	if p.large != nil {
		return p.commitLarge(ctx)
	}
	defer p.release()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit object %s: %w", p.id, err)
	}
	v := p.buf.Bytes()
	binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
	k := key(p.id)
	err := p.store.db.UpdateLazy(ctx, func(tx kv.Txn) error {
		if _, err := tx.Get(k); err == nil {
			return blob.ErrExists
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return tx.Set(k, v)
	})
	// Each store refuses a clash within itself; across them, each commit looks at the other
	// store after its own, so of two racing commits the later one sees the earlier and
	// withdraws: an ID never names two objects.
	if err == nil {
		_, serr := p.store.large.Stat(ctx, p.id)
		switch {
		case serr == nil:
			err = blob.ErrExists
		case !errors.Is(serr, blob.ErrNotFound):
			err = fmt.Errorf("look for a clash in the large store: %w", serr)
		}
		if err != nil {
			// Withdraw; if even that fails, the record is unreferenced and the sweep of
			// unreferenced objects removes it.
			if derr := p.store.db.UpdateLazy(context.WithoutCancel(ctx), func(tx kv.Txn) error { return tx.Delete(k) }); derr != nil {
				err = fmt.Errorf("%w (and withdrawing the inline copy: %w)", err, derr)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("commit object %s: %w", p.id, err)
	}
	return nil
}

func (p *pending) commitLarge(ctx context.Context) error {
	if err := p.large.Commit(ctx); err != nil {
		return err
	}
	_, err := p.store.get(ctx, p.id)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return nil
	case err == nil:
		err = blob.ErrExists
	default:
		err = fmt.Errorf("look for a clash in the metadata store: %w", err)
	}
	if derr := p.store.large.Delete(context.WithoutCancel(ctx), p.id); derr != nil {
		err = fmt.Errorf("%w (and withdrawing the large copy: %w)", err, derr)
	}
	return fmt.Errorf("commit object %s: %w", p.id, err)
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
	v, err := s.get(ctx, id)
	switch {
	case err == nil:
		return object{bytes.NewReader(v[headerLen:])}, nil
	case errors.Is(err, blob.ErrNotFound):
		return s.large.Open(ctx, id)
	default:
		return nil, fmt.Errorf("open object %s: %w", id, err)
	}
}

// object is an inline object in memory: immutable, so a copy is as good as the original.
type object struct{ r *bytes.Reader }

func (o object) ReadAt(b []byte, off int64) (int, error) { return o.r.ReadAt(b, off) }
func (o object) Size() int64                             { return o.r.Size() }
func (o object) Close() error                            { return nil }

// Stat describes an object from whichever store holds it.
func (s *Store) Stat(ctx context.Context, id blob.ID) (blob.Info, error) {
	v, err := s.get(ctx, id)
	switch {
	case err == nil:
		return info(id, v), nil
	case errors.Is(err, blob.ErrNotFound):
		return s.large.Stat(ctx, id)
	default:
		return blob.Info{}, fmt.Errorf("stat object %s: %w", id, err)
	}
}

// Delete removes an object from whichever store holds it. An inline delete is lazy, as
// blob.Store allows: the next durable commit carries it.
func (s *Store) Delete(ctx context.Context, id blob.ID) error {
	k := key(id)
	found := false
	err := s.db.UpdateLazy(ctx, func(tx kv.Txn) error {
		_, err := tx.Get(k)
		if errors.Is(err, kv.ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return tx.Delete(k)
	})
	if err != nil {
		return fmt.Errorf("delete object %s: %w", id, err)
	}
	if found {
		return nil
	}
	return s.large.Delete(ctx, id)
}

// listBatch is how many inline objects List reads per transaction; fn runs between them.
const listBatch = 256

// List reports the inline objects, then those of the large store.
func (s *Store) List(ctx context.Context, fn func(blob.Info) error) error {
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
			break
		}
		last := batch[len(batch)-1].ID
		start = append(key(last), 0) // the next key after the last one seen
	}
	return s.large.List(ctx, fn)
}
