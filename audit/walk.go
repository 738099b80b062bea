package audit

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrBroken is matched (errors.Is) by every *ChainError: the log is not the unbroken chain
// that this package wrote, so an operator must look before the daemon runs on it.
var ErrBroken = errors.New("audit chain broken")

// Reason says why a record fails the chain check.
type Reason string

// Reasons a ChainError can give.
const (
	// ReasonDecrypt: the frame does not open with the key and its place in the log; its
	// bytes were altered (or it is not the record that belongs here).
	ReasonDecrypt Reason = "does not decrypt"
	// ReasonGap: the frame holds a later record than its place calls for; records are missing.
	ReasonGap Reason = "sequence gap"
	// ReasonOrder: the frame holds an earlier record than its place calls for; records were
	// reordered or replayed.
	ReasonOrder Reason = "out of order"
	// ReasonChain: the record opens but does not hold the hash of the record before it (or
	// not the hash the head file recorded), so records were rewritten by a key holder.
	ReasonChain Reason = "hash chain broken"
	// ReasonTruncated: the log ends before a point it is known to have reached.
	ReasonTruncated Reason = "truncated"
	// ReasonFrame: the frame's length field is impossible.
	ReasonFrame Reason = "bad frame"
	// ReasonEncoding: the record opens but is not a canonical record.
	ReasonEncoding Reason = "bad encoding"
)

// ChainError names the first record that breaks the chain. Seq is the record expected at
// that place and Offset the byte offset of its frame in the segment file File (audit.log
// when empty), so an operator can find it with a hex viewer.
type ChainError struct {
	Seq    uint64
	Offset int64
	Reason Reason
	Detail string
	File   string
}

// Error says which record, where, and why, in one line for an operator.
func (e *ChainError) Error() string {
	file := e.File
	if file == "" {
		file = logName
	}
	s := fmt.Sprintf("audit record %d (frame at byte %d of %s): %s", e.Seq, e.Offset, file, e.Reason)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap lets errors.Is(err, ErrBroken) match every chain error.
func (e *ChainError) Unwrap() error { return ErrBroken }

// probeWindow bounds how far a failed frame is tried against other seqs to tell a gap or a
// reordering from altered bytes; it costs nothing unless the log is already broken.
const probeWindow = 64

// walker reads the frames of one segment file from start and checks each against the one
// before, beginning after the record base names.
type walker struct {
	aead cipher.AEAD
	src  io.ReaderAt
	end  int64
	// start is where the walk begins in src, base the state there: the record before the
	// first frame read (zero: the log's start), and seg the segment src is.
	start int64
	base  walkOut
	seg   uint64
	// noPrev skips the check of the first record's previous-record hash: a reader that
	// begins in the middle of the log does not know it.
	noPrev bool
	// keyGood says the head file opened with this key, so a first record that does not
	// open was altered rather than sealed under another key.
	keyGood bool
	// markSeq asks for the hash and offset of one record (the one the head file names).
	markSeq uint64

	body  []byte
	plain []byte
	ad    adBuf
}

// walkOut is how far a walk got.
type walkOut struct {
	n       uint64   // good records
	last    [32]byte // hash of the last good record
	lastSeg uint64   // the segment holding the last good record
	lastOff int64    // offset of the last good frame
	lastEnd int64    // offset just after it
	goodEnd int64    // offset just after the last good frame of the segment walked last
	torn    int64    // bytes after goodEnd that form a torn final frame
	tornWhy string
	markOff int64
	markSeg uint64
	mark    [32]byte
}

// visitFunc sees each good record's canonical bytes (valid only during the call) and where
// its strings lie.
type visitFunc func(plain []byte, spans *[numStrings][2]int, hdr recordHeader) error

func (w *walker) run(visit visitFunc) (walkOut, error) {
	out := w.base
	out.goodEnd, out.torn, out.tornWhy = w.start, 0, ""
	br := bufio.NewReaderSize(io.NewSectionReader(w.src, w.start, max(0, w.end-w.start)), 256<<10)
	if w.body == nil {
		w.body = make([]byte, maxFrameBody)
		w.plain = make([]byte, 0, maxRecordSize)
	}
	// Decrypted records must not outlive the walk in memory longer than needed.
	defer clear(w.plain[:cap(w.plain)])
	var lenb [lenSize]byte
	var spans [numStrings][2]int
	off := w.start
	checkPrev := !w.noPrev
	for off < w.end {
		seq := out.n + 1
		rest := w.end - off
		if rest < lenSize {
			return w.tornAt(out, off, "the length field is cut off"), nil
		}
		if _, err := io.ReadFull(br, lenb[:]); err != nil {
			return out, fmt.Errorf("read audit log at byte %d: %w", off, err)
		}
		n := int64(binary.BigEndian.Uint32(lenb[:]))
		if n < minFrameBody || n > maxFrameBody {
			if zero, err := w.zeroFrom(off); err != nil {
				return out, err
			} else if zero {
				return w.tornAt(out, off, "the tail is zero-filled"), nil
			}
			return out, &ChainError{Seq: seq, Offset: off, Reason: ReasonFrame,
				Detail: fmt.Sprintf("length %d is outside %d..%d", n, minFrameBody, maxFrameBody)}
		}
		if n > rest-lenSize {
			return w.tornAt(out, off, "the frame is cut off"), nil
		}
		body := w.body[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			return out, fmt.Errorf("read audit log at byte %d: %w", off, err)
		}
		plain, err := w.aead.Open(w.plain[:0], body[:nonceSize], body[nonceSize:], w.ad.forSeq(seq))
		if err != nil {
			if off+lenSize+n == w.end && zeroSuffix(body, tagSize) {
				return w.tornAt(out, off, "the final frame is zero-filled"), nil
			}
			return out, w.diagnose(seq, off, body)
		}
		hdr, err := scanRecord(plain, &spans)
		if err != nil {
			return out, &ChainError{Seq: seq, Offset: off, Reason: ReasonEncoding, Detail: err.Error()}
		}
		if hdr.seq != seq {
			// The seq is authenticated as additional data, so only a key holder gets here.
			return out, &ChainError{Seq: seq, Offset: off, Reason: ReasonGap,
				Detail: fmt.Sprintf("the record says it is %d", hdr.seq)}
		}
		if checkPrev && hdr.prev != out.last {
			return out, &ChainError{Seq: seq, Offset: off, Reason: ReasonChain,
				Detail: "its previous-record hash does not match the record before it"}
		}
		checkPrev = true
		if visit != nil {
			if err := visit(plain, &spans, hdr); err != nil {
				return out, err
			}
		}
		out.last = sha256.Sum256(plain)
		out.n, out.lastSeg, out.lastOff = seq, w.seg, off
		if seq == w.markSeq {
			out.markSeg, out.markOff, out.mark = w.seg, off, out.last
		}
		off += lenSize + n
		out.goodEnd, out.lastEnd = off, off
	}
	return out, nil
}

func (w *walker) tornAt(out walkOut, off int64, why string) walkOut {
	out.torn = w.end - off
	out.tornWhy = why
	return out
}

// diagnose explains a frame that does not open at its place: if it opens as a nearby
// record, records are missing, reordered or replayed; if nothing opens, its bytes were
// altered, or (at the very start) the key is wrong.
func (w *walker) diagnose(seq uint64, off int64, body []byte) error {
	next := off + lenSize + int64(len(body))
	for d := uint64(1); d <= probeWindow; d++ {
		if w.opensAs(body, seq+d) {
			if w.laterHolds(next, seq) {
				return &ChainError{Seq: seq, Offset: off, Reason: ReasonOrder,
					Detail: fmt.Sprintf("record %d lies here and record %d further on (reordered)", seq+d, seq)}
			}
			return &ChainError{Seq: seq, Offset: off, Reason: ReasonGap,
				Detail: fmt.Sprintf("record %d lies here, so records %d..%d are missing", seq+d, seq, seq+d-1)}
		}
		if d < seq && w.opensAs(body, seq-d) {
			return &ChainError{Seq: seq, Offset: off, Reason: ReasonOrder,
				Detail: fmt.Sprintf("record %d lies here (reordered or replayed)", seq-d)}
		}
	}
	cerr := &ChainError{Seq: seq, Offset: off, Reason: ReasonDecrypt, Detail: "its bytes were altered"}
	if seq == 1 && !w.keyGood {
		if second, ok := w.frameAt(next); !ok || !w.opensAs(second, 2) {
			return fmt.Errorf("%w: %w", ErrWrongKey, cerr)
		}
	}
	return cerr
}

func (w *walker) opensAs(body []byte, seq uint64) bool {
	_, err := w.aead.Open(w.plain[:0], body[:nonceSize], body[nonceSize:], w.ad.forSeq(seq))
	return err == nil
}

// laterHolds reports whether one of the probeWindow frames from off opens as record seq.
func (w *walker) laterHolds(off int64, seq uint64) bool {
	for range probeWindow {
		body, ok := w.frameAt(off)
		if !ok {
			return false
		}
		if w.opensAs(body, seq) {
			return true
		}
		off += lenSize + int64(len(body))
	}
	return false
}

// frameAt reads the frame at off, if a whole one of a possible length lies there. Only the
// diagnosis of a broken log uses it, so it may allocate.
func (w *walker) frameAt(off int64) ([]byte, bool) {
	var lenb [lenSize]byte
	if off+lenSize > w.end {
		return nil, false
	}
	if _, err := w.src.ReadAt(lenb[:], off); err != nil {
		return nil, false
	}
	n := int64(binary.BigEndian.Uint32(lenb[:]))
	if n < minFrameBody || n > maxFrameBody || off+lenSize+n > w.end {
		return nil, false
	}
	body := make([]byte, n)
	if _, err := w.src.ReadAt(body, off+lenSize); err != nil {
		return nil, false
	}
	return body, true
}

// zeroFrom reports whether every byte from off to the end is zero: what some file systems
// show after a crash for space they had allocated but not yet written.
func (w *walker) zeroFrom(off int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for off < w.end {
		n := min(int64(len(buf)), w.end-off)
		if _, err := w.src.ReadAt(buf[:n], off); err != nil {
			return false, fmt.Errorf("read audit log at byte %d: %w", off, err)
		}
		if !zeroSuffix(buf[:n], int(n)) {
			return false, nil
		}
		off += n
	}
	return true, nil
}

// zeroSuffix reports whether the last n bytes of b are zero. A real Poly1305 tag is all
// zeros with probability 2^-128, so a zero tag marks a write that never reached the disk.
func zeroSuffix(b []byte, n int) bool {
	if n > len(b) {
		return false
	}
	tail := b[len(b)-n:]
	return len(bytes.Trim(tail, "\x00")) == 0
}
