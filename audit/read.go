package audit

import (
	"bytes"
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"dsh/vault"
)

// Reader reads a log without holding anything of the Log that writes it, so that a long
// read (an operator paging through a year of records) never holds up an Append or a Close:
// it has its own copy of the key, wiped by Close, and reads no further than where the
// writer had got when the Reader was made.
type Reader struct {
	dir  string
	key  vault.Key
	aead cipher.AEAD
	// live says the Reader was made from an open Log: it stops at segment segFirst, size
	// bytes in, after record seq with hash hash.
	live     bool
	seq      uint64
	hash     [32]byte
	segFirst uint64
	size     int64
	torn     int64 // what the Log's Open cut away as a torn final frame
}

// NewReader returns a Reader of the log in dir as it is on disk, to its end (a frame being
// written there is a torn tail). The key is copied.
func NewReader(dir string, key *vault.Key) (*Reader, error) {
	r := &Reader{dir: dir, key: *key}
	var err error
	if r.aead, err = newAEAD(r.key[:]); err != nil {
		r.key.Wipe()
		return nil, err
	}
	return r, nil
}

// NewReader returns a Reader of this log up to the last record written so far. It fails
// with ErrClosed after Close.
func (l *Log) NewReader() (*Reader, error) {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	l.keyMu.Lock()
	defer l.keyMu.Unlock()
	if closed || l.key.IsZero() {
		return nil, ErrClosed
	}
	r, err := NewReader(l.dir, &l.key)
	if err != nil {
		return nil, err
	}
	st := l.Stats()
	r.live, r.seq, r.hash, r.segFirst, r.size, r.torn = true, st.Seq, st.Hash, st.Segment, st.Size, st.TornBytes
	return r, nil
}

// Close wipes the Reader's key. The cipher keeps its own copy, which its package gives no
// way to wipe; dropping it is the best this package can do.
func (r *Reader) Close() {
	r.key.Wipe()
	r.aead = nil
}

// segments lists the segments the Reader reads.
func (r *Reader) segments() ([]segment, error) {
	if r.aead == nil {
		return nil, ErrClosed
	}
	segs, err := listSegments(r.dir)
	if err != nil {
		return nil, err
	}
	if r.live {
		// Segments the writer started since the Reader was made are not read.
		for len(segs) > 0 && segs[len(segs)-1].first > r.segFirst {
			segs = segs[:len(segs)-1]
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("%s: %w", r.dir, errNoLog)
	}
	return segs, nil
}

// Verify walks the whole chain, as the package's Verify does, until ctx ends. A Reader of
// an open Log also checks that the files still hold exactly what that Log wrote, up to
// where it had got.
func (r *Reader) Verify(ctx context.Context) (VerifyResult, error) {
	n := 0
	return r.verify(func([]byte, *[numStrings][2]int, recordHeader) error {
		if n++; n%4096 == 0 {
			return ctx.Err()
		}
		return nil
	})
}

func (r *Reader) verify(visit visitFunc) (VerifyResult, error) {
	if r.aead == nil {
		return VerifyResult{}, ErrClosed
	}
	if !r.live {
		res, _, err := verifyAll(r.dir, r.aead, nil, visit)
		return res, err
	}
	res, out, err := verifyAll(r.dir, r.aead, &stopAt{seg: r.segFirst, end: r.size}, visit)
	if err != nil {
		return res, err
	}
	if out.n < r.seq || out.torn > 0 {
		return res, &ChainError{Seq: out.n + 1, Offset: out.goodEnd, File: segName(r.segFirst), Reason: ReasonTruncated,
			Detail: fmt.Sprintf("the log ends after record %d, but this daemon has written %d", out.n, r.seq)}
	}
	if out.last != r.hash {
		return res, &ChainError{Seq: out.n, Offset: out.lastOff, File: segName(out.lastSeg), Reason: ReasonChain,
			Detail: "the last record is not the one this daemon wrote"}
	}
	if r.torn > 0 {
		note := fmt.Sprintf("a torn final frame (%d bytes) left by a crash was cut away when the log was opened", r.torn)
		if res.Warning != "" {
			note = res.Warning + "; " + note
		}
		res.Warning = note
	}
	return res, nil
}

// Query selects the records Scan delivers; the zero Query selects every record.
type Query struct {
	// Since and Until bound the records' times: at or after Since, before Until (a zero
	// time is no bound).
	Since, Until time.Time
	// User, when set, is the user ID of the records wanted.
	User string
	// Action, when set, is the action of the records wanted, or, ending in '*', a prefix
	// of it ("fs.*").
	Action string
	// Limit, when positive, is the most records delivered.
	Limit int
}

// scanSlack is how far out of order record times may be, across segment boundaries, for
// Scan still to find every record in its time range: the writer stamps records with the
// wall clock, which an adjustment can step back.
const scanSlack = time.Hour

// errStop ends a Scan that delivered its Limit.
var errStop = errors.New("audit: scan limit reached")

// Scan calls fn with every record q selects, in order, until fn returns an error (which
// Scan returns) or ctx ends. It holds one record in memory at a time. Whole segments that
// lie outside q's time range, by the time of the first record of each segment and the
// next, are not read, so that a question about last week costs a week of records, not a
// year; every segment it reads is checked as it goes (every frame opens at its place, and
// each record holds the hash of the one before, from the first record read). The whole
// chain is Verify's job.
func (r *Reader) Scan(ctx context.Context, q Query, fn func(Record) error) error {
	segs, err := r.segments()
	if err != nil {
		return err
	}
	from, err := r.firstSegment(segs, q.Since)
	if err != nil {
		return err
	}
	to := len(segs)
	if !q.Until.IsZero() {
		for k := from + 1; k < len(segs); k++ {
			t, err := r.firstTime(segs[k])
			if err != nil {
				return err
			}
			if t > q.Until.Add(scanSlack).UnixNano() {
				to = k
				break
			}
		}
	}
	sel := newSelector(q)
	n := 0
	visit := func(plain []byte, spans *[numStrings][2]int, hdr recordHeader) error {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if !sel.match(plain, spans, hdr) {
			return nil
		}
		n++
		if err := fn(recordFrom(plain, hdr, spans)); err != nil {
			return err
		}
		if q.Limit > 0 && n >= q.Limit {
			return errStop
		}
		return nil
	}
	c := chainWalk{aead: r.aead, segs: segs[:to], keyGood: true}
	if r.live {
		c.limitSeg, c.limit = r.segFirst, r.size
	}
	base := walkOut{n: segs[from].first - 1}
	_, err = c.run(from, 0, base, from > 0, visit)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// firstSegment finds the segment a scan from since must start at: the last whose first
// record is earlier than since by more than the slack (binary search, one frame per probe).
func (r *Reader) firstSegment(segs []segment, since time.Time) (int, error) {
	if since.IsZero() {
		return 0, nil
	}
	bound := since.Add(-scanSlack).UnixNano()
	lo, hi := 0, len(segs)-1 // the answer is in [lo, hi]
	for lo < hi {
		mid := (lo + hi + 1) / 2
		t, err := r.firstTime(segs[mid])
		if err != nil {
			return 0, err
		}
		if t < bound {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

// firstTime returns the time of the first record of a segment, after checking that its
// frame opens at its place. An empty segment (just started) counts as the present.
func (r *Reader) firstTime(sg segment) (int64, error) {
	f, err := os.Open(sg.path)
	if err != nil {
		return 0, fmt.Errorf("open audit segment: %w", err)
	}
	defer f.Close()
	end, err := fileSize(f)
	if err != nil {
		return 0, err
	}
	if r.live && sg.first == r.segFirst {
		end = min(end, r.size)
	}
	if end == 0 {
		return time.Now().UnixNano(), nil
	}
	w := walker{aead: r.aead, src: f, end: end}
	body, ok := w.frameAt(0)
	if !ok {
		return 0, &ChainError{Seq: sg.first, File: segName(sg.first), Reason: ReasonFrame, Detail: "the segment does not begin with a whole frame"}
	}
	plain, err := r.aead.Open(nil, body[:nonceSize], body[nonceSize:], w.ad.forSeq(sg.first))
	if err != nil {
		return 0, &ChainError{Seq: sg.first, File: segName(sg.first), Reason: ReasonDecrypt, Detail: "the first frame of the segment does not open as the record its name says"}
	}
	defer clear(plain)
	var spans [numStrings][2]int
	hdr, err := scanRecord(plain, &spans)
	if err != nil {
		return 0, &ChainError{Seq: sg.first, File: segName(sg.first), Reason: ReasonEncoding, Detail: err.Error()}
	}
	return hdr.nanos, nil
}

// selector is a Query prepared for matching canonical bytes without allocating.
type selector struct {
	since, until int64
	user         []byte
	action       []byte
	prefix       bool
}

func newSelector(q Query) selector {
	s := selector{since: -1 << 63, until: 1<<63 - 1}
	if !q.Since.IsZero() {
		s.since = q.Since.UnixNano()
	}
	if !q.Until.IsZero() {
		s.until = q.Until.UnixNano()
	}
	if q.User != "" {
		s.user = []byte(q.User)
	}
	if q.Action != "" {
		a, prefix := strings.CutSuffix(q.Action, "*")
		s.action, s.prefix = []byte(a), prefix
	}
	return s
}

// Indexes of the strings in a record's canonical encoding.
const (
	strUser = iota
	strAction
)

func (s *selector) match(plain []byte, spans *[numStrings][2]int, hdr recordHeader) bool {
	if hdr.nanos < s.since || hdr.nanos >= s.until {
		return false
	}
	if s.user != nil && !bytes.Equal(plain[spans[strUser][0]:spans[strUser][1]], s.user) {
		return false
	}
	if s.action != nil {
		a := plain[spans[strAction][0]:spans[strAction][1]]
		if s.prefix {
			return bytes.HasPrefix(a, s.action)
		}
		return bytes.Equal(a, s.action)
	}
	return true
}
