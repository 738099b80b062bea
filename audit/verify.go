package audit

import (
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
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
	// TornBytes is the size of a torn final frame after the good records: left by a crash,
	// or being written by a running daemon at the moment of reading.
	TornBytes int64
	// Warning explains TornBytes, or says the log was never closed cleanly so that a cut
	// tail cannot be detected; empty when there is nothing to say.
	Warning string
}

// Verify walks the whole audit log in dir: every frame opens with key at its place, seqs run
// 1..N, each record holds the hash of the one before, and the log reaches at least as far as
// the head file written at the last clean shutdown says. It only reads, so it may run while
// a daemon appends; a partly written final frame is then a warning, not a failure.
func Verify(dir string, key *vault.Key) (VerifyResult, error) {
	res, _, err := checkDir(dir, key, nil)
	return res, err
}

// Read calls fn with each record whose time is at or after since (all records for the zero
// time), in order, checking the chain as it goes. It returns fn's error if fn returns one,
// which is how a caller stops early; records before a broken one have been delivered when
// Read returns the *ChainError.
func Read(dir string, key *vault.Key, since time.Time, fn func(Record) error) error {
	_, _, err := checkDir(dir, key, recordVisitor(since, fn))
	return err
}

func checkDir(dir string, key *vault.Key, visit visitFunc) (VerifyResult, walkOut, error) {
	aead, err := newAEAD(key[:])
	if err != nil {
		return VerifyResult{}, walkOut{}, err
	}
	f, err := os.Open(filepath.Join(dir, logName))
	if err != nil {
		return VerifyResult{}, walkOut{}, fmt.Errorf("open audit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return VerifyResult{}, walkOut{}, fmt.Errorf("open audit log: %w", err)
	}
	return check(dir, f, fi.Size(), aead, visit)
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

// check walks src[0:end] and holds the result against the head file of dir.
func check(dir string, src io.ReaderAt, end int64, aead cipher.AEAD, visit visitFunc) (VerifyResult, walkOut, error) {
	h, hasHead, headErr := readHead(dir, aead)
	if headErr != nil && !errors.Is(headErr, ErrBadHead) {
		return VerifyResult{}, walkOut{}, headErr
	}
	w := walker{aead: aead, src: src, end: end, keyGood: hasHead, markSeq: h.seq}
	out, err := w.run(visit)
	res := VerifyResult{Records: out.n, LastHash: out.last, TornBytes: out.torn}
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
	if hasHead {
		if out.n < h.seq {
			return res, out, &ChainError{Seq: out.n + 1, Offset: out.goodEnd, Reason: ReasonTruncated,
				Detail: fmt.Sprintf("the log ends after record %d, but held %d records when last closed cleanly", out.n, h.seq)}
		}
		if h.seq > 0 && out.mark != h.hash {
			return res, out, &ChainError{Seq: h.seq, Offset: out.markOff, Reason: ReasonChain,
				Detail: "it is not the record sealed in the head file at the last clean shutdown"}
		}
	}
	switch {
	case out.torn > 0:
		res.Warning = fmt.Sprintf("torn final frame at byte %d (%d bytes, %s): left by a crash, or being written now",
			out.goodEnd, out.torn, out.tornWhy)
	case !hasHead && out.n > 0:
		res.Warning = "no head file: the log was never closed cleanly, so a cut tail cannot be detected"
	}
	return res, out, nil
}

// Verify checks the chain of the open log up to the last record written so far, while
// appends go on, and also that the file still holds exactly what this Log wrote: a log cut
// or rewritten under a running daemon is reported.
func (l *Log) Verify() (VerifyResult, error) {
	return l.walkOpen(nil)
}

// Read is the package's Read for the open log, up to the last record written so far. fn
// must not call Close.
func (l *Log) Read(since time.Time, fn func(Record) error) error {
	_, err := l.walkOpen(recordVisitor(since, fn))
	return err
}

func (l *Log) walkOpen(visit visitFunc) (VerifyResult, error) {
	l.readers.RLock()
	defer l.readers.RUnlock()
	if l.aead == nil {
		return VerifyResult{}, ErrClosed
	}
	st := l.Stats()
	f, err := os.Open(l.path)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("open audit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return VerifyResult{}, fmt.Errorf("open audit log: %w", err)
	}
	res, out, err := check(l.dir, f, min(st.Size, fi.Size()), l.aead, visit)
	if err != nil {
		return res, err
	}
	if out.n < st.Seq || out.torn > 0 {
		return res, &ChainError{Seq: out.n + 1, Offset: out.goodEnd, Reason: ReasonTruncated,
			Detail: fmt.Sprintf("the log ends after record %d, but this daemon has written %d", out.n, st.Seq)}
	}
	if out.last != st.Hash {
		return res, &ChainError{Seq: out.n, Offset: out.lastOff, Reason: ReasonChain,
			Detail: "the last record is not the one this daemon wrote"}
	}
	if l.torn > 0 {
		note := fmt.Sprintf("a torn final frame (%d bytes) left by a crash was cut away when the log was opened", l.torn)
		if res.Warning != "" {
			note = res.Warning + "; " + note
		}
		res.Warning = note
	}
	return res, nil
}

// CheckPosition checks that the log holds the record pos names, where pos says, with pos's
// hash. pos is a point the log was known to have reached on disk (Stats().Synced, kept
// elsewhere); a log that ends before it had its tail cut, and one that holds another record
// there was rewritten or replaced. Both are a *ChainError. The zero Position always passes.
func (l *Log) CheckPosition(pos Position) error {
	if pos.Seq == 0 {
		return nil
	}
	l.readers.RLock()
	defer l.readers.RUnlock()
	if l.aead == nil {
		return ErrClosed
	}
	st := l.Stats()
	if pos.Seq > st.Seq {
		return &ChainError{Seq: st.Seq + 1, Offset: st.Size, Reason: ReasonTruncated,
			Detail: fmt.Sprintf("the log ends after record %d, but it was known to reach record %d", st.Seq, pos.Seq)}
	}
	if pos.Segment != 1 {
		return &ChainError{Seq: pos.Seq, Offset: pos.Offset, Reason: ReasonTruncated,
			Detail: fmt.Sprintf("record %d is said to lie in a segment starting at record %d, which this log does not have", pos.Seq, pos.Segment)}
	}
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	defer f.Close()
	w := walker{aead: l.aead, src: f, end: st.Size}
	body, ok := w.frameAt(pos.Offset)
	if !ok {
		return &ChainError{Seq: pos.Seq, Offset: pos.Offset, Reason: ReasonFrame, Detail: "no whole frame lies where the record was known to be"}
	}
	plain, err := l.aead.Open(nil, body[:nonceSize], body[nonceSize:], w.ad.forSeq(pos.Seq))
	if err != nil {
		return &ChainError{Seq: pos.Seq, Offset: pos.Offset, Reason: ReasonDecrypt, Detail: "the frame where the record was known to be does not open as it"}
	}
	defer clear(plain)
	if sha256.Sum256(plain) != pos.Hash {
		return &ChainError{Seq: pos.Seq, Offset: pos.Offset, Reason: ReasonChain, Detail: "it is not the record the log was known to hold"}
	}
	return nil
}
