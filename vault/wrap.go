package vault

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// WrappedKeySize is the size of an encoded wrapped-key record (FORMAT.md section 3).
const WrappedKeySize = 1 + chacha20poly1305.NonceSizeX + KeySize + chacha20poly1305.Overhead

const (
	wrapVersion = 1
	wrapDomain  = "dsh v1 wrapped key"
	// purposeKEK derives the key that encrypts wrapped-key records from any parent key, so
	// that a parent (a share key) is never itself an AEAD key and stays free for other,
	// derived uses. Part of the format, like the Purpose* constants.
	purposeKEK = "dsh v1 kek"
)

// WrappedKey is a child key encrypted under a parent key, bound to the context of the record
// that holds it. Store it with MarshalBinary; it holds no secret in the clear.
type WrappedKey struct {
	nonce  [chacha20poly1305.NonceSizeX]byte
	sealed [KeySize + chacha20poly1305.Overhead]byte
}

// WrapKey encrypts child under parent. context names the record the wrapped key will be
// stored in (for example "file:"+fileID.String() or "share:"+name); the same context must
// be given to unwrap it, so a wrapped key copied into another record does not open.
func WrapKey(parent, child *Key, context []byte) (WrappedKey, error) {
	if err := checkWrapArgs(parent, context); err != nil {
		return WrappedKey{}, fmt.Errorf("wrap key: %w", err)
	}
	if child == nil || child.IsZero() {
		return WrappedKey{}, errors.New("wrap key: no child key (nil or wiped)")
	}
	if parent.Equal(child) {
		return WrappedKey{}, errors.New("wrap key: a key cannot wrap itself")
	}
	var w WrappedKey
	if _, err := io.ReadFull(rand.Reader, w.nonce[:]); err != nil {
		return WrappedKey{}, fmt.Errorf("wrap key: %w", err)
	}
	aead, err := newKEK(parent)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("wrap key: %w", err)
	}
	aead.Seal(w.sealed[:0], w.nonce[:], child[:], wrapAD(context))
	return w, nil
}

// UnwrapKey decrypts w under parent with the context it was wrapped with. A wrong parent
// key, a wrong context and a damaged record cannot be told apart; all wrap ErrIntegrity.
func UnwrapKey(parent *Key, w WrappedKey, context []byte) (Key, error) {
	if err := checkWrapArgs(parent, context); err != nil {
		return Key{}, fmt.Errorf("unwrap key: %w", err)
	}
	aead, err := newKEK(parent)
	if err != nil {
		return Key{}, fmt.Errorf("unwrap key: %w", err)
	}
	var k Key
	if _, err := aead.Open(k[:0], w.nonce[:], w.sealed[:], wrapAD(context)); err != nil {
		k.Wipe()
		return Key{}, fmt.Errorf("unwrap key: %w (wrong parent key, wrong context or a damaged record)", ErrIntegrity)
	}
	return k, nil
}

// RewrapKey moves a wrapped key from oldParent to newParent, keeping its context. This is
// all that rotating a parent key takes: the data under the child key is not touched.
func RewrapKey(oldParent, newParent *Key, w WrappedKey, context []byte) (WrappedKey, error) {
	child, err := UnwrapKey(oldParent, w, context)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("rewrap key: %w", err)
	}
	defer child.Wipe()
	nw, err := WrapKey(newParent, &child, context)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("rewrap key: %w", err)
	}
	return nw, nil
}

// MarshalBinary returns the 73-byte record: version | nonce | sealed key.
func (w WrappedKey) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, WrappedKeySize)
	b = append(b, wrapVersion)
	b = append(b, w.nonce[:]...)
	return append(b, w.sealed[:]...), nil
}

// UnmarshalWrappedKey parses a record written by MarshalBinary. It is strict: a wrong
// length wraps ErrIntegrity and an unknown version wraps ErrUnsupportedVersion (or
// ErrIntegrity for version 0, which no dsh writes).
func UnmarshalWrappedKey(b []byte) (WrappedKey, error) {
	if len(b) != WrappedKeySize {
		return WrappedKey{}, fmt.Errorf("%w: wrapped key record is %d bytes, not %d", ErrIntegrity, len(b), WrappedKeySize)
	}
	switch v := b[0]; {
	case v > wrapVersion:
		return WrappedKey{}, fmt.Errorf("wrapped key record: version %d: %w", v, ErrUnsupportedVersion)
	case v != wrapVersion:
		return WrappedKey{}, fmt.Errorf("%w: wrapped key record: invalid version %d", ErrIntegrity, v)
	}
	var w WrappedKey
	n := copy(w.nonce[:], b[1:])
	copy(w.sealed[:], b[1+n:])
	return w, nil
}

func checkWrapArgs(parent *Key, context []byte) error {
	if parent == nil || parent.IsZero() {
		return errors.New("no parent key (nil or wiped)")
	}
	if len(context) == 0 {
		// An empty context would bind the key to nothing, and let it be moved between records.
		return errors.New("empty context")
	}
	return nil
}

// newKEK returns the AEAD that wraps keys under parent. The AEAD keeps its own copy of the
// derived key, which cannot be wiped; it lives only as long as one wrap or unwrap.
func newKEK(parent *Key) (cipher.AEAD, error) {
	kek := parent.Derive(purposeKEK)
	defer kek.Wipe()
	return chacha20poly1305.NewX(kek[:])
}

// wrapAD is "dsh v1 wrapped key" | version | context.
func wrapAD(context []byte) []byte {
	ad := make([]byte, 0, len(wrapDomain)+1+len(context))
	ad = append(ad, wrapDomain...)
	ad = append(ad, wrapVersion)
	return append(ad, context...)
}
