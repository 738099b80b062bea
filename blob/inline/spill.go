package inline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"dsh/blob"
	"dsh/kv"
)

// Spilling: the budget is not a wall.
//
// Patches stay inline until a later write or a rewrite of their segment drops them, which
// for a database written at random may be never. Without help the budget would fill once
// and every later patch would be a file again. So when more than seven eighths of it is
// used, a goroutine moves inline objects to the large store, under the same ID, until
// three quarters are, one at a time with a pause between them (spillPause), so that it
// never takes the disk from the writes it makes room for. The object is committed there
// first (durable), and only then is its record deleted
// (lazily; a crash in between leaves it in both stores, which Open and Delete handle). The
// metadata never changes: it names IDs, not stores.

// spillHigh and spillLow are the fractions of the budget at which spilling starts and stops.
const (
	spillHighNum, spillHighDen = 7, 8
	spillLowNum, spillLowDen   = 3, 4
)

// spillPause is the pause after each object spilled: a spill costs a file and its sync,
// and at most about one in three of the disk's syncs goes to spilling.
const spillPause = time.Millisecond

// spillBatch is how many records one pass reads before moving them.
const spillBatch = 64

// startSpiller starts the goroutine that spills when kicked; Close stops it.
func (s *Store) startSpiller() {
	s.kick = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-s.kick:
			}
			if err := s.spill(); err != nil && !errors.Is(err, context.Canceled) {
				s.spillErrs.Add(1)
			}
		}
	}()
}

// maybeSpill wakes the spiller when the inline bytes passed the high mark.
func (s *Store) maybeSpill() {
	if s.kick == nil || s.used.Load()*spillHighDen <= s.budget*spillHighNum {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// spill moves objects to the large store until the inline bytes are at the low mark.
func (s *Store) spill() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var start []byte
	for s.used.Load()*spillLowDen > s.budget*spillLowNum {
		var ids []blob.ID
		err := s.db.View(ctx, func(tx kv.Txn) error {
			return tx.Scan([]byte(Prefix), start, func(k, _ []byte) (bool, error) {
				if len(k) == len(Prefix)+blob.IDLen {
					var id blob.ID
					copy(id[:], k[len(Prefix):])
					ids = append(ids, id)
				}
				return len(ids) < spillBatch, nil
			})
		})
		if err != nil {
			return fmt.Errorf("spill inline objects: %w", err)
		}
		if len(ids) == 0 {
			if start == nil {
				return nil // nothing committed inline (what is left is still carried)
			}
			start = nil // wrap around: objects before the cursor may have come since
			continue
		}
		for _, id := range ids {
			if err := s.spillOne(ctx, id); err != nil {
				return err
			}
			if s.used.Load()*spillLowDen <= s.budget*spillLowNum {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(spillPause):
			}
		}
		start = append(key(ids[len(ids)-1]), 0)
	}
	return nil
}

// spillOne moves one object to the large store. An object deleted meanwhile is skipped,
// and its copy in the large store removed.
func (s *Store) spillOne(ctx context.Context, id blob.ID) error {
	v, err := s.get(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p, err := s.large.Create(ctx, id)
	if err != nil {
		return fmt.Errorf("spill object %s: %w", id, err)
	}
	if _, err := p.Write(v[headerLen:]); err != nil {
		p.Abort()
		return fmt.Errorf("spill object %s: %w", id, err)
	}
	if err := p.Commit(ctx); err != nil && !errors.Is(err, blob.ErrExists) {
		// ErrExists: a crash left it in both stores, and its record goes now.
		return fmt.Errorf("spill object %s: %w", id, err)
	}
	size, found, err := s.deleteRecord(ctx, id)
	if err != nil {
		return fmt.Errorf("spill object %s: remove its record: %w", id, err)
	}
	if !found {
		// Deleted while it was copied: the copy must not outlive it.
		if err := s.large.Delete(ctx, id); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("spill object %s: remove the copy of a deleted object: %w", id, err)
		}
		return nil
	}
	s.used.Add(-size)
	s.spilled.Add(1)
	return nil
}

// Close stops the spiller and waits for it. The stores themselves belong to the caller.
func (s *Store) Close() error {
	if s.stop == nil {
		return nil
	}
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}
