package audit

import (
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"dsh/vault"
)

// VerifyResult is what a walk of the chain found. On a broken chain, Records counts the good
// records before the first bad one, and the error (a *ChainError) names that one.
type VerifyResult struct {
	// Records is the number of good records, 1..Records.
	Records uint64
	// LastHash is the hash of record Records (zeros for an empty log).
	LastHash [32]byte
	// Segments is the number of segment files walked.
	Segments int
	// TornBytes is the size of a torn final frame after the good records: left by a crash,
	// or being written by a running daemon at the moment of reading.
	TornBytes int64
	// Warning explains TornBytes, or says the log was never closed cleanly so that a cut
	// tail cannot be detected; empty when there is nothing to say.
	Warning string
}

// Verify walks the whole audit log in dir, every segment: every frame opens with key at its
// place, seqs run 1..N across the segments, each record holds the hash of the one before,
// and the log reaches at least as far as the head file says. It only reads, so it may run
// while a daemon appends; a partly written final frame is then a warning, not a failure.
func Verify(dir string, key *vault.Key) (VerifyResult, error) {
	aead, err := newAEAD(key[:])
	if err != nil {
		return VerifyResult{}, err
	}
	res, _, err := verifyAll(dir, aead, nil, nil)
	return res, err
}

// Read calls fn with each record whose time is at or after since (all records for the zero
// time), in order, checking the whole chain as it goes. It returns fn's error if fn returns
// one, which is how a caller stops early; records before a broken one have been delivered
// when Read returns the *ChainError. Scan reads a long log faster.
func Read(dir string, key *vault.Key, since time.Time, fn func(Record) error) error {
	aead, err := newAEAD(key[:])
	if err != nil {
		return err
	}
	_, _, err = verifyAll(dir, aead, nil, recordVisitor(since, fn))
	return err
}

// recordVisitor turns canonical bytes into Records for a caller, skipping those before since.
func recordVisitor(since time.Time, fn func(Record) error) visitFunc {
	sinceNS := int64(-1 << 63)
	if !since.IsZero() {
		sinceNS = since.UnixNano()
	}
	return func(plain []byte, spans *[numStrings][2]int, hdr recordHeader) error {
		if hdr.nanos < sinceNS {
			return nil
		}
		return fn(recordFrom(plain, hdr, spans))
	}
}

// chainWalk walks the segments of a log in order, from a starting point to the end.
type chainWalk struct {
	aead cipher.AEAD
	segs []segment
	// limitSeg and limit, when limitSeg is not 0, say where segment limitSeg ends: a live
	// log's writer has written that far, and what lies beyond may be half written.
	limitSeg uint64
	limit    int64
	keyGood  bool
	markSeq  uint64
	w        walker
}

// run walks from segment i at offset off, after the record base names; noPrev skips the
// previous-record check of the first record read. A segment must begin with the record
// after the last one of the segment before it, and only the last may end in a torn frame.
func (c *chainWalk) run(i int, off int64, base walkOut, noPrev bool, visit visitFunc) (walkOut, error) {
	out := base
	out.goodEnd = off
	for ; i < len(c.segs); i++ {
		sg := c.segs[i]
		name := filepath.Base(sg.path)
		if off == 0 && sg.first != out.n+1 {
			ce := &ChainError{Seq: out.n + 1, Offset: 0, File: name, Reason: ReasonGap,
				Detail: fmt.Sprintf("the segment begins at record %d, so records %d..%d are missing", sg.first, out.n+1, sg.first-1)}
			if sg.first <= out.n {
				ce.Reason = ReasonOrder
				ce.Detail = fmt.Sprintf("the segment begins at record %d, which an earlier segment already holds", sg.first)
			}
			return out, ce
		}
		f, err := os.Open(sg.path)
		if err != nil {
			return out, fmt.Errorf("open audit segment: %w", err)
		}
		end, err := fileSize(f)
		if err == nil && c.limitSeg != 0 && sg.first == c.limitSeg {
			end = min(end, c.limit)
		}
		if err != nil {
			f.Close()
			return out, err
		}
		c.w = walker{aead: c.aead, src: f, end: end, start: off, base: out, seg: sg.first,
			keyGood: c.keyGood, markSeq: c.markSeq, noPrev: noPrev, body: c.w.body, plain: c.w.plain}
		res, err := c.w.run(visit)
		f.Close()
		var ce *ChainError
		if errors.As(err, &ce) {
			ce.File = name
		}
		if err != nil {
			return res, err
		}
		if res.torn > 0 && i < len(c.segs)-1 {
			return res, &ChainError{Seq: res.n + 1, Offset: res.goodEnd, File: name, Reason: ReasonFrame,
				Detail: fmt.Sprintf("the segment ends in a partial frame (%s), but later segments follow", res.tornWhy)}
		}
		out, off, noPrev = res, 0, false
	}
	return out, nil
}

func fileSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat audit segment: %w", err)
	}
	return fi.Size(), nil
}

// stopAt bounds a walk of a live log: segment seg ends at end, and no later one is read.
type stopAt struct {
	seg uint64
	end int64
}

// verifyAll walks every segment of the log in dir from record 1 and holds the result
// against the head file.
func verifyAll(dir string, aead cipher.AEAD, stop *stopAt, visit visitFunc) (VerifyResult, walkOut, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return VerifyResult{}, walkOut{}, err
	}
	if stop != nil {
		for len(segs) > 0 && segs[len(segs)-1].first > stop.seg {
			segs = segs[:len(segs)-1]
		}
	}
	if len(segs) == 0 {
		return VerifyResult{}, walkOut{}, fmt.Errorf("%s: %w", dir, errNoLog)
	}
	h, hasHead, headErr := readHead(dir, aead)
	if headErr != nil && !errors.Is(headErr, ErrBadHead) {
		return VerifyResult{}, walkOut{}, headErr
	}
	c := chainWalk{aead: aead, segs: segs, keyGood: hasHead, markSeq: h.seq}
	if stop != nil {
		c.limitSeg, c.limit = stop.seg, stop.end
	}
	out, err := c.run(0, 0, walkOut{}, false, visit)
	res := VerifyResult{Records: out.n, LastHash: out.last, TornBytes: out.torn, Segments: len(segs)}
	if err != nil {
		var ce *ChainError
		if headErr != nil && errors.As(err, &ce) && ce.Seq == 1 && ce.Reason == ReasonDecrypt && !errors.Is(err, ErrWrongKey) {
			err = fmt.Errorf("%w: %w", ErrWrongKey, err)
		}
		return res, out, err
	}
	if headErr != nil {
		if out.n == 0 {
			return res, out, fmt.Errorf("%w (%w)", ErrWrongKey, headErr)
		}
		// The records open, so the key is right and the head itself was altered.
		return res, out, headErr
	}
	// A live log's head may already name records written after the walk's bound; the
	// writer's own account (Reader.verify) stands in for it then.
	if hasHead && (stop == nil || h.seq <= out.n) {
		if err := holdAgainstHead(h, out); err != nil {
			return res, out, err
		}
	}
	switch {
	case out.torn > 0:
		res.Warning = fmt.Sprintf("torn final frame at byte %d of %s (%d bytes, %s): left by a crash, or being written now",
			out.goodEnd, filepath.Base(segs[len(segs)-1].path), out.torn, out.tornWhy)
	case !hasHead && out.n > 0:
		res.Warning = "no head file: the log was never closed cleanly, so a cut tail cannot be detected"
	}
	return res, out, nil
}

// holdAgainstHead checks that a full walk reached the head's record, and found it there.
func holdAgainstHead(h head, out walkOut) error {
	if out.n < h.seq {
		return &ChainError{Seq: out.n + 1, Offset: out.goodEnd, File: segName(out.lastSegOr(1)), Reason: ReasonTruncated,
			Detail: fmt.Sprintf("the log ends after record %d, but the head file says it reached record %d", out.n, h.seq)}
	}
	if h.seq > 0 && out.mark != h.hash {
		return &ChainError{Seq: h.seq, Offset: out.markOff, File: segName(out.markSeg), Reason: ReasonChain,
			Detail: "it is not the record sealed in the head file"}
	}
	if h.seq > 0 && h.seg != 0 && (out.markSeg != h.seg || out.markOff != h.off) {
		return &ChainError{Seq: h.seq, Offset: out.markOff, File: segName(out.markSeg), Reason: ReasonChain,
			Detail: fmt.Sprintf("it lies elsewhere than the head file says (byte %d of %s)", h.off, segName(h.seg))}
	}
	return nil
}

func (o walkOut) lastSegOr(def uint64) uint64 {
	if o.lastSeg == 0 {
		return def
	}
	return o.lastSeg
}

// resume checks the record the head names, where it names it, and walks the log from just
// after it to the end: what Open verifies of a log whose head is a version-2 one. Segments
// before the head's are not read (Verify reads them).
func resume(aead cipher.AEAD, segs []segment, h head, visit visitFunc) (walkOut, error) {
	i, ok := findSegment(segs, h.seg)
	if !ok {
		return walkOut{}, &ChainError{Seq: h.seq, Offset: h.off, File: segName(h.seg), Reason: ReasonTruncated,
			Detail: "the segment holding the record the head file names is missing"}
	}
	if err := checkFrameAt(aead, segs[i].path, -1, h.seq, h.off, h.end, h.hash); err != nil {
		return walkOut{}, err
	}
	base := walkOut{n: h.seq, last: h.hash, lastSeg: h.seg, lastOff: h.off, lastEnd: h.end}
	c := chainWalk{aead: aead, segs: segs, keyGood: true}
	return c.run(i, h.end, base, false, visit)
}

// checkFrameAt checks that the frame at off of the segment file at path (of which end
// bytes count, or all when end < 0) is record seq with the given hash; wantEnd, when > 0,
// is where the frame must end.
func checkFrameAt(aead cipher.AEAD, path string, end int64, seq uint64, off, wantEnd int64, hash [32]byte) error {
	name := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open audit segment: %w", err)
	}
	defer f.Close()
	if end < 0 {
		if end, err = fileSize(f); err != nil {
			return err
		}
	}
	w := walker{aead: aead, src: f, end: end}
	body, ok := w.frameAt(off)
	if !ok {
		return &ChainError{Seq: seq, Offset: off, File: name, Reason: ReasonTruncated,
			Detail: fmt.Sprintf("the log was known to hold record %d there, and holds no whole frame", seq)}
	}
	if wantEnd > 0 && off+lenSize+int64(len(body)) != wantEnd {
		return &ChainError{Seq: seq, Offset: off, File: name, Reason: ReasonFrame, Detail: "the frame is not the length it was known to have"}
	}
	plain, err := aead.Open(nil, body[:nonceSize], body[nonceSize:], w.ad.forSeq(seq))
	if err != nil {
		return &ChainError{Seq: seq, Offset: off, File: name, Reason: ReasonDecrypt, Detail: "the frame where the record was known to lie does not open as it"}
	}
	defer clear(plain)
	if sha256.Sum256(plain) != hash {
		return &ChainError{Seq: seq, Offset: off, File: name, Reason: ReasonChain, Detail: "it is not the record the log was known to hold"}
	}
	return nil
}

// Verify checks the chain of the open log up to the last record written so far, while
// appends go on, and also that the files still hold exactly what this Log wrote: a log cut
// or rewritten under a running daemon is reported. It holds no lock that an Append or a
// Close waits for: it reads with a Reader.
func (l *Log) Verify() (VerifyResult, error) {
	r, err := l.NewReader()
	if err != nil {
		return VerifyResult{}, err
	}
	defer r.Close()
	return r.Verify(context.Background())
}

// Read is the package's Read for the open log, up to the last record written so far.
func (l *Log) Read(since time.Time, fn func(Record) error) error {
	r, err := l.NewReader()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = r.verify(recordVisitor(since, fn))
	return err
}

// CheckPosition checks that the log holds the record pos names, where pos says, with pos's
// hash. pos is a point the log was known to have reached on disk (Stats().Synced, kept
// elsewhere); a log that ends before it had its tail cut, and one that holds another record
// there was rewritten or replaced. Both are a *ChainError. The zero Position always passes.
func (l *Log) CheckPosition(pos Position) error {
	if pos.Seq == 0 {
		return nil
	}
	r, err := l.NewReader()
	if err != nil {
		return err
	}
	defer r.Close()
	if pos.Seq > r.seq {
		return &ChainError{Seq: r.seq + 1, Offset: r.size, File: segName(r.segFirst), Reason: ReasonTruncated,
			Detail: fmt.Sprintf("the log ends after record %d, but it was known to reach record %d", r.seq, pos.Seq)}
	}
	segs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	i, ok := findSegment(segs, pos.Segment)
	if !ok {
		return &ChainError{Seq: pos.Seq, Offset: pos.Offset, File: segName(pos.Segment), Reason: ReasonTruncated,
			Detail: "the segment the record was known to lie in is missing"}
	}
	end := int64(-1)
	if pos.Segment == r.segFirst {
		end = r.size
	}
	return checkFrameAt(r.aead, segs[i].path, end, pos.Seq, pos.Offset, 0, pos.Hash)
}
