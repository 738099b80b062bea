package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"dsh/kv"
)

// Layout of the "token/" prefix. A NUL separates a user ID from a token ID, as no user ID
// contains one, so one user's prefix can never cover another user's tokens.
const (
	prefixUser  = "token/user/"
	prefixToken = "token/tok/"
	prefixEnrol = "token/enrol/"
	// prefixPool holds the hardware tokens imported from vendors' seed files, by serial:
	// free ones with their sealed secret, assigned and revoked ones as a record of where
	// each device went.
	prefixPool = "token/hw/"
	// prefixLink holds the one-time links that deliver a soft token by e-mail, by user.
	prefixLink = "token/link/"
)

func userKey(id string) []byte     { return []byte(prefixUser + id) }
func enrolKey(id string) []byte    { return []byte(prefixEnrol + id) }
func poolKey(serial string) []byte { return []byte(prefixPool + serial) }
func linkKey(id string) []byte     { return []byte(prefixLink + id) }
func tokensPrefix(id string) []byte {
	return []byte(prefixToken + id + "\x00")
}
func tokenKey(id, tok string) []byte { return []byte(prefixToken + id + "\x00" + tok) }

// sealContext binds a sealed TOTP secret to its user and token.
func sealContext(id, tok string) []byte { return []byte("dsh v1 totp\x00" + id + "\x00" + tok) }

// userRecord is everything persistent about one user's credentials. Every secret in it
// is a hash.
type userRecord struct {
	Password    hashed      `json:"password"`
	Questions   [3]question `json:"questions"`
	Failures    int         `json:"failures"`
	LockedUntil time.Time   `json:"locked_until,omitzero"`
	ICE         *emergency  `json:"ice,omitempty"`
}

type question struct {
	Question string `json:"question"`
	Answer   hashed `json:"answer"`
}

// emergency is an issued ICE code: its hash and when it stops being valid.
type emergency struct {
	Code    hashed    `json:"code"`
	Expires time.Time `json:"expires"`
}

// tokenRecord is one token of a user: a soft token, or a hardware token assigned from the
// pool (Serial set, and then its ID). Secret is sealed; LastStep is the last TOTP time step
// accepted, so that no code at or before it is accepted again; an HOTP token's Counter is
// the next counter it may give a code for.
type tokenRecord struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
	Secret   []byte    `json:"secret"`
	PIN      hashed    `json:"pin"`
	LastStep int64     `json:"last_step"`

	// A hardware token's serial and how it computes codes; zero for soft tokens, whose
	// parameters are fixed (6 digits, 30 s, SHA-1).
	Serial  string `json:"serial,omitempty"`
	Digits  int    `json:"digits,omitempty"`
	Period  int    `json:"period,omitempty"`
	Algo    string `json:"algo,omitempty"`
	Counter uint64 `json:"counter,omitempty"`
	// Drift is how many time steps a hardware TOTP token's clock is ahead (negative:
	// behind), learned at each login and at resynchronisation.
	Drift int64 `json:"drift,omitempty"`
}

// enrolment is an unused enrolment code: its digest and expiry.
type enrolment struct {
	Digest  []byte    `json:"digest"`
	Expires time.Time `json:"expires"`
}

// getJSON reads key into v; found is false for an absent key.
func getJSON(tx kv.Txn, key []byte, v any) (found bool, err error) {
	b, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func putJSON(tx kv.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := tx.Set(key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// listTokens returns the tokens of user in ID order.
func listTokens(tx kv.Txn, user string) ([]tokenRecord, error) {
	var out []tokenRecord
	err := tx.Scan(tokensPrefix(user), nil, func(key, value []byte) (bool, error) {
		var t tokenRecord
		if err := json.Unmarshal(value, &t); err != nil {
			return false, fmt.Errorf("decode %s: %w", key, err)
		}
		out = append(out, t)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}
