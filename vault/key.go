// Package vault owns the key hierarchy of a dsh store: it seals and unseals the root key,
// derives the keys of the other parts from it, wraps and unwraps per-share and per-file keys,
// and defines the encrypted content format (FORMAT.md). It must never write a key, a
// passphrase or plaintext content to disk, to a log or into an error message.
package vault

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
)

// KeySize is the size in bytes of every symmetric key in dsh (256 bits).
const KeySize = 32

// Key is a 256-bit symmetric key. It is a fixed-size array so that it can be wiped in place;
// callers that are done with a key call Wipe.
type Key [KeySize]byte

// NewKey returns a fresh random key from the operating system's CSPRNG.
func NewKey() (Key, error) {
	var k Key
	if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// Wipe overwrites the key with zeros. The Go runtime may have copied the key elsewhere (a
// stack move, a register spill); wiping is a best effort that still shortens a key's life.
func (k *Key) Wipe() {
	for i := range k {
		k[i] = 0
	}
}

// IsZero reports whether the key is all zeros, which is what a wiped key looks like.
func (k *Key) IsZero() bool {
	var zero Key
	return subtle.ConstantTimeCompare(k[:], zero[:]) == 1
}

// Equal compares two keys in constant time.
func (k *Key) Equal(o *Key) bool {
	return subtle.ConstantTimeCompare(k[:], o[:]) == 1
}

// Derive returns a subkey for one purpose (HKDF-SHA256 with the purpose as info). Purposes
// are fixed strings named by the Purpose* constants, so that no two parts of dsh ever share
// a key.
func (k *Key) Derive(purpose string) Key {
	var out Key
	r := hkdf.New(sha256.New, k[:], nil, []byte(purpose))
	if _, err := io.ReadFull(r, out[:]); err != nil {
		// HKDF-SHA256 can give up to 8160 bytes; 32 never fails.
		panic("vault: hkdf: " + err.Error())
	}
	return out
}

// Purposes of keys derived from the root key. These strings are part of the on-disk format:
// changing one makes existing stores unreadable.
const (
	PurposeBadger = "dsh v1 badger"
	PurposeAudit  = "dsh v1 audit"
	PurposeWrap   = "dsh v1 wrap"
	PurposeSecret = "dsh v1 secret"
	// PurposeKV seals every value of the metadata store (kv.Sealed).
	PurposeKV = "dsh v1 kv"
	// PurposeEpoch seals the blob store's copy of the store's epoch (package store).
	PurposeEpoch = "dsh v1 epoch"
)
