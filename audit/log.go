package audit

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"dsh/internal/diskio"
	"dsh/vault"
)

// Durability says when Append may return.
type Durability uint8

const (
	// Durable returns once the record is fsync'd: it survives a crash of the machine. It is
	// the zero value, so a caller that forgets to choose gets the safe one.
	Durable Durability = iota
	// Buffered returns once the record is written to the file (it survives a crash of the
	// daemon); it is fsync'd within Options.FlushInterval. For the hot path, such as every
	// open on the filesystem.
	Buffered
)

// DefaultFlushInterval bounds how long a Buffered record may wait for its fsync.
const DefaultFlushInterval = time.Second

// Options tune a Log. The zero value is ready to use.
type Options struct {
	// FlushInterval bounds how long a Buffered record stays written but not fsync'd;
	// zero or less means DefaultFlushInterval.
	FlushInterval time.Duration
	// Now gives record times; nil means time.Now. For tests.
	Now func() time.Time
	// SegmentSize is where the writer starts a new segment file; zero or less means
	// DefaultSegmentSize.
	SegmentSize int64
	// Track names an action whose latest record the log keeps in view (Tracked): found
	// when the log is opened, carried in the head file, and updated by every Append. The
	// store finds its latest epoch record this way without reading the whole log.
	Track string
}

// Errors of an open Log. Callers match them with errors.Is.
var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("audit log is closed")
	// ErrFailed is returned once an fsync of the log has failed, or a write whose partial
	// batch could not be cut back: the state of the file is unknown, so no further record
	// is written until the daemon reopens the log. A write that failed cleanly (a full
	// disk) fails only its own batch.
	ErrFailed = errors.New("audit log failed")
	// ErrInUse is returned by Open when another process holds the log.
	ErrInUse = errors.New("audit log is in use by another process")
)

// request is one Append waiting for the writer. Requests are pooled so that the hot path
// allocates nothing; the writer never touches one after signalling done.
type request struct {
	entry   Entry
	durable bool
	rec     Record
	err     error
	done    chan struct{}
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

// Appender is what a part that records its actions needs of the log; *Log is one. Tests
// give a recorder or a failing appender instead.
type Appender interface {
	Append(ctx context.Context, e Entry, d Durability) (Record, error)
}

var _ Appender = (*Log)(nil)

// Log is an open audit log with one writer goroutine. Its methods are safe for concurrent use.
type Log struct {
	dir      string
	key      vault.Key
	keyMu    sync.Mutex // guards key against Close while a Reader copies it
	aead     cipher.AEAD
	lock     *os.File // the folder, flock'd: one process writes the log
	f        *os.File // the current segment
	now      func() time.Time
	interval time.Duration
	segSize  int64
	track    string
	torn     int64

	// Callers hold mu only to queue a request; the writer holds it only to take the queue.
	mu      sync.Mutex
	queue   []*request
	closed  bool
	failed  error
	wake    chan struct{}
	stopped chan struct{}

	// Owned by the writer goroutine.
	spare      []*request
	durables   []*request
	ad         adBuf // a field, not a local: passed to the cipher it would escape each time
	buf        []byte
	nonces     []byte
	seq        uint64
	last       [32]byte
	lastSeg    uint64 // the segment of record seq
	lastOff    int64  // where the frame of record seq starts
	lastEnd    int64  // and ends
	segFirst   uint64 // the current segment: the seq of its first record
	end        int64  // of the current segment
	tracked    string
	dirty      bool
	dirtySince time.Time
	err        error
	closeErr   error
	writeAt    func([]byte, int64) (int, error) // tests swap these to make the disk fail
	sync       func() error

	// pub is what the writer has finished, for Stats and for readers of the open log.
	pubMu      sync.Mutex
	pub        Stats
	pubTracked string
}

// Stats describe how far an open log has got.
type Stats struct {
	// Seq is the last record written to the file (0 when the log is empty).
	Seq uint64
	// Hash is the hash of record Seq.
	Hash [32]byte
	// SyncedSeq is the last record known to be fsync'd.
	SyncedSeq uint64
	// Segment is the segment being written: the seq of its first record.
	Segment uint64
	// Synced is where record SyncedSeq lies, with its hash: a point the log is known to
	// have reached on disk, which a later open must find again (CheckPosition).
	Synced Position
	// Size is the length of the segment being written, in bytes, up to the end of the
	// last record written to it.
	Size int64
	// TornBytes is what Open cut away as a torn final frame (see Recovered).
	TornBytes int64
	// Err is why the log failed (wrapping ErrFailed), nil while it is healthy.
	Err error
}

// Position names one record of the log: its seq and hash, and where its frame lies
// (Segment is the seq of the first record of the file holding it, Offset the frame's byte
// offset in that file). The zero Position names the start of an empty log.
type Position struct {
	Seq     uint64
	Hash    [32]byte
	Segment uint64
	Offset  int64
}

// Open opens the audit log in dir, creating dir (0700) and the log (0600) if missing, and
// keeps a copy of key until Close. It checks what was written since the head file's point
// (the whole log when there is no usable head) and refuses a log that is broken there: a
// damaged log needs an operator, not a repair. The one exception is a torn final frame (a
// crash mid-write), which Open cuts away and reports through Recovered. It then leaves a
// new head at the end of what it checked, so that the next Open starts from there. Only
// one process may have the log open. Verify checks the whole log.
func Open(dir string, key *vault.Key, opts Options) (*Log, error) {
	if err := makeDir(dir); err != nil {
		return nil, err
	}
	lock, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open audit folder: %w", err)
	}
	l := &Log{dir: dir, key: *key, lock: lock, now: opts.Now, interval: opts.FlushInterval, segSize: opts.SegmentSize,
		track: opts.Track, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	if err := l.load(); err != nil {
		lock.Close()
		if l.f != nil {
			l.f.Close()
		}
		l.key.Wipe()
		return nil, fmt.Errorf("open audit log in %s: %w", dir, err)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.interval <= 0 {
		l.interval = DefaultFlushInterval
	}
	if l.segSize <= 0 {
		l.segSize = DefaultSegmentSize
	}
	l.writeAt = func(b []byte, off int64) (int, error) { return l.f.WriteAt(b, off) }
	l.sync = func() error { return l.f.Sync() }
	l.publish(true)
	go l.run()
	return l, nil
}

func makeDir(dir string) error {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create audit folder: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict audit folder: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		return diskio.SyncDir(filepath.Dir(dir))
	}
	return nil
}

// load locks the folder, checks the log and finds where the next record goes.
func (l *Log) load() error {
	if err := syscall.Flock(int(l.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return ErrInUse
		}
		return fmt.Errorf("lock: %w", err)
	}
	var err error
	if l.aead, err = newAEAD(l.key[:]); err != nil {
		return err
	}
	segs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		// A new log: its first segment, whose folder entry must outlive a crash as much
		// as its records.
		f, err := os.OpenFile(filepath.Join(l.dir, logName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		f.Close()
		if err := diskio.SyncDir(l.dir); err != nil {
			return err
		}
		segs = []segment{{first: 1, path: filepath.Join(l.dir, logName)}}
	}
	for _, sg := range segs {
		if err := restrict(sg.path); err != nil {
			return err
		}
	}
	visit := l.trackVisitor()
	h, hasHead, headErr := readHead(l.dir, l.aead)
	var out walkOut
	walked := true
	switch {
	case headErr == nil && hasHead && h.seg != 0 && h.seq > 0:
		l.tracked = h.tracked
		out, err = resume(l.aead, segs, h, visit)
		walked = out.n != h.seq || out.torn > 0
	default:
		// No head, an old one, or a damaged one (verifyAll tells a wrong key from an
		// altered head): the whole log.
		_, out, err = verifyAll(l.dir, l.aead, nil, visit)
	}
	if err != nil {
		return err
	}
	lastSeg := segs[len(segs)-1]
	if l.f, err = os.OpenFile(lastSeg.path, os.O_RDWR, 0); err != nil {
		return err
	}
	if out.torn > 0 {
		if err := l.keepTorn(lastSeg, out.goodEnd, out.torn); err != nil {
			return fmt.Errorf("keep torn final frame: %w", err)
		}
		if err := l.f.Truncate(out.goodEnd); err != nil {
			return fmt.Errorf("cut torn final frame: %w", err)
		}
		l.torn = out.torn
	}
	l.seq, l.last, l.lastSeg, l.lastOff, l.lastEnd = out.n, out.last, out.lastSeg, out.lastOff, out.lastEnd
	l.segFirst, l.end = lastSeg.first, out.goodEnd
	if !walked {
		return nil
	}
	// What was checked becomes the new head: on disk first (the records may be in the
	// page cache of a process that crashed), then named by the head.
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log: %w", err)
	}
	return l.writeHead()
}

// keepTorn copies the torn final frame that Open is about to cut away into a file of its
// own beside the log ("torn-<segment>-<offset>"), still encrypted: a crash leaves such a
// tail, but so could damage that only looks like one, and nothing Open removes should be
// lost to an operator who wants to look. It is at most one frame long.
func (l *Log) keepTorn(sg segment, off, n int64) error {
	b := make([]byte, n)
	if _, err := l.f.ReadAt(b, off); err != nil {
		return err
	}
	name := fmt.Sprintf("torn-%d-%d", sg.first, off)
	return diskio.WriteFileAtomic(filepath.Join(l.dir, name), b, 0o600)
}

// restrict gives a segment file mode 0600 if it has another.
func restrict(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o600 {
		return os.Chmod(path, 0o600)
	}
	return nil
}

// trackVisitor keeps l.tracked up to date during a walk of the log, nil without Track.
func (l *Log) trackVisitor() visitFunc {
	if l.track == "" {
		return nil
	}
	return func(plain []byte, spans *[numStrings][2]int, _ recordHeader) error {
		if string(plain[spans[strAction][0]:spans[strAction][1]]) == l.track {
			if obj := plain[spans[2][0]:spans[2][1]]; len(obj) <= maxTracked {
				l.tracked = string(obj)
			}
		}
		return nil
	}
}

// Tracked returns the object of the latest record of Options.Track ("" when there is
// none, or no Track).
func (l *Log) Tracked() string {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	return l.pubTracked
}

// writeHead seals the head at the last record written. The writer goroutine (or Open)
// calls it, after the records it names are fsync'd.
func (l *Log) writeHead() error {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	h := head{seq: l.seq, hash: l.last, seg: l.lastSeg, off: l.lastOff, end: l.lastEnd, tracked: l.tracked}
	if l.seq == 0 {
		h.seg, h.off, h.end = 0, 0, 0
	}
	return writeHead(l.dir, l.aead, h, nonce)
}

// Recovered reports whether Open cut away a torn final frame left by a crash. The caller
// records that in the log (action "audit.recovered"), so the repair itself is accounted for.
func (l *Log) Recovered() bool { return l.torn > 0 }

// Stats returns how far the log has got.
func (l *Log) Stats() Stats {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	return l.pub
}

// Append writes one record and returns it as stored. It returns when the record is written
// (Buffered) or fsync'd (Durable); an error means the record may not be in the log, and the
// caller must refuse the action it describes. Appends from many goroutines are gathered into
// one write (and at most one fsync) by the writer goroutine. If ctx ends while waiting,
// Append returns its error, but the record may still be written: it then records an attempt.
func (l *Log) Append(ctx context.Context, e Entry, d Durability) (Record, error) {
	addVia(ctx, &e)
	if err := e.validate(); err != nil {
		return Record{}, fmt.Errorf("audit %s: %w", e.Action, err)
	}
	if err := ctx.Err(); err != nil {
		return Record{}, fmt.Errorf("audit %s: %w", e.Action, err)
	}
	req := requestPool.Get().(*request)
	req.entry, req.durable = e, d != Buffered
	l.mu.Lock()
	if l.closed || l.failed != nil {
		err := l.failed
		if l.closed {
			err = ErrClosed
		}
		l.mu.Unlock()
		req.entry = Entry{}
		requestPool.Put(req)
		return Record{}, fmt.Errorf("audit %s: %w", e.Action, err)
	}
	l.queue = append(l.queue, req)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		// The writer still owns req, so it is left to the garbage collector, not the pool.
		return Record{}, fmt.Errorf("audit %s: %w (the record may still be written)", e.Action, ctx.Err())
	}
	rec, err := req.rec, req.err
	*req = request{done: req.done}
	requestPool.Put(req)
	return rec, err
}

// Close writes what is queued, fsyncs, seals the head file (the evidence against a cut
// tail) and wipes the key. Append then fails with ErrClosed; closing again does nothing.
// The error is the one that failed the log, if it failed, in which case no head is written.
func (l *Log) Close() error {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	l.mu.Unlock()
	if already {
		<-l.stopped
		return nil
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.stopped
	l.keyMu.Lock()
	l.key.Wipe()
	l.keyMu.Unlock()
	l.lock.Close()
	// The cipher keeps its own copy of the key, which its package gives no way to wipe;
	// dropping it is the best this package can do. Readers made before keep their copies
	// until they are closed.
	return l.closeErr
}

// run is the writer goroutine: it takes every queued request at once (group commit), so
// callers pay for one write(2) and at most one fsync between them.
func (l *Log) run() {
	defer close(l.stopped)
	timer := time.NewTimer(l.interval)
	timer.Stop()
	armed := false
	for {
		tick := false
		select {
		case <-l.wake:
		case <-timer.C:
			armed, tick = false, true
		}
		for {
			batch, closing := l.take()
			if len(batch) == 0 {
				if closing {
					timer.Stop()
					l.finish()
					return
				}
				break
			}
			l.commit(batch, tick)
			clear(batch)
			tick = false
		}
		if tick && l.dirty {
			l.flush()
		}
		if l.dirty && !armed {
			timer.Reset(l.interval)
			armed = true
		}
	}
}

// take swaps the queue for the spare slice, so that neither side allocates in steady state.
func (l *Log) take() ([]*request, bool) {
	l.mu.Lock()
	batch := l.queue
	l.queue = l.spare[:0]
	closing := l.closed
	l.mu.Unlock()
	l.spare = batch
	return batch, closing
}

// commit writes a batch of records in one write, then fsyncs if a caller asked for it or
// the flush interval has run out.
func (l *Log) commit(batch []*request, flushDue bool) {
	if l.err != nil {
		replyAll(batch, l.err)
		return
	}
	if l.end >= l.segSize {
		if err := l.rotate(); err != nil {
			replyAll(batch, err)
			return
		}
	}
	k := len(batch) * nonceSize
	if cap(l.nonces) < k {
		l.nonces = make([]byte, k)
	}
	nonces := l.nonces[:k]
	if _, err := rand.Read(nonces); err != nil {
		l.fail(fmt.Errorf("nonces: %w", err))
		replyAll(batch, l.err)
		return
	}
	// The Durable callers are set apart now: once a Buffered caller is woken, its request
	// belongs to it again (and maybe to another Append), so the writer must not look back.
	durables := l.durables[:0]
	seq, prev, lastOff, tracked := l.seq, l.last, l.lastOff, l.tracked
	l.buf = l.buf[:0]
	for i, req := range batch {
		seq++
		req.rec = Record{Seq: seq, Time: l.stamp(), Entry: req.entry, Prev: prev}
		lastOff = l.end + int64(len(l.buf))
		prev = l.seal(&req.rec, nonces[i*nonceSize:(i+1)*nonceSize])
		if l.track != "" && req.entry.Action == l.track && len(req.entry.Object) <= maxTracked {
			tracked = req.entry.Object
		}
		if req.durable {
			durables = append(durables, req)
		}
	}
	defer func() { l.durables = durables[:0]; clear(durables) }()
	if _, err := l.writeAt(l.buf, l.end); err != nil {
		// Take back whatever part of the batch landed, so that no record stays in the log
		// whose caller was told it failed. When that works the file is exactly as before
		// the batch, and the log goes on: a full disk fails the appends while it is full
		// and no longer (the next batch reuses the seqs). If even that fails, the state of
		// the file is unknown, and the log fails for good; Open will find a torn tail.
		if terr := l.f.Truncate(l.end); terr != nil {
			l.fail(fmt.Errorf("write: %w (and cutting the failed batch back: %v)", err, terr))
			replyAll(batch, l.err)
			return
		}
		replyAll(batch, fmt.Errorf("audit log: write: %w", err))
		return
	}
	l.end += int64(len(l.buf))
	l.seq, l.last, l.lastSeg, l.lastOff, l.lastEnd, l.tracked = seq, prev, l.segFirst, lastOff, l.end, tracked
	if !l.dirty {
		l.dirty, l.dirtySince = true, time.Now()
	}
	l.publish(false)
	for _, req := range batch {
		if !req.durable {
			wake(req, nil)
		}
	}
	if len(durables) > 0 || flushDue || time.Since(l.dirtySince) >= l.interval {
		l.flush()
	}
	replyAll(durables, l.err)
}

// seal appends rec's frame to l.buf, encrypting in place, and returns rec's hash.
func (l *Log) seal(rec *Record, nonce []byte) [32]byte {
	need := lenSize + nonceSize + rec.size() + tagSize
	if cap(l.buf)-len(l.buf) < need {
		grown := make([]byte, len(l.buf), 2*cap(l.buf)+need)
		copy(grown, l.buf)
		l.buf = grown
	}
	start := len(l.buf)
	l.buf = append(l.buf, 0, 0, 0, 0)
	l.buf = append(l.buf, nonce...)
	p := len(l.buf)
	l.buf = rec.appendCanonical(l.buf)
	plain := l.buf[p:]
	h := sha256.Sum256(plain)
	ct := l.aead.Seal(plain[:0], nonce, plain, l.ad.forSeq(rec.Seq))
	l.buf = l.buf[:p+len(ct)]
	binary.BigEndian.PutUint32(l.buf[start:], uint32(len(l.buf)-start-lenSize))
	return h
}

// stamp returns the time for a record as it will read back: UTC, nanoseconds, no monotonic
// reading, so that the Record Append returns hashes the same as the stored one.
func (l *Log) stamp() time.Time {
	return time.Unix(0, l.now().UnixNano()).UTC()
}

// replyAll wakes every caller in batch with err: nothing of the batch is to be trusted.
func replyAll(batch []*request, err error) {
	for _, req := range batch {
		wake(req, err)
	}
}

func wake(req *request, err error) {
	if err != nil {
		req.rec = Record{}
	}
	req.err = err
	req.done <- struct{}{}
}

func (l *Log) flush() {
	if l.err != nil {
		return
	}
	if err := l.sync(); err != nil {
		l.fail(fmt.Errorf("fsync: %w", err))
		return
	}
	l.dirty = false
	l.publish(true)
}

// fail puts the log in its failed state: a write or fsync that failed leaves the file in an
// unknown state, and writing on could leave a gap in the chain.
func (l *Log) fail(err error) {
	l.err = fmt.Errorf("%w: %w", ErrFailed, err)
	l.mu.Lock()
	l.failed = l.err
	l.mu.Unlock()
	l.pubMu.Lock()
	l.pub.Err = l.err
	l.pubMu.Unlock()
}

func (l *Log) publish(synced bool) {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	l.pub.Seq, l.pub.Hash, l.pub.Size, l.pub.Segment, l.pub.TornBytes = l.seq, l.last, l.end, l.segFirst, l.torn
	l.pubTracked = l.tracked
	if synced {
		l.pub.SyncedSeq = l.seq
		l.pub.Synced = Position{Seq: l.seq, Hash: l.last, Segment: l.lastSeg, Offset: l.lastOff}
		if l.seq == 0 {
			l.pub.Synced = Position{}
		}
	}
}

// rotate starts a new segment after the current one: fsync'd whole, then the new file
// made and its name made durable, then a head at the last record, so that the next Open
// reads at most about one segment. A failure leaves the log writing the current segment
// (fails only this batch), unless the fsync failed, which fails the log.
func (l *Log) rotate() error {
	if l.dirty {
		l.flush()
		if l.err != nil {
			return l.err
		}
	}
	first := l.seq + 1
	f, err := os.OpenFile(filepath.Join(l.dir, segName(first)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: new segment: %w", err)
	}
	if err := diskio.SyncDir(l.dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("audit log: new segment: %w", err)
	}
	old := l.f
	l.f, l.segFirst, l.end = f, first, 0
	old.Close()
	l.publish(true)
	// The head only saves a later Open some reading; the log is sound without it.
	_ = l.writeHead()
	return nil
}

// finish runs once the queue is empty after Close: fsync, then the head, so that the head
// never claims a record the disk might not have.
func (l *Log) finish() {
	defer func() {
		if err := l.f.Close(); err != nil && l.closeErr == nil {
			l.closeErr = fmt.Errorf("close audit log: %w", err)
		}
	}()
	if l.err == nil && l.dirty {
		l.flush()
	}
	if l.err != nil {
		l.closeErr = l.err
		return
	}
	l.closeErr = l.writeHead()
}
