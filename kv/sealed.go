package kv

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"dsh/vault"
)

// Sealed values.
//
// Badger encrypts its files with AES-CTR, which hides values but does not authenticate
// them: a changed byte decrypts to a changed value, and a value copied under another key
// (or an older value put back) reads as if it had been written there. Sealed wraps a Store
// so that every value is stored as
//
//	version (1) = 0x01 | nonce (24, random) | XChaCha20-Poly1305 ciphertext and tag
//
// with the additional data sealAD | the value's kv key. A value that was changed, or moved
// to another key, does not open: the read fails with ErrIntegrity and the store's
// IntegrityFunc is told, so that the failure is counted and audited. What sealing cannot
// see is a value deleted, or an older value of the same key put back (a rollback of the
// store or of one record); the store's epoch (package store) catches a rollback of the
// metadata against the audit log and the blob store, at unseal.
//
// XChaCha20-Poly1305 rather than AES-GCM: a store takes billions of writes over its life,
// far past the 2^32 random 96-bit nonces that GCM allows under one key.

// SealOverhead is what sealing adds to every value.
const SealOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// sealVersion is the first byte of every sealed value.
const sealVersion = 1

// sealAD starts the additional data of every sealed value; the kv key follows it.
const sealAD = "dsh v1 kv value\x00"

// ErrIntegrity is returned by Get and Scan of a Sealed store for a value that does not
// open under its key (changed on disk, moved from another key, or not sealed at all), and
// by OpenBadger for a table that fails its checksum.
var ErrIntegrity = errors.New("kv: stored data failed its integrity check")

// IntegrityFunc is told of every value that failed to open, with its key. Keys may hold
// names: the function must not log or record more of the key than its fixed prefix.
type IntegrityFunc func(key []byte)

// Sealed is a Store whose values are sealed under a key bound to their kv key; see above.
type Sealed struct {
	inner    Store
	aead     cipher.AEAD
	onIntegr atomic.Pointer[IntegrityFunc]
}

var _ Store = (*Sealed)(nil)

// Seal returns inner with every value sealed under key (which the caller derives for this
// purpose alone and may wipe on return). inner must be empty or hold only sealed values,
// and nothing else may write to it. inner must be a Badger or a Mem: sealed values are
// larger than the limits Store promises its callers, which Sealed enforces on plaintext.
func Seal(inner Store, key *vault.Key) (*Sealed, error) {
	if key == nil || key.IsZero() {
		return nil, errors.New("kv: seal: missing key")
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, fmt.Errorf("kv: seal: %w", err)
	}
	return &Sealed{inner: inner, aead: aead}, nil
}

// OnIntegrity sets the function told of values that fail to open; nil removes it.
func (s *Sealed) OnIntegrity(fn IntegrityFunc) {
	if fn == nil {
		s.onIntegr.Store(nil)
		return
	}
	s.onIntegr.Store(&fn)
}

// Inner returns the store under s, for tests that tamper with what is stored.
func (s *Sealed) Inner() Store { return s.inner }

// View runs fn in a read-only transaction; see Store.
func (s *Sealed) View(ctx context.Context, fn func(Txn) error) error {
	return s.inner.View(ctx, func(tx Txn) error {
		t := s.wrap(tx, false)
		err := fn(t)
		t.g.done = true
		return err
	})
}

// Update runs fn in a read-write transaction; see Store.
func (s *Sealed) Update(ctx context.Context, fn func(Txn) error) error {
	return s.inner.Update(ctx, func(tx Txn) error {
		t := s.wrap(tx, true)
		err := fn(t)
		t.g.done = true
		return err
	})
}

// UpdateLazy is Update without the wait for the disk; see Store.
func (s *Sealed) UpdateLazy(ctx context.Context, fn func(Txn) error) error {
	return s.inner.UpdateLazy(ctx, func(tx Txn) error {
		t := s.wrap(tx, true)
		err := fn(t)
		t.g.done = true
		return err
	})
}

// Sync makes earlier commits durable; see Store.
func (s *Sealed) Sync(ctx context.Context) error { return s.inner.Sync(ctx) }

// Close closes the inner store; see Store.
func (s *Sealed) Close() error { return s.inner.Close() }

func (s *Sealed) wrap(tx Txn, writable bool) *sealedTxn {
	return &sealedTxn{s: s, tx: tx, g: txnGuard{writable: writable}}
}

// rawSetter is implemented by the transactions of the backends Sealed can wrap: a Set
// without the size limits, which Sealed has checked on the plaintext.
type rawSetter interface {
	setRaw(key, value []byte) error
}

// sealedTxn checks the limits on plaintext with its own guard, as every backend does, so
// that code tested against Mem meets the same limits on a sealed Badger.
type sealedTxn struct {
	s   *Sealed
	tx  Txn
	g   txnGuard
	buf []byte // plaintext of the value a Scan callback holds
}

func (t *sealedTxn) Get(key []byte) ([]byte, error) {
	if err := t.g.checkRead(key); err != nil {
		return nil, err
	}
	v, err := t.tx.Get(key)
	if err != nil {
		return nil, err
	}
	// Non-nil even when empty, as Txn promises.
	return t.s.open(make([]byte, 0, max(0, len(v)-SealOverhead)), key, v)
}

func (t *sealedTxn) Set(key, value []byte) error {
	if err := t.g.checkWrite(key, value); err != nil {
		return err
	}
	rs, ok := t.tx.(rawSetter)
	if !ok {
		return errors.New("kv: sealed store over a backend that cannot hold sealed values")
	}
	return rs.setRaw(key, t.s.seal(key, value))
}

func (t *sealedTxn) Delete(key []byte) error {
	if err := t.g.checkWrite(key, nil); err != nil {
		return err
	}
	return t.tx.Delete(key)
}

func (t *sealedTxn) Scan(prefix, start []byte, fn func(key, value []byte) (bool, error)) error {
	if err := t.g.checkScan(); err != nil {
		return err
	}
	return t.tx.Scan(prefix, start, func(key, value []byte) (bool, error) {
		plain, err := t.s.open(t.buf[:0], key, value)
		if err != nil {
			return false, err
		}
		t.buf = plain
		more, err := fn(key, plain)
		// The callback may not keep the slice; wipe what it held before the next value.
		clear(plain)
		return more, err
	})
}

// seal returns the stored form of value under key.
func (s *Sealed) seal(key, value []byte) []byte {
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, SealOverhead+len(value))
	out[0] = sealVersion
	nonce := out[1:]
	// crypto/rand.Read does not fail on the platforms Go supports.
	rand.Read(nonce)
	return s.aead.Seal(out, nonce, value, adFor(key))
}

// open appends the plaintext of a stored value to dst, or fails with ErrIntegrity.
func (s *Sealed) open(dst, key, stored []byte) ([]byte, error) {
	if len(stored) < SealOverhead || stored[0] != sealVersion {
		return nil, s.failed(key)
	}
	nonce := stored[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := s.aead.Open(dst, nonce, stored[1+chacha20poly1305.NonceSizeX:], adFor(key))
	if err != nil {
		return nil, s.failed(key)
	}
	return plain, nil
}

func (s *Sealed) failed(key []byte) error {
	if fn := s.onIntegr.Load(); fn != nil {
		(*fn)(key)
	}
	return fmt.Errorf("%w (a record under %q)", ErrIntegrity, KeyClass(key))
}

func adFor(key []byte) []byte {
	ad := make([]byte, 0, len(sealAD)+len(key))
	return append(append(ad, sealAD...), key...)
}

// KeyClass returns the part of a key that says what kind of record it names and nothing
// about whose: everything up to and including its second '/' ("fs/i/", "acl/member/"), or
// "?" for a key of another shape. Safe for logs, metrics and audit records.
func KeyClass(key []byte) string {
	slashes := 0
	for i, c := range key {
		if c == '/' {
			if slashes++; slashes == 2 {
				return string(key[:i+1])
			}
		}
		if c < 0x21 || c > 0x7e {
			break
		}
	}
	if slashes == 1 {
		return string(key[:bytes.IndexByte(key, '/')+1])
	}
	return "?"
}
