package acl

import (
	"context"

	"dsh/vault"
)

// Accounts answers, from the Store, what the token service asks about accounts: which
// user a uid or user ID names, and whether that account is active. Only an active account
// may log in or keep a session.
type Accounts struct{ S *Store }

// UserByUID returns the user ID of uid, whether the account is active and whether it exists.
func (a Accounts) UserByUID(uid int) (id string, active, exists bool) {
	u, ok := a.S.UserByUID(uid)
	return u.ID, ok && u.Status == StatusActive, ok
}

// UserByID returns the uid of user ID id, whether the account is active and whether it
// exists.
func (a Accounts) UserByID(id string) (uid int, active, exists bool) {
	u, ok := a.S.UserByID(id)
	return u.UID, ok && u.Status == StatusActive, ok
}

// Keys answers, from the Store, what a session keyring of uid holds: the keys of the
// shares uid is a member of, and of uid's Arrivals folder.
type Keys struct{ S *Store }

// SharesOf returns the names of uid's shares.
func (k Keys) SharesOf(uid int) []string {
	acc := k.S.SharesOf(uid)
	out := make([]string, len(acc))
	for i, a := range acc {
		out[i] = a.Share
	}
	return out
}

// ShareKey returns the key of share (Store.ShareKey).
func (k Keys) ShareKey(ctx context.Context, share string) (vault.Key, error) {
	return k.S.ShareKey(ctx, share)
}

// ArrivalsKey returns the key of user's Arrivals folder (Store.ArrivalsKey).
func (k Keys) ArrivalsKey(ctx context.Context, user string) (vault.Key, error) {
	return k.S.ArrivalsKey(ctx, user)
}
