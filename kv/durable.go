package kv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// How Badger is made durable without syncing inside every commit.
//
// Badger commits into a memtable whose write-ahead log is a memory-mapped file: a commit
// survives a crash of the process as soon as it returns (the pages belong to the kernel),
// and a crash of the machine once that log is synced. Badger's own SyncWrites syncs inside
// every commit, so a file's create and its close pay one sync each, whatever the caller
// needs. kv instead commits without syncing and syncs the log when a caller asks for
// durability (Update, Sync), which also makes every earlier lazy commit durable, because
// they sit earlier in the same log.
//
// Except when the memtable rotated in between: Badger then starts a new log, and the old
// memtable is durable only once its flush to a table finishes; db.Sync syncs the new log
// alone. kv learns of each rotation from Badger's own debug message (rotationMessage; a
// test fails if Badger stops sending it) and keeps the keys of every commit not yet known
// durable, with the rotation count seen before it started. A sync that finds keys written
// before the current memtable began writes their current values again (the refresh: same
// state, newer version, into the current log) and syncs again. Re-writing the current
// value, not the one remembered, is what keeps this safe when other transactions changed
// the key since.

// rotationMessage starts the debug message Badger logs, under its write lock, when it
// replaces a full memtable with a new one (db.ensureRoomForWrite).
const rotationMessage = "Flushing memtable"

// Bounds on what lazy commits may leave waiting for a sync: past either, the lazy commit
// syncs itself. They bound memory and the cost of one refresh; keeping a refresh well
// under a memtable (8 MiB) means it cannot rotate the memtable more than once, so the
// refresh loop ends.
const (
	maxPendingKeys  = 4096
	maxPendingBytes = 1 << 20
)

// pendingWrite is a key written by a commit that is not yet known durable.
type pendingWrite struct {
	epoch uint64 // rotations seen before the commit started
	seq   uint64 // registration order, to tell what a sync round covered
	size  int    // of key and value, charged to pendingBytes
}

// durability tracks what Badger has committed but not yet synced.
type durability struct {
	// epoch counts memtable rotations since open.
	epoch atomic.Uint64
	// refreshes counts keys re-written by refreshes, for tests.
	refreshes atomic.Uint64

	mu           sync.Mutex
	pending      map[string]pendingWrite
	pendingBytes int
	seq          uint64

	// Group sync: one round at a time; a caller waits for a round that started after it
	// arrived, and callers arriving during a round share the next one.
	roundMu  sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64
	finished uint64
	lastErr  error
}

func newDurability() *durability {
	d := &durability{pending: make(map[string]pendingWrite)}
	d.cond = sync.NewCond(&d.roundMu)
	return d
}

// observe is called with every debug message of Badger.
func (d *durability) observe(format string) {
	if strings.HasPrefix(format, rotationMessage) {
		d.epoch.Add(1)
	}
}

// write is one key a commit wrote, with the size of its key and value.
type write struct {
	key  []byte
	size int
}

// register records the writes of a commit that returned; epoch is what d.epoch was before
// the commit started. It reports whether the pending set has grown past its bounds.
func (d *durability) register(epoch uint64, writes []write) (full bool) {
	if len(writes) == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	for _, w := range writes {
		k := string(w.key)
		d.pendingBytes += w.size - d.pending[k].size
		d.pending[k] = pendingWrite{epoch: epoch, seq: d.seq, size: w.size}
	}
	return len(d.pending) > maxPendingKeys || d.pendingBytes > maxPendingBytes
}

// forget drops the writes registered up to seq upto. d.mu must be held.
func (d *durability) forget(upto uint64) {
	for k, p := range d.pending {
		if p.seq <= upto {
			d.pendingBytes -= p.size
			delete(d.pending, k)
		}
	}
}

// group runs round, or waits for a round that started after group was called, and returns
// that round's error. Rounds run one at a time, so concurrent callers share their syncs.
func (d *durability) group(round func() error) error {
	d.roundMu.Lock()
	defer d.roundMu.Unlock()
	// A round running now may have started before our caller's commit: it needs the next.
	target := d.started + 1
	for d.finished < target {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		mine := d.started
		d.roundMu.Unlock()
		err := round()
		d.roundMu.Lock()
		d.running = false
		d.finished = mine
		d.lastErr = err
		d.cond.Broadcast()
	}
	// Rounds finish in order and each covers everything its predecessors did, so the last
	// finished round's result answers for the target round too.
	return d.lastErr
}

// syncRound makes every write registered before it started durable: sync the log, and if
// some of those writes may sit in a memtable that rotated out, refresh them and sync again.
// refresh re-writes the current values of keys and registers them again.
func (d *durability) syncRound(ctx context.Context, sync func() error, refresh func(ctx context.Context, keys []string) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		d.mu.Lock()
		upto := d.seq
		d.mu.Unlock()
		before := d.epoch.Load()
		if err := sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		if d.epoch.Load() != before {
			continue // a rotation during the sync: which log was synced is unknown
		}
		var stale []string
		d.mu.Lock()
		for k, p := range d.pending {
			if p.seq <= upto && p.epoch < before {
				stale = append(stale, k)
			}
		}
		if len(stale) == 0 {
			// Everything up to upto started in the current memtable and finished before
			// the sync: it is in the log just synced.
			d.forget(upto)
			d.mu.Unlock()
			return nil
		}
		d.mu.Unlock()
		if err := refresh(ctx, stale); err != nil {
			return fmt.Errorf("refresh %d keys of a rotated memtable: %w", len(stale), err)
		}
		d.refreshes.Add(uint64(len(stale)))
	}
}
