package kv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

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

// The durable sync itself (syncCurrent) is an fdatasync of the current log, kept open: the
// same as Badger's db.Sync minus its msync of the value log, which holds nothing since every
// value is kept in the LSM tree (valueThreshold), and minus Badger's lock. kv does not track
// which log is current; it checks, each round, that the one it holds still is: no log
// numbered after it exists (Badger numbers each new log one above the last and creates it
// before writing to it) and it still has its name (logs are removed in order, once
// flushed). When that holds, every commit made before the round is in that log or in an
// older one its rotation synced. When it does not, kv opens the newest log and checks
// again; if that fails too, the round uses db.Sync.

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

	// The log believed current and its number; used by one round at a time.
	cur    *os.File
	curFid int
	// fallbacks counts rounds that had to use db.Sync, for tests.
	fallbacks atomic.Uint64
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

// openNewest opens the newest memtable log in place of the one held.
func (d *durability) openNewest() error {
	logs, err := filepath.Glob(filepath.Join(d.dir, "*"+memSuffix))
	if err != nil {
		return err
	}
	newest := -1
	for _, name := range logs {
		if fid, ok := logFid(name); ok && fid > newest {
			newest = fid
		}
	}
	if newest < 0 {
		return errors.New("no memtable log found")
	}
	f, err := os.OpenFile(logPath(d.dir, newest), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	d.closeCurrent()
	d.cur, d.curFid = f, newest
	return nil
}

// holdsCurrent reports whether the log held is the one Badger writes to now, or was when
// the round started (see above).
func (d *durability) holdsCurrent() bool {
	if d.cur == nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(d.cur.Fd()), &st); err != nil || st.Nlink == 0 {
		return false
	}
	_, err := os.Lstat(logPath(d.dir, d.curFid+1))
	return errors.Is(err, os.ErrNotExist)
}

// syncCurrent fdatasyncs the current log and reports whether it could: false means kv
// could not tell which log is current, and the caller must use db.Sync. Rounds call it
// one at a time.
func (d *durability) syncCurrent() (bool, error) {
	if !d.holdsCurrent() {
		if err := d.openNewest(); err != nil || !d.holdsCurrent() {
			d.fallbacks.Add(1)
			return false, nil
		}
	}
	return true, unix.Fdatasync(int(d.cur.Fd()))
}

// closeCurrent releases the current log's descriptor.
func (d *durability) closeCurrent() {
	if d.cur != nil {
		d.cur.Close()
		d.cur = nil
	}
}

func logPath(dir string, fid int) string {
	return filepath.Join(dir, fmt.Sprintf("%05d%s", fid, memSuffix))
}

// logFid parses the number in a log's name (Badger's "%05d.mem").
func logFid(path string) (int, bool) {
	name := strings.TrimSuffix(filepath.Base(path), memSuffix)
	fid, err := strconv.Atoi(name)
	return fid, err == nil && fid >= 0
}
