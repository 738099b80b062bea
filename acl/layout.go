package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"dsh/kv"
)

// Key layout in kv. Every key of this package starts with "acl/"; no other package writes
// under it. The layout carries no version: a later change adds new kinds of keys beside
// these, and a reader ignores kinds it does not know.
//
//	acl/user/<id>                 JSON userRecord: the account and its wrapped Arrivals key
//	acl/uid/<uid, decimal>        the user ID owning the uid (keeps uids unique)
//	acl/project/<name>            JSON Project: IAO, IAAs (sorted), created
//	acl/share/<name>              JSON shareRecord: project, wrapped share key, created
//	acl/member/<share>/<user>     "rw" or "ro"
//	acl/usershare/<user>/<share>  "rw" or "ro", the reverse index of acl/member
//
// IDs and names never contain '/', so each key splits unambiguously. Values are JSON with
// explicit snake_case tags; Badger encrypts them at rest.
const (
	prefix          = "acl/"
	userPrefix      = prefix + "user/"
	uidPrefix       = prefix + "uid/"
	projectPrefix   = prefix + "project/"
	sharePrefix     = prefix + "share/"
	memberPrefix    = prefix + "member/"
	userSharePrefix = prefix + "usershare/"
)

func userKey(id string) []byte      { return []byte(userPrefix + id) }
func uidKey(uid int) []byte         { return []byte(uidPrefix + strconv.Itoa(uid)) }
func projectKey(name string) []byte { return []byte(projectPrefix + name) }
func shareKey(name string) []byte   { return []byte(sharePrefix + name) }
func memberKey(share, user string) []byte {
	return []byte(memberPrefix + share + "/" + user)
}
func userShareKey(user, share string) []byte {
	return []byte(userSharePrefix + user + "/" + share)
}

// userRecord is stored under acl/user/. The wrapped key stays out of User, which callers get.
type userRecord struct {
	User
	ArrivalsKey []byte `json:"arrivals_key"`
}

// shareRecord is stored under acl/share/.
type shareRecord struct {
	Share
	Key []byte `json:"key"`
}

// state is the stored state as the checks of every action read it: either a kv transaction
// (txnState, for changes) or the snapshot (for listings). Writing each check once against
// this interface is what keeps the two from drifting apart. A nil result means absent.
type state interface {
	user(id string) (*User, error)
	userByUID(uid int) (*User, error)
	project(name string) (*Project, error)
	share(name string) (*Share, error)
	// mode returns "" when user is not a member of share.
	mode(share, user string) (Mode, error)
}

// txnState reads the stored state inside one kv transaction.
type txnState struct{ tx kv.Txn }

// getJSON decodes the value of key into v; it reports false for an absent key.
func getJSON(tx kv.Txn, key []byte, v any) (bool, error) {
	b, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("acl: read %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("acl: stored record %s is damaged: %w", key, err)
	}
	return true, nil
}

func (s txnState) userRecord(id string) (*userRecord, error) {
	var r userRecord
	ok, err := getJSON(s.tx, userKey(id), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

func (s txnState) user(id string) (*User, error) {
	r, err := s.userRecord(id)
	if r == nil || err != nil {
		return nil, err
	}
	return &r.User, nil
}

func (s txnState) userByUID(uid int) (*User, error) {
	b, err := s.tx.Get(uidKey(uid))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acl: read uid %d: %w", uid, err)
	}
	return s.user(string(b))
}

func (s txnState) project(name string) (*Project, error) {
	var p Project
	ok, err := getJSON(s.tx, projectKey(name), &p)
	if !ok || err != nil {
		return nil, err
	}
	return &p, nil
}

func (s txnState) shareRecord(name string) (*shareRecord, error) {
	var r shareRecord
	ok, err := getJSON(s.tx, shareKey(name), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

func (s txnState) share(name string) (*Share, error) {
	r, err := s.shareRecord(name)
	if r == nil || err != nil {
		return nil, err
	}
	return &r.Share, nil
}

func (s txnState) mode(share, user string) (Mode, error) {
	b, err := s.tx.Get(memberKey(share, user))
	if errors.Is(err, kv.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("acl: read membership of %s in %s: %w", user, share, err)
	}
	return Mode(b), nil
}

// kvChange is one write of a committed change, replayed onto the snapshot after the commit.
type kvChange struct {
	key string
	val []byte // nil for a delete
}

// writer makes the writes of one change and remembers them. kv.Update may run the change
// more than once; only the writes of the attempt that committed are replayed.
type writer struct {
	txnState
	changes []kvChange
}

func (w *writer) set(key, val []byte) error {
	if err := w.tx.Set(key, val); err != nil {
		return fmt.Errorf("acl: write %s: %w", key, err)
	}
	w.changes = append(w.changes, kvChange{key: string(key), val: val})
	return nil
}

func (w *writer) setJSON(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("acl: encode %s: %w", key, err)
	}
	return w.set(key, b)
}

func (w *writer) del(key []byte) error {
	if err := w.tx.Delete(key); err != nil {
		return fmt.Errorf("acl: delete %s: %w", key, err)
	}
	w.changes = append(w.changes, kvChange{key: string(key)})
	return nil
}

func (w *writer) setMember(share, user string, m Mode) error {
	if err := w.set(memberKey(share, user), []byte(m)); err != nil {
		return err
	}
	return w.set(userShareKey(user, share), []byte(m))
}

func (w *writer) delMember(share, user string) error {
	if err := w.del(memberKey(share, user)); err != nil {
		return err
	}
	return w.del(userShareKey(user, share))
}
