package kv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
// Or in an older log: when Badger replaces a full memtable it starts a new log, and a sync
// of the new one says nothing of the old one, which the kernel may not have written yet
// while it writes pages of the new one. So kv watches the logs themselves. Badger names
// each log by a number one above the last ("%05d.mem") and writes only to the newest; kv
// holds the newest it knows of, and whenever the next number exists (a rotation), the one
// held is complete: kv fdatasyncs it, makes the folder entry of the new one durable, and
// holds the new one. It looks at every durable round and right after every lazy commit
// (one lstat), so the old log is durable before a later commit can depend on it, and the
// order of commits on disk is the order they were made in. (A lazy commit that lands in a
// new log has its predecessor synced a few microseconds after it is written, not before:
// only a power cut in that instant, with the kernel writing back the new log's page ahead
// of the old one's, could keep the later commit without the earlier.)
//
// This depends on Badger's naming of its logs, not on anything it might stop sending:
// OpenBadger refuses a store in which it finds no log named that way, and the durable
// round falls back to Badger's own db.Sync (counted) whenever the log held is gone with
// no successor, so that a change of naming fails loudly or costs speed, never durability.
// Logs replayed at open (left by a process that was killed) are synced at open.
//
// The durable sync itself is an fdatasync of the log held: the same as Badger's db.Sync
// minus its msync of the value log, which holds nothing since every value is kept in the
// LSM tree (valueThreshold), and minus Badger's lock.

// memSuffix names the files of Badger's memtable logs.
const memSuffix = ".mem"

// errNoLog is returned by OpenBadger when Badger's folder holds no log kv can recognise.
var errNoLog = errors.New("no memtable log named %05d" + memSuffix + " found: this Badger names its logs in a way kv does not know, so kv cannot make commits durable in order")

// durability syncs Badger's memtable logs and shares syncs between callers.
type durability struct {
	dir string
	// rotations counts the rotations seen since open, for tests.
	rotations atomic.Uint64
	// failed holds the first error of a sync of a complete log. A log that failed to sync
	// may lose commits that callers were told are durable, so every later sync fails too.
	failed atomic.Pointer[error]

	// Group sync: one round at a time; a caller waits for a round that started after it
	// arrived, and callers arriving during a round share the next one.
	roundMu  sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64
	finished uint64
	lastErr  error

	// logMu guards the log held; rounds and the check after a lazy commit take it.
	logMu  sync.Mutex
	cur    *os.File
	curFid atomic.Int64
	// fallbacks counts rounds that had to use db.Sync, for tests.
	fallbacks atomic.Uint64
}

func newDurability(dir string) *durability {
	d := &durability{dir: dir}
	d.cond = sync.NewCond(&d.roundMu)
	return d
}

// start runs at open, after Badger replayed its logs: it syncs every log (replayed commits
// were never synced, and later durable commits must not depend on them while they could
// still vanish) and the folder, and holds the newest.
func (d *durability) start() error {
	fids, err := listLogs(d.dir)
	if err != nil {
		return err
	}
	if len(fids) == 0 {
		return errNoLog
	}
	for _, fid := range fids {
		f, err := os.OpenFile(logPath(d.dir, fid), os.O_RDWR, 0)
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
	if err := diskio.SyncDir(d.dir); err != nil {
		return err
	}
	newest := fids[len(fids)-1]
	f, err := os.OpenFile(logPath(d.dir, newest), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	d.cur = f
	d.curFid.Store(int64(newest))
	// Badger may have started another log since the listing.
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.advance()
}

// advance moves the held log to the newest one, syncing each complete log it passes and
// the folder. d.logMu must be held.
func (d *durability) advance() error {
	for {
		next := int(d.curFid.Load()) + 1
		f, err := os.OpenFile(logPath(d.dir, next), os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		// The held log is complete: Badger writes only to the newest. It may have been
		// flushed to a table and removed already; syncing it then costs nothing.
		if err := unix.Fdatasync(int(d.cur.Fd())); err != nil {
			f.Close()
			return fmt.Errorf("sync the write-ahead log of a full memtable: %w", err)
		}
		if err := diskio.SyncDir(d.dir); err != nil {
			f.Close()
			return err
		}
		d.cur.Close()
		d.cur = f
		d.curFid.Store(int64(next))
		d.rotations.Add(1)
	}
}

// afterCommit runs after every lazy commit: if Badger has started a new log, the ones
// before it are synced now, before a later commit can depend on them.
func (d *durability) afterCommit() {
	if d.cur == nil {
		return
	}
	if _, err := os.Lstat(logPath(d.dir, int(d.curFid.Load())+1)); err != nil {
		return
	}
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if err := d.advance(); err != nil {
		d.fail(err)
	}
}

// fail records the first error of a sync that callers may have relied on.
func (d *durability) fail(err error) {
	d.failed.CompareAndSwap(nil, &err)
}

// check returns the sticky error of a failed sync of a complete log.
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

// syncCurrent makes every commit so far durable: the logs before the newest are synced as
// it moves past them, then the newest is fdatasync'd. It reports false when it could not
// tell which log is current (the one held is gone and has no successor), and the caller
// must use db.Sync. Rounds call it one at a time.
func (d *durability) syncCurrent() (bool, error) {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if d.cur == nil {
		d.fallbacks.Add(1)
		return false, nil
	}
	if err := d.advance(); err != nil {
		d.fail(err)
		return true, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(d.cur.Fd()), &st); err != nil || st.Nlink == 0 {
		// Removed, and no newer log: not how Badger works today. Its own sync is safe.
		d.fallbacks.Add(1)
		return false, nil
	}
	return true, unix.Fdatasync(int(d.cur.Fd()))
}

// closeCurrent releases the held log's descriptor.
func (d *durability) closeCurrent() {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if d.cur != nil {
		d.cur.Close()
		d.cur = nil
	}
}

func logPath(dir string, fid int) string {
	return filepath.Join(dir, fmt.Sprintf("%05d%s", fid, memSuffix))
}

// listLogs returns the numbers of the memtable logs in dir, ascending.
func listLogs(dir string) ([]int, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+memSuffix))
	if err != nil {
		return nil, err
	}
	var fids []int
	for _, name := range names {
		if fid, ok := logFid(name); ok {
			fids = append(fids, fid)
		}
	}
	slices.Sort(fids)
	return fids, nil
}

// logFid parses the number in a log's name (Badger's "%05d.mem").
func logFid(path string) (int, bool) {
	name := strings.TrimSuffix(filepath.Base(path), memSuffix)
	fid, err := strconv.Atoi(name)
	return fid, err == nil && fid >= 0
}
