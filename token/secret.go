package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"math/big"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"dsh/vault"
)

const (
	saltSize = 16
	hashSize = 32
)

// hashed is a salted Argon2id hash with the parameters that produced it.
type hashed struct {
	Salt   []byte    `json:"salt"`
	Hash   []byte    `json:"hash"`
	Params KDFParams `json:"params"`
}

func newHash(secret []byte, p KDFParams) (hashed, error) {
	salt := make([]byte, saltSize)
	if _, err := io.ReadFull(rand.Reader, salt); err != nil {
		return hashed{}, fmt.Errorf("generate salt: %w", err)
	}
	return hashed{Salt: salt, Hash: argon2.IDKey(secret, salt, p.Time, p.MemoryKiB, p.Threads, hashSize), Params: p}, nil
}

// matches recomputes the hash and compares in constant time. A record without a hash
// never matches, so a half-written credential cannot be satisfied by an empty secret.
func (h hashed) matches(secret []byte) bool {
	if len(h.Hash) != hashSize || len(h.Salt) == 0 || h.Params.Time == 0 || h.Params.Threads == 0 {
		return false
	}
	got := argon2.IDKey(secret, h.Salt, h.Params.Time, h.Params.MemoryKiB, h.Params.Threads, hashSize)
	ok := subtle.ConstantTimeCompare(got, h.Hash) == 1
	wipe(got)
	return ok
}

// digest hashes a high-entropy code (enrolment codes carry 100 bits), where a salt and a
// slow hash would add nothing.
func digest(code string) []byte {
	d := sha256.Sum256([]byte("dsh v1 token code\x00" + code))
	return d[:]
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// checkPassword enforces the length rule; characters, not bytes, so that non-ASCII
// passwords are judged as the user sees them.
func checkPassword(p []byte) error {
	if n := len([]rune(string(p))); n < MinPasswordLen {
		return fmt.Errorf("%w: password must have at least %d characters", ErrInvalid, MinPasswordLen)
	}
	return nil
}

func checkPIN(pin []byte) error {
	if len(pin) != 4 {
		return fmt.Errorf("%w: PIN must be 4 digits", ErrInvalid)
	}
	for _, c := range pin {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: PIN must be 4 digits", ErrInvalid)
		}
	}
	return nil
}

// randomDigits returns n uniformly random decimal digits.
func randomDigits(n int) (string, error) {
	b := make([]byte, n)
	ten := big.NewInt(10)
	for i := range b {
		d, err := rand.Int(rand.Reader, ten)
		if err != nil {
			return "", fmt.Errorf("generate code: %w", err)
		}
		b[i] = byte('0' + d.Int64())
	}
	return string(b), nil
}

// randomCode returns a code of 100 random bits in unpadded base32, easy to type and read
// out over the phone.
func randomCode() (string, error) {
	b := make([]byte, 20)
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "", fmt.Errorf("generate code: %w", err)
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)[:20], nil
}

func randomID() (string, error) {
	b := make([]byte, 6)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", fmt.Errorf("generate id: %w", err)
	}
	return fmt.Sprintf("%x", b), nil
}

// sealVersion prefixes every sealed blob so the format can change later.
const sealVersion = 1

// ErrSealed is returned by KeySealer.Open for a ciphertext that does not authenticate.
var ErrSealed = errors.New("sealed secret does not authenticate")

// KeySealer is a Sealer over a vault.Key with XChaCha20-Poly1305; random 192-bit nonces
// make it safe to seal any number of secrets under one key.
type KeySealer struct {
	key vault.Key
}

var _ Sealer = (*KeySealer)(nil)

// NewKeySealer returns a Sealer over a copy of key; the caller may wipe its own copy.
func NewKeySealer(key *vault.Key) (*KeySealer, error) {
	if key == nil || key.IsZero() {
		return nil, fmt.Errorf("token: new sealer: %w: zero key", ErrInvalid)
	}
	return &KeySealer{key: *key}, nil
}

// Wipe zeroes the sealer's key; later calls fail.
func (k *KeySealer) Wipe() { k.key.Wipe() }

func (k *KeySealer) aead() (aeadCipher, error) {
	if k.key.IsZero() {
		return nil, fmt.Errorf("token: sealer: %w: key wiped", ErrInvalid)
	}
	a, err := chacha20poly1305.NewX(k.key[:])
	if err != nil {
		return nil, fmt.Errorf("token: sealer: %w", err)
	}
	return a, nil
}

type aeadCipher interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}

// Seal encrypts plaintext bound to context: version byte, nonce, ciphertext and tag.
func (k *KeySealer) Seal(plaintext, context []byte) ([]byte, error) {
	a, err := k.aead()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, 1+chacha20poly1305.NonceSizeX+len(plaintext)+chacha20poly1305.Overhead)
	out[0] = sealVersion
	if _, err := io.ReadFull(rand.Reader, out[1:]); err != nil {
		return nil, fmt.Errorf("token: seal: nonce: %w", err)
	}
	return a.Seal(out, out[1:], plaintext, context), nil
}

// Open decrypts what Seal produced under the same context.
func (k *KeySealer) Open(ciphertext, context []byte) ([]byte, error) {
	a, err := k.aead()
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < 1+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead || ciphertext[0] != sealVersion {
		return nil, fmt.Errorf("token: open: %w", ErrSealed)
	}
	nonce := ciphertext[1 : 1+chacha20poly1305.NonceSizeX]
	pt, err := a.Open(nil, nonce, ciphertext[1+chacha20poly1305.NonceSizeX:], context)
	if err != nil {
		return nil, fmt.Errorf("token: open: %w", ErrSealed)
	}
	return pt, nil
}
