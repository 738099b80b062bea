// Package audit appends hash-chained, encrypted records of who did what to the dsh store, so
// that every access decision, login, membership change and deletion can be accounted for
// afterwards and any later change to the record is detected.
//
// Each record carries the SHA-256 hash of the one before, and is sealed with
// XChaCha20-Poly1305 under a key derived from the root key; FORMAT.md describes the bytes.
// A record is written before the action it describes takes effect, and an Append that fails
// makes the caller refuse the action (fail closed).
//
// The package must never rewrite or drop a record that a caller was told is written, never
// write a record or any part of one to disk in plaintext, and never repair a damaged log
// silently: the one thing Open cuts away is a torn final frame left by a crash, and it says
// so (Log.Recovered) so that the daemon records the repair in the log itself.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// recordVersion is the first byte of every canonical record encoding. Any change to the
// encoding needs a new version: old hashes must stay reproducible forever.
const recordVersion = 1

// MaxField is the largest number of bytes allowed in each string of an Entry. Longer fields
// are refused, not cut, so a record always says exactly what the caller gave. It holds a
// path of PATH_MAX (4096) bytes with a NAME_MAX (255) name and a prefix, in each of the
// object and the detail of one record (a rename names both ends). dsh before this limit
// wrote at most 4096 bytes a field; its records read unchanged.
const MaxField = 8192

// Sizes of the canonical encoding, in bytes.
const (
	fixedSize     = 1 + 8 + 8 + 8 + 32         // version, seq, time, uid, prev
	minRecordSize = fixedSize + 5*4            // five empty strings
	maxRecordSize = minRecordSize + 5*MaxField // five full strings
	numStrings    = 5
)

// Errors about the content of records. Callers match them with errors.Is.
var (
	// ErrInvalidEntry is returned by Append for an entry that cannot be recorded as given
	// (an empty action or result, or a field over MaxField bytes).
	ErrInvalidEntry = errors.New("invalid audit entry")
	// ErrMalformed is returned when bytes are not a canonical version-1 record.
	ErrMalformed = errors.New("malformed audit record")
)

// Entry is what a caller asks to be recorded: who (UID, User) did what (Action) to what
// (Object) with which outcome (Result). Detail may add a reason class such as "not a member";
// it must never hold a secret (a password, a code, a key, a session token).
type Entry struct {
	// UID is the Linux uid of the caller, or -1 when there is none (the daemon itself).
	UID int64
	// User is the caller's DSH user ID, empty when not known.
	User string
	// Action names what was attempted, such as "vault.unseal" or "share.add"; required.
	Action string
	// Object names what it was done to, such as a share or a path inside one; may be empty.
	Object string
	// Result is the outcome, such as "ok", "denied" or "error"; required.
	Result string
	// Detail optionally classifies the result; never a secret.
	Detail string
}

// Record is one entry as stored: its place in the log (Seq, counted from 1 with no gaps),
// when it was written (UTC, nanoseconds) and the hash of the record before it (all zeros
// for the first record).
type Record struct {
	Seq  uint64
	Time time.Time
	Entry
	Prev [32]byte
}

// Hash returns the SHA-256 of the record's canonical encoding; the next record holds it in
// Prev. It is defined for every record, but only records that MarshalBinary accepts are ever
// stored.
func (r Record) Hash() [32]byte {
	var stack [512]byte
	return sha256.Sum256(r.appendCanonical(stack[:0]))
}

// validate checks what an Entry must satisfy to be stored, so that no record is written
// that a reader would refuse.
func (e *Entry) validate() error {
	if e.Action == "" {
		return fmt.Errorf("%w: the action is empty", ErrInvalidEntry)
	}
	if e.Result == "" {
		return fmt.Errorf("%w: the result is empty", ErrInvalidEntry)
	}
	return e.checkLengths()
}

// timeOK reports whether t survives the trip through Unix nanoseconds (years 1678 to 2262).
func timeOK(t time.Time) bool {
	return time.Unix(0, t.UnixNano()).Equal(t)
}

// MarshalBinary returns the canonical encoding of the record (see AppendBinary).
func (r Record) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, r.size()))
}

// AppendBinary appends the canonical version-1 encoding of the record to b. This encoding
// is what the hash chain covers, so it is frozen; a new layout needs a new version byte.
//
//	version  1 byte   0x01
//	seq      8 bytes  uint64, big-endian
//	time     8 bytes  int64, big-endian, Unix nanoseconds (UTC)
//	uid      8 bytes  int64, big-endian, two's complement
//	prev    32 bytes  SHA-256 of the previous record's encoding; zeros for seq 1
//	user, action, object, result, detail:
//	         4 bytes  uint32, big-endian, length n (at most MaxField)
//	         n bytes  the string, as given (not necessarily UTF-8)
//
// It fails for a field over MaxField bytes or a time outside what Unix nanoseconds can hold.
func (r Record) AppendBinary(b []byte) ([]byte, error) {
	if err := r.Entry.checkLengths(); err != nil {
		return b, err
	}
	if !timeOK(r.Time) {
		return b, fmt.Errorf("%w: time %v is outside the range of Unix nanoseconds", ErrInvalidEntry, r.Time)
	}
	return r.appendCanonical(b), nil
}

// checkLengths is the part of validate that the decoder also enforces: the format allows an
// empty action, but never an over-long field.
func (e *Entry) checkLengths() error {
	fields := [numStrings]struct{ name, s string }{
		{"user", e.User}, {"action", e.Action}, {"object", e.Object}, {"result", e.Result}, {"detail", e.Detail},
	}
	for _, f := range fields {
		if len(f.s) > MaxField {
			return fmt.Errorf("%w: the %s is %d bytes, the limit is %d", ErrInvalidEntry, f.name, len(f.s), MaxField)
		}
	}
	return nil
}

func (r Record) size() int {
	return minRecordSize + len(r.User) + len(r.Action) + len(r.Object) + len(r.Result) + len(r.Detail)
}

// appendCanonical writes the encoding without checks; callers have checked already, or (Hash)
// want a value for any record.
func (r Record) appendCanonical(b []byte) []byte {
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.UID))
	b = append(b, r.Prev[:]...)
	for _, s := range [numStrings]string{r.User, r.Action, r.Object, r.Result, r.Detail} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// UnmarshalBinary decodes a canonical version-1 encoding strictly: a wrong version, a length
// over MaxField or past the end, or bytes left over are errors wrapping ErrMalformed.
func (r *Record) UnmarshalBinary(b []byte) error {
	var spans [numStrings][2]int
	hdr, err := scanRecord(b, &spans)
	if err != nil {
		return err
	}
	*r = recordFrom(b, hdr, &spans)
	return nil
}

// recordFrom builds a Record from bytes that scanRecord has checked.
func recordFrom(b []byte, hdr recordHeader, spans *[numStrings][2]int) Record {
	r := Record{Seq: hdr.seq, Time: time.Unix(0, hdr.nanos).UTC(), Prev: hdr.prev}
	r.UID = hdr.uid
	dst := [numStrings]*string{&r.User, &r.Action, &r.Object, &r.Result, &r.Detail}
	for i, sp := range spans {
		if sp[1] > sp[0] {
			*dst[i] = string(b[sp[0]:sp[1]])
		}
	}
	return r
}

// recordHeader holds the fixed-width fields, which are all that chain checks need.
type recordHeader struct {
	seq   uint64
	nanos int64
	uid   int64
	prev  [32]byte
}

// scanRecord checks the whole encoding and returns its fixed fields and where each string
// lies, without allocating, so that walking a long log costs no garbage.
func scanRecord(b []byte, spans *[numStrings][2]int) (recordHeader, error) {
	var h recordHeader
	if len(b) < minRecordSize {
		return h, fmt.Errorf("%w: %d bytes, at least %d needed", ErrMalformed, len(b), minRecordSize)
	}
	if b[0] != recordVersion {
		return h, fmt.Errorf("%w: version %d, only %d is known", ErrMalformed, b[0], recordVersion)
	}
	h.seq = binary.BigEndian.Uint64(b[1:])
	h.nanos = int64(binary.BigEndian.Uint64(b[9:]))
	h.uid = int64(binary.BigEndian.Uint64(b[17:]))
	copy(h.prev[:], b[25:fixedSize])
	off := fixedSize
	for i := range numStrings {
		if len(b)-off < 4 {
			return h, fmt.Errorf("%w: string %d: length cut off", ErrMalformed, i+1)
		}
		n := binary.BigEndian.Uint32(b[off:])
		off += 4
		if n > MaxField {
			return h, fmt.Errorf("%w: string %d is %d bytes, the limit is %d", ErrMalformed, i+1, n, MaxField)
		}
		if int(n) > len(b)-off {
			return h, fmt.Errorf("%w: string %d runs past the end", ErrMalformed, i+1)
		}
		spans[i] = [2]int{off, off + int(n)}
		off += int(n)
	}
	if off != len(b) {
		return h, fmt.Errorf("%w: %d bytes left over", ErrMalformed, len(b)-off)
	}
	return h, nil
}
