package audit

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"

	"dsh/internal/diskio"
)

// Names of the files in an audit folder.
const (
	logName  = "audit.log"
	headName = "audit.head"
)

// Frame layout: length | nonce | ciphertext, where length counts nonce and ciphertext.
const (
	lenSize      = 4
	nonceSize    = chacha20poly1305.NonceSizeX
	tagSize      = chacha20poly1305.Overhead
	minFrameBody = nonceSize + minRecordSize + tagSize
	maxFrameBody = nonceSize + maxRecordSize + tagSize
)

// recordAD prefixes the additional data of every record; the seq that follows binds each
// frame to its place, so a frame moved, removed or replayed no longer opens where it lies.
const recordAD = "dsh v1 audit"

// headAD is the additional data of the head file, so that it can never pass for a record.
const headAD = "dsh v1 audit head"

// Versions of the sealed head. Version 1 said only how far the log went (seq and hash);
// version 2 also says where that record lies, so that opening the log can start there,
// and carries the object of the latest record of the tracked action (Options.Track).
const (
	headV1 = 1
	headV2 = 2
)

// headV1PlainSize is version, seq and hash.
const headV1PlainSize = 1 + 8 + 32

// headV2FixedSize is version, seq, hash, segment, offset and end, and the tracked value's
// 2-byte length.
const headV2FixedSize = 1 + 8 + 32 + 8 + 8 + 8 + 2

// maxTracked bounds the tracked value kept in the head.
const maxTracked = 256

// Errors about the key and the head file. Callers match them with errors.Is.
var (
	// ErrWrongKey is returned when nothing in the audit folder opens with the given key.
	ErrWrongKey = errors.New("audit log does not open with this key (wrong key, or every record altered)")
	// ErrBadHead is returned when the head file cannot be read as one.
	ErrBadHead = errors.New("audit head file is damaged or altered")
)

// adBuf holds the additional data of one record without allocating for each.
type adBuf [len(recordAD) + 8]byte

func (a *adBuf) forSeq(seq uint64) []byte {
	copy(a[:], recordAD)
	binary.BigEndian.PutUint64(a[len(recordAD):], seq)
	return a[:]
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("audit cipher: %w", err)
	}
	return aead, nil
}

// head is a point the log is known to have reached, with every record up to it checked:
// the log's own writer wrote them, or an Open verified them. It is written at every clean
// close, after every Open that checked new records, and at every new segment. A later log
// must reach that far with that record, or its tail was cut; a later Open checks only what
// lies after it.
type head struct {
	seq  uint64
	hash [32]byte
	// Version 2 only (seg is 0 in a version-1 head): where record seq's frame lies.
	seg      uint64
	off, end int64
	tracked  string
}

func sealHead(aead cipher.AEAD, h head, nonce []byte) []byte {
	plain := make([]byte, 0, headV2FixedSize+len(h.tracked))
	plain = append(plain, headV2)
	plain = binary.BigEndian.AppendUint64(plain, h.seq)
	plain = append(plain, h.hash[:]...)
	plain = binary.BigEndian.AppendUint64(plain, h.seg)
	plain = binary.BigEndian.AppendUint64(plain, uint64(h.off))
	plain = binary.BigEndian.AppendUint64(plain, uint64(h.end))
	plain = binary.BigEndian.AppendUint16(plain, uint16(len(h.tracked)))
	plain = append(plain, h.tracked...)
	out := make([]byte, 0, nonceSize+len(plain)+tagSize)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, []byte(headAD))
}

// readHead returns the head file of dir, ok=false when there is none (the log was never
// closed cleanly), and an error wrapping ErrBadHead when it does not open or parse.
func readHead(dir string, aead cipher.AEAD) (h head, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, headName))
	if errors.Is(err, os.ErrNotExist) {
		return head{}, false, nil
	}
	if err != nil {
		return head{}, false, fmt.Errorf("read audit head: %w", err)
	}
	if len(b) < nonceSize+headV1PlainSize+tagSize || len(b) > nonceSize+headV2FixedSize+maxTracked+tagSize {
		return head{}, false, fmt.Errorf("%w: %d bytes", ErrBadHead, len(b))
	}
	plain, err := aead.Open(nil, b[:nonceSize], b[nonceSize:], []byte(headAD))
	if err != nil {
		return head{}, false, fmt.Errorf("%w: does not decrypt", ErrBadHead)
	}
	switch {
	case plain[0] == headV1 && len(plain) == headV1PlainSize:
		h.seq = binary.BigEndian.Uint64(plain[1:])
		copy(h.hash[:], plain[9:41])
	case plain[0] == headV2 && len(plain) >= headV2FixedSize:
		h.seq = binary.BigEndian.Uint64(plain[1:])
		copy(h.hash[:], plain[9:41])
		h.seg = binary.BigEndian.Uint64(plain[41:])
		h.off = int64(binary.BigEndian.Uint64(plain[49:]))
		h.end = int64(binary.BigEndian.Uint64(plain[57:]))
		n := int(binary.BigEndian.Uint16(plain[65:]))
		if len(plain) != headV2FixedSize+n || (h.seq > 0 && (h.seg == 0 || h.off < 0 || h.end <= h.off)) {
			return head{}, false, fmt.Errorf("%w: malformed", ErrBadHead)
		}
		h.tracked = string(plain[headV2FixedSize:])
	default:
		return head{}, false, fmt.Errorf("%w: version %d", ErrBadHead, plain[0])
	}
	return h, true, nil
}

func writeHead(dir string, aead cipher.AEAD, h head, nonce []byte) error {
	if err := diskio.WriteFileAtomic(filepath.Join(dir, headName), sealHead(aead, h, nonce), 0o600); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	return nil
}
