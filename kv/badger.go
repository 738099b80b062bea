package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"dsh/vault"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/skl"
	"github.com/dgraph-io/badger/v4/y"
	"golang.org/x/sys/unix"
)

// Errors of OpenBadger.
var (
	// ErrWrongKey is returned when the encryption key does not open an existing store.
	ErrWrongKey = errors.New("kv: wrong encryption key for this store")
	// ErrLocked is returned when another Badger (in this or another process) has the
	// directory open.
	ErrLocked = errors.New("kv: store is already open (by this or another process)")
)

// Memory and file sizes of Badger. The whole daemon must stay under about 256 MiB, and
// Badger's defaults alone would take more (five 64 MiB memtables and a 256 MiB block cache).
// Metadata entries are small, so small memtables lose little; together these cap Badger at
// roughly 3×10.5 + 16 + 8 ≈ 56 MiB of heap.
const (
	// memTableSize: Badger allocates each memtable's arena (this plus room for one largest
	// batch, about 15.7 MiB in all) up front. At 12 MiB Badger's own transaction limit
	// stays above kv's with every value sealed (checked below); 8 MiB was enough before
	// values were sealed.
	memTableSize = 12 << 20
	// numMemtables: one being written, up to two waiting for their flush to L0.
	numMemtables = 3
	// blockCacheSize holds decrypted, decompressed table blocks; with encryption on, every
	// miss costs a decryption, so it is small but not zero (Badger requires it > 0 then).
	blockCacheSize = 16 << 20
	// indexCacheSize holds decrypted table indexes and bloom filters. Badger panics without
	// it on an encrypted store; a miss re-reads and decrypts one table's index.
	indexCacheSize = 8 << 20
	// valueThreshold: every value kv accepts (up to MaxValueSize) stays in the LSM tree and
	// nothing new goes to the value log, sealed (Sealed) or not. Badger's value-log GC rewrites live values and
	// then deletes the old file without a sync of the rewrite, which is only safe with
	// SyncWrites; kv syncs itself (durable.go), so it keeps the value log empty instead.
	valueThreshold = MaxValueSize + SealOverhead + 1
	// valueLogFileSize: value-log GC rewrites whole files; small files let it reclaim space
	// from a metadata store in small steps (Badger's default is 1 GiB).
	valueLogFileSize = 64 << 20
	// numCompactors: Badger's minimum; each compactor holds tables in memory while it runs.
	numCompactors = 2
)

// Badger refuses a transaction bigger than 15% of a memtable or with more entries than fit
// that many maximal skiplist nodes, counting each entry at up to 12 bytes more than kv does,
// and every value here may be sealed (SealOverhead more). It keeps a value in the LSM tree
// only below 1 MiB. These fail to compile if a smaller memtable would let Badger refuse
// what kv allows, or push a value to the value log.
const (
	badgerBatchSize = 15 * memTableSize / 100
	_               = uint(badgerBatchSize - (MaxTxnBytes + (12+SealOverhead)*MaxTxnWrites))
	_               = uint(1<<20 - valueThreshold)
	_               = uint(badgerBatchSize/skl.MaxNodeSize - MaxTxnWrites)
)

// Value-log GC: rewrite a file when half of it is garbage, Badger's recommended ratio
// (lifetime write amplification of 2).
const gcDiscardRatio = 0.5

// BadgerOptions tunes OpenBadger; the zero value is ready to use.
type BadgerOptions struct {
	// Logger receives Badger's warnings and errors (byte-slice arguments redacted); Badger's
	// info and debug messages are dropped. Nil means slog.Default().
	Logger *slog.Logger
	// GCInterval is how often value-log garbage collection runs. Zero or negative turns it
	// off, the default: kv writes nothing to the value log (see valueThreshold), and GC is
	// not crash-safe without Badger's SyncWrites. It is kept for stores written before.
	GCInterval time.Duration
}

// Badger is a Store kept in a Badger database, encrypted at rest with Badger's own AES
// encryption. Commits are not synced one by one: Update and Sync sync the write-ahead log
// once for every commit before them, and concurrent callers share that sync (durable.go).
type Badger struct {
	db     *badger.DB
	dur    *durability
	log    *slog.Logger
	key    []byte // Badger's copy of the encryption key, wiped after Close
	gate   gate
	gcStop chan struct{}
	gcDone chan struct{}
}

var _ Store = (*Badger)(nil)

// OpenBadger opens (creating it if needed) the store in dir, encrypted with encryptionKey,
// which must be the key it was created with (else ErrWrongKey). Only one Badger may have dir
// open at a time (else ErrLocked). The key is copied; the caller may wipe it on return.
func OpenBadger(dir string, encryptionKey *vault.Key, opts BadgerOptions) (*Badger, error) {
	if encryptionKey == nil || encryptionKey.IsZero() {
		return nil, errors.New("kv: open badger: missing encryption key")
	}
	if err := probeLock(dir); err != nil {
		return nil, fmt.Errorf("open badger at %s: %w", dir, err)
	}
	log := loggerOrDefault(opts.Logger)
	// Badger keeps the slice for key rotation, so it gets its own copy, not the caller's.
	key := clone(encryptionKey[:])
	dur := newDurability(dir)
	bo := tuned(badger.DefaultOptions(dir), log).
		WithEncryptionKey(key).
		WithSyncWrites(false)
	db, err := badger.Open(bo)
	switch {
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		clear(key)
		return nil, fmt.Errorf("open badger at %s: %w", dir, ErrWrongKey)
	case errors.Is(err, y.ErrChecksumMismatch) || err != nil && strings.Contains(err.Error(), y.ErrChecksumMismatch.Error()):
		// Badger flattens some errors of its table loaders to text; the text is matched too.
		clear(key)
		return nil, fmt.Errorf("kv: open badger at %s: %w (a table failed its checksum): %w", dir, ErrIntegrity, err)
	case err != nil:
		clear(key)
		return nil, fmt.Errorf("kv: open badger at %s: %w", dir, err)
	}
	// Badger replays the logs of a process that was killed and shows their commits at
	// once; they were never synced, and the next durable commit must not depend on them
	// while they could still vanish. start syncs them and finds the log Badger writes to.
	if err := dur.start(); err != nil {
		db.Close()
		dur.closeCurrent()
		clear(key)
		return nil, fmt.Errorf("kv: open badger at %s: the write-ahead logs: %w", dir, err)
	}
	b := &Badger{db: db, dur: dur, log: log, key: key}
	b.startGC(opts.GCInterval)
	return b, nil
}

func loggerOrDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

func tuned(o badger.Options, log *slog.Logger) badger.Options {
	return o.
		WithLogger(badgerLogger{log: log}).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithNumCompactors(numCompactors).
		// Every table's blocks are checked against their checksums when the table is opened
		// (its index always is): a damaged file fails the open instead of handing out what
		// it decodes to. Values are authenticated too, by Sealed; this catches damage to
		// the LSM tree itself, such as keys. Not OnTableAndBlockRead: Badger v4.9 then
		// dereferences a nil block on the first bad one and takes the process down. It
		// does the same in this mode when a block fails to decode before its checksum is
		// reached, which a compressed block does for most changed bytes: so blocks are not
		// compressed (metadata is small, and encrypted tables do not compress anyway after
		// Badger's own compression, which only saw the keys). A changed byte then fails
		// the checksum, except in the 8 bytes that end each 4 KiB block.
		WithChecksumVerificationMode(options.OnTableRead).
		WithCompression(options.None).
		WithVerifyValueChecksum(true).
		// Badger's expvar counters are not served anywhere; dsh has its own metrics.
		WithMetricsEnabled(false)
}

// probeLock turns Badger's directory lock into ErrLocked. Badger flattens the lock error to
// text, so we try the same flock ourselves first and let go of it at once. If another open
// wins the race after the probe, Badger's own lock still refuses it, only less clearly.
func probeLock(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new store: Badger creates the directory
	}
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return ErrLocked
	}
	if err != nil {
		return fmt.Errorf("lock probe: %w", err)
	}
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}

// startGC runs value-log GC every interval until Close.
func (b *Badger) startGC(interval time.Duration) {
	if interval <= 0 {
		return
	}
	b.gcStop = make(chan struct{})
	b.gcDone = make(chan struct{})
	go func() {
		defer close(b.gcDone)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.gcStop:
				return
			case <-t.C:
				b.collectGarbage()
			}
		}
	}()
}

// collectGarbage rewrites value-log files while each pass still finds one worth rewriting,
// stopping early when Close is waiting.
func (b *Badger) collectGarbage() {
	for {
		select {
		case <-b.gcStop:
			return
		default:
		}
		err := b.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			continue
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return
		default:
			b.log.Warn("kv: value log GC failed", "err", err)
			return
		}
	}
}

// Close stops the GC, waits for running transactions and closes the database, which
// flushes memtables so that the next open does not replay the write-ahead log.
func (b *Badger) Close() error {
	if !b.gate.close() {
		return nil
	}
	if b.gcStop != nil {
		close(b.gcStop)
		<-b.gcDone
	}
	err := b.db.Close()
	b.dur.closeCurrent()
	clear(b.key)
	if err != nil {
		return fmt.Errorf("kv: close badger: %w", err)
	}
	return nil
}

// View runs fn in a read-only transaction; see Store.
func (b *Badger) View(ctx context.Context, fn func(Txn) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kv: view: %w", err)
	}
	if err := b.gate.enter(); err != nil {
		return err
	}
	defer b.gate.leave()
	txn := b.db.NewTransaction(false)
	defer txn.Discard()
	t := &badgerTxn{txn: txn}
	err := fn(t)
	t.g.done = true
	return err
}

// Update runs fn in a read-write transaction, retrying it on conflict, and returns once
// the commit and every earlier one are durable; see Store.
func (b *Badger) Update(ctx context.Context, fn func(Txn) error) error {
	if err := b.gate.enter(); err != nil {
		return err
	}
	defer b.gate.leave()
	if err := b.commit(ctx, fn); err != nil {
		return err
	}
	return b.sync()
}

// UpdateLazy is Update without waiting for the disk; see Store.
func (b *Badger) UpdateLazy(ctx context.Context, fn func(Txn) error) error {
	if err := b.gate.enter(); err != nil {
		return err
	}
	defer b.gate.leave()
	if err := b.commit(ctx, fn); err != nil {
		return err
	}
	// Badger may have started a new log for this commit: the old one is synced now.
	b.dur.afterCommit()
	return nil
}

// Sync makes every commit that returned before it durable; see Store.
func (b *Badger) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kv: sync: %w", err)
	}
	if err := b.gate.enter(); err != nil {
		return err
	}
	defer b.gate.leave()
	return b.sync()
}

// commit runs fn and commits it without a sync.
func (b *Badger) commit(ctx context.Context, fn func(Txn) error) error {
	return retryConflicts(ctx, func() (bool, error) { return b.updateOnce(fn) })
}

// sync makes every commit so far durable: the logs of earlier memtables are synced as
// they are rotated out (durable.go), so syncing the current one is enough. The round does
// not heed the caller's context: others may be waiting on it.
func (b *Badger) sync() error {
	err := b.dur.group(func() error {
		if err := b.dur.check(); err != nil {
			return err
		}
		ok, err := b.dur.syncCurrent()
		if err == nil && !ok {
			err = b.db.Sync()
		}
		if err != nil {
			return fmt.Errorf("sync the write-ahead log: %w", err)
		}
		// A sync of a complete log that failed (here or after a lazy commit) must not be
		// reported as success.
		return b.dur.check()
	})
	if err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	return nil
}

func (b *Badger) updateOnce(fn func(Txn) error) (conflict bool, err error) {
	txn := b.db.NewTransaction(true)
	defer txn.Discard()
	t := &badgerTxn{txn: txn, g: txnGuard{writable: true}}
	err = fn(t)
	t.g.done = true
	if err != nil {
		return false, err
	}
	err = txn.Commit()
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, badger.ErrConflict):
		return true, nil
	default:
		return false, fmt.Errorf("kv: commit: %w", err)
	}
}

type badgerTxn struct {
	txn *badger.Txn
	g   txnGuard
}

func (t *badgerTxn) Get(key []byte) ([]byte, error) {
	if err := t.g.checkRead(key); err != nil {
		return nil, err
	}
	item, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("kv: get: %w", err)
	}
	// Non-nil even when empty, as Txn promises; ValueCopy(nil) of an empty value is nil.
	v, err := item.ValueCopy(make([]byte, 0, item.ValueSize()))
	if err != nil {
		return nil, fmt.Errorf("kv: get: read value: %w", err)
	}
	return v, nil
}

func (t *badgerTxn) Set(key, value []byte) error {
	if err := t.g.checkWrite(key, value); err != nil {
		return err
	}
	// Badger keeps references to both slices until commit; the copies honour Txn's promise.
	if err := t.txn.Set(clone(key), clone(value)); err != nil {
		return mapWriteErr("set", err)
	}
	return nil
}

// setRaw is Set without kv's size limits, for Sealed, which checked them on the
// plaintext; Badger's own limits are set to take sealed values (see badgerBatchSize).
func (t *badgerTxn) setRaw(key, value []byte) error {
	if err := t.g.checkRawWrite(key); err != nil {
		return err
	}
	if err := t.txn.Set(clone(key), clone(value)); err != nil {
		return mapWriteErr("set", err)
	}
	return nil
}

func (t *badgerTxn) Delete(key []byte) error {
	if err := t.g.checkWrite(key, nil); err != nil {
		return err
	}
	if err := t.txn.Delete(clone(key)); err != nil {
		return mapWriteErr("delete", err)
	}
	return nil
}

// mapWriteErr keeps kv's sentinels for the limits that the guard should already have
// caught; Badger's limits are set above kv's, so these are a backstop.
func mapWriteErr(op string, err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("kv: %s: %w", op, ErrTooBig)
	}
	return fmt.Errorf("kv: %s: %w", op, err)
}

func (t *badgerTxn) Scan(prefix, start []byte, fn func(key, value []byte) (bool, error)) error {
	if err := t.g.checkScan(); err != nil {
		return err
	}
	opts := badger.DefaultIteratorOptions
	// Values are read one by one below; prefetching would read ahead of an early stop.
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := t.txn.NewIterator(opts)
	defer it.Close()
	// fn gets a copy in a reused buffer, not Badger's own slice: reading a value-log entry
	// holds a lock on its file, and fn may commit another transaction that needs that lock.
	var buf []byte
	for it.Seek(scanFrom(prefix, start)); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		var err error
		if buf, err = item.ValueCopy(buf[:0]); err != nil {
			return fmt.Errorf("kv: scan: read value: %w", err)
		}
		more, err := fn(item.Key(), buf)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// badgerLogger passes Badger's warnings and errors to slog and drops the rest. Some of
// Badger's messages print the key being read (%v or %x of a []byte); keys hold file names,
// which may be identifying and must not reach a plaintext log, so byte slices are redacted.
// Nothing in dsh depends on what Badger logs.
type badgerLogger struct {
	log *slog.Logger
}

func (l badgerLogger) Errorf(format string, args ...any) {
	l.log.Error("badger: " + redactf(format, args))
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn("badger: " + redactf(format, args))
}

func (badgerLogger) Infof(string, ...any) {}

func (badgerLogger) Debugf(string, ...any) {}

// redacted prints as its length only, whatever the verb.
type redacted int

func (r redacted) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "[%d bytes redacted]", int(r)) }

func redactf(format string, args []any) string {
	safe := make([]any, len(args))
	for i, a := range args {
		if b, ok := a.([]byte); ok {
			safe[i] = redacted(len(b))
		} else {
			safe[i] = a
		}
	}
	return strings.TrimRight(fmt.Sprintf(format, safe...), "\n")
}
