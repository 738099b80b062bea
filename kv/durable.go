package kv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"dsh/internal/diskio"
)

// How Badger is made durable without syncing inside every commit.
//
// Badger commits into a memtable whose write-ahead log is a memory-mapped file: a commit
// survives a crash of the process as soon as it returns (the pages belong to the kernel),
// and a crash of the machine once that log is synced. Badger's own SyncWrites syncs inside
// every commit, so a file's create and its close paid one sync each, whatever the caller
// needed. kv instead commits without syncing and syncs the log when a caller asks for
// durability (Update, Sync); that covers every earlier commit, because they sit earlier in
// the same log.
//
// Or in an older log: when Badger replaces a full memtable it starts a new log, and
// db.Sync syncs only the current one. So kv syncs the outgoing log at that moment. Badger
// announces the rotation with a debug message (rotationMessage) from its single write
// goroutine, under its write lock, before the new memtable takes any write; kv's logger
// syncs every log file there. Every log but the current one is thus durable before a later
// commit can land anywhere, and the order of commits on disk is the order they were made
// in. A test fails if Badger stops sending the message. Logs replayed at open (left by a
// process that was killed) are synced at open for the same reason.

// rotationMessage starts the debug message Badger logs when it replaces a full memtable
// with a new one (badger v4 db.ensureRoomForWrite).
const rotationMessage = "Flushing memtable"

// memSuffix names the files of Badger's memtable logs.
const memSuffix = ".mem"

// durability syncs Badger's memtable logs at rotation and shares syncs between callers.
type durability struct {
	dir string
	// rotations counts memtable rotations since open, for tests.
	rotations atomic.Uint64
	// failed holds the first error of a sync at rotation. A log that failed to sync may
	// lose commits that callers were told are durable, so every later sync fails too.
	failed atomic.Pointer[error]

	// Group sync: one round at a time; a caller waits for a round that started after it
	// arrived, and callers arriving during a round share the next one.
	roundMu  sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64
	finished uint64
	lastErr  error
}

func newDurability(dir string) *durability {
	d := &durability{dir: dir}
	d.cond = sync.NewCond(&d.roundMu)
	return d
}

// observe is called with every debug message of Badger, from its write goroutine.
func (d *durability) observe(format string) {
	if !strings.HasPrefix(format, rotationMessage) {
		return
	}
	d.rotations.Add(1)
	if err := d.syncLogs(); err != nil {
		err = fmt.Errorf("sync the write-ahead log of a full memtable: %w", err)
		d.failed.CompareAndSwap(nil, &err)
	}
}

// syncLogs syncs every memtable log in the directory and the directory itself. The logs
// other than the one being rotated out are already durable, so their syncs cost little.
func (d *durability) syncLogs() error {
	logs, err := filepath.Glob(filepath.Join(d.dir, "*"+memSuffix))
	if err != nil {
		return err
	}
	for _, name := range logs {
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue // flushed to a table and removed meanwhile: durable there
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return diskio.SyncDir(d.dir)
}

// check returns the sticky error of a failed sync at rotation.
func (d *durability) check() error {
	if p := d.failed.Load(); p != nil {
		return *p
	}
	return nil
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
