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

// headVersion is the first byte of the sealed head.
const headVersion = 1

// headPlainSize is version, seq and hash.
const headPlainSize = 1 + 8 + 32

// headFileSize is nonce, sealed head and tag.
const headFileSize = nonceSize + headPlainSize + tagSize

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

// head is what a clean shutdown leaves behind: how far the log went, and the hash of its
// last record. A later log must reach that far with that record, or its tail was cut.
type head struct {
	seq  uint64
	hash [32]byte
}

func sealHead(aead cipher.AEAD, h head, nonce []byte) []byte {
	out := make([]byte, 0, headFileSize)
	out = append(out, nonce...)
	plain := make([]byte, 0, headPlainSize)
	plain = append(plain, headVersion)
	plain = binary.BigEndian.AppendUint64(plain, h.seq)
	plain = append(plain, h.hash[:]...)
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
	if len(b) != headFileSize {
		return head{}, false, fmt.Errorf("%w: %d bytes, %d expected", ErrBadHead, len(b), headFileSize)
	}
	plain, err := aead.Open(nil, b[:nonceSize], b[nonceSize:], []byte(headAD))
	if err != nil {
		return head{}, false, fmt.Errorf("%w: does not decrypt", ErrBadHead)
	}
	if plain[0] != headVersion {
		return head{}, false, fmt.Errorf("%w: version %d", ErrBadHead, plain[0])
	}
	h.seq = binary.BigEndian.Uint64(plain[1:])
	copy(h.hash[:], plain[9:])
	return h, true, nil
}

func writeHead(dir string, aead cipher.AEAD, h head, nonce []byte) error {
	if err := diskio.WriteFileAtomic(filepath.Join(dir, headName), sealHead(aead, h, nonce), 0o600); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	return nil
}
