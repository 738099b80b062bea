package acl

import (
	"context"
	"errors"
	"fmt"

	"dsh/kv"
	"dsh/vault"
)

// Wrapping contexts bind a wrapped key to the record that holds it, so a wrapped key copied
// into another share's or user's record does not unwrap. They are part of the stored format.
func shareContext(name string) []byte  { return []byte("share:" + name) }
func arrivalsContext(id string) []byte { return []byte("arrivals:" + id) }

// newWrappedKey makes a random key and returns it wrapped for context; the clear key lives
// only for the length of this call.
func (s *Store) newWrappedKey(context []byte) ([]byte, error) {
	k, err := vault.NewKey()
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	w, err := s.wrapper.Wrap(&k, context)
	if err != nil {
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	return w.MarshalBinary()
}

// ShareKey returns the key of share, unwrapped; the caller wipes it when done. It checks no
// role: it is for the token service, which builds a session's keyring from the shares that
// Decide and SharesOf allow. An unknown share gives ErrNotFound; a damaged or misplaced
// wrapped key gives an error wrapping vault.ErrIntegrity.
func (s *Store) ShareKey(ctx context.Context, share string) (vault.Key, error) {
	if err := checkID("share name", share); err != nil {
		return vault.Key{}, err
	}
	var wrapped []byte
	err := s.read(ctx, func(st txnState) error {
		r, err := st.shareRecord(share)
		if err != nil {
			return err
		}
		if r == nil {
			return fail(ErrNotFound, fmt.Sprintf("share %s not found", share))
		}
		wrapped = r.Key
		return nil
	})
	if err != nil {
		return vault.Key{}, err
	}
	return s.unwrap(wrapped, shareContext(share), "share "+share)
}

// ArrivalsKey returns the key of user's Arrivals folder, unwrapped; the caller wipes it.
// Like ShareKey it checks no role.
func (s *Store) ArrivalsKey(ctx context.Context, user string) (vault.Key, error) {
	if err := checkID("user ID", user); err != nil {
		return vault.Key{}, err
	}
	var wrapped []byte
	err := s.read(ctx, func(st txnState) error {
		r, err := st.userRecord(user)
		if err != nil {
			return err
		}
		if r == nil {
			return fail(ErrNotFound, fmt.Sprintf("user %s not found", user))
		}
		wrapped = r.ArrivalsKey
		return nil
	})
	if err != nil {
		return vault.Key{}, err
	}
	return s.unwrap(wrapped, arrivalsContext(user), "Arrivals of "+user)
}

func (s *Store) read(ctx context.Context, fn func(txnState) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	return s.kv.View(ctx, func(tx kv.Txn) error { return fn(txnState{tx}) })
}

func (s *Store) unwrap(b, context []byte, what string) (vault.Key, error) {
	w, err := vault.UnmarshalWrappedKey(b)
	if err != nil {
		return vault.Key{}, fmt.Errorf("acl: key of %s: %w", what, err)
	}
	k, err := s.wrapper.Unwrap(w, context)
	if err != nil {
		return vault.Key{}, fmt.Errorf("acl: key of %s: %w", what, err)
	}
	if k.IsZero() {
		return vault.Key{}, fmt.Errorf("acl: key of %s: %w", what, errors.New("unwrapped to a zero key"))
	}
	return k, nil
}
