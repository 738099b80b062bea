package token

import (
	"context"
	"fmt"
	"sync"
	"time"

	"dsh/audit"
	"dsh/internal/secmem"
	"dsh/metrics"
	"dsh/vault"
)

// Keyring holds the keys of one session: the user's shares and Arrivals. Its keys live
// only in memory and are wiped when the session ends or the membership is revoked.
type Keyring struct {
	now     func() time.Time
	expires time.Time

	// mu is per keyring, so one user's revocation never stalls another user's opens.
	mu       sync.RWMutex
	shares   map[string]*vault.Key
	arrivals *vault.Key
	closed   bool
}

// Has reports whether the session holds the key of share, without touching the key.
func (r *Keyring) Has(share string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.shares[share]
	return ok && !r.closed && r.now().Before(r.expires)
}

// HasArrivals reports whether the session holds its Arrivals key.
func (r *Keyring) HasArrivals() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.arrivals != nil && !r.closed && r.now().Before(r.expires)
}

// UseKey calls fn with the key of share while holding the keyring's read lock, so that a
// revocation, logout or seal cannot wipe the key while fn uses it; ok is false when the
// session does not hold the key. fn must be short and must not keep the pointer.
func (r *Keyring) UseKey(share string, fn func(*vault.Key) error) (ok bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.shares[share]
	if !ok || r.closed || !r.now().Before(r.expires) {
		return false, nil
	}
	return true, fn(k)
}

// UseArrivals is UseKey for the user's Arrivals key.
func (r *Keyring) UseArrivals(fn func(*vault.Key) error) (ok bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.arrivals == nil || r.closed || !r.now().Before(r.expires) {
		return false, nil
	}
	return true, fn(r.arrivals)
}

// wipeAll zeroes every key and closes the keyring; lookups fail from then on.
func (r *Keyring) wipeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, k := range r.shares {
		dropKey(k)
		delete(r.shares, name)
	}
	if r.arrivals != nil {
		dropKey(r.arrivals)
		r.arrivals = nil
	}
	r.closed = true
}

// keyPool keeps the keyrings' keys in secret memory: locked, out of core dumps.
var keyPool secmem.Pool[vault.Key]

// lockedKey moves k into secret memory, wiping k.
func lockedKey(k *vault.Key) *vault.Key {
	p := keyPool.Get()
	*p = *k
	k.Wipe()
	return p
}

// dropKey wipes a key from lockedKey and gives its memory back. Nobody may use it since:
// callers hold the keyring's write lock, which UseKey's callers hold for reading.
func dropKey(k *vault.Key) {
	k.Wipe()
	keyPool.Put(k)
}

// session is one logged-in user on one uid.
type session struct {
	uid     int
	user    string
	method  metrics.Method
	expires time.Time
	ring    *Keyring
}

// Sessions are the live login sessions, one per uid, held only in memory.
type Sessions struct {
	keys Keys
	aud  Auditor
	met  *metrics.Metrics
	now  func() time.Time

	mu    sync.RWMutex
	byUID map[int]*session
}

func newSessions(keys Keys, aud Auditor, met *metrics.Metrics, now func() time.Time) *Sessions {
	return &Sessions{keys: keys, aud: aud, met: met, now: now, byUID: make(map[int]*session)}
}

// buildKeyring unwraps the keys of the user's current shares and Arrivals. On any failure
// it wipes what it already holds, so a half-built keyring never outlives the call.
func (s *Sessions) buildKeyring(ctx context.Context, uid int, user string, expires time.Time) (*Keyring, error) {
	r := &Keyring{now: s.now, expires: expires, shares: make(map[string]*vault.Key)}
	for _, share := range s.keys.SharesOf(uid) {
		k, err := s.keys.ShareKey(ctx, share)
		if err != nil {
			r.wipeAll()
			return nil, fmt.Errorf("unwrap key of share %q: %w", share, err)
		}
		r.shares[share] = lockedKey(&k)
	}
	a, err := s.keys.ArrivalsKey(ctx, user)
	if err != nil {
		r.wipeAll()
		return nil, fmt.Errorf("unwrap Arrivals key: %w", err)
	}
	r.arrivals = lockedKey(&a)
	return r, nil
}

// install makes sess the session of its uid, ending (and wiping) any session it replaces.
func (s *Sessions) install(ctx context.Context, sess *session) {
	s.mu.Lock()
	old := s.byUID[sess.uid]
	s.byUID[sess.uid] = sess
	s.mu.Unlock()
	if old != nil {
		s.finish(ctx, old, "replaced")
	}
	if s.met != nil {
		s.met.SessionsActive.Inc()
	}
}

// finish wipes an ended session and records its end; the caller has already removed it
// from the map, so each session is finished once.
func (s *Sessions) finish(ctx context.Context, sess *session, reason string) {
	sess.ring.wipeAll()
	if s.met != nil {
		s.met.SessionsActive.Dec()
	}
	// The session is gone whether or not the record lands; an audit failure is the
	// audit log's to report, and keeping keys alive because of it would be worse.
	_, _ = s.aud.Append(ctx, audit.Entry{
		UID: int64(sess.uid), User: sess.user, Action: "token.session.end",
		Result: "ok", Detail: reason,
	}, audit.Buffered)
}

// active returns the unexpired session of uid; an expired one is ended on the way.
func (s *Sessions) active(uid int) (*session, bool) {
	s.mu.RLock()
	sess, ok := s.byUID[uid]
	s.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if s.now().Before(sess.expires) {
		return sess, true
	}
	s.endIf(context.Background(), uid, sess, "expired")
	return nil, false
}

// endIf ends the session of uid only if it is still sess, so a racing new login is kept.
func (s *Sessions) endIf(ctx context.Context, uid int, sess *session, reason string) {
	s.mu.Lock()
	cur, ok := s.byUID[uid]
	if ok && cur == sess {
		delete(s.byUID, uid)
	}
	s.mu.Unlock()
	if ok && cur == sess {
		s.finish(ctx, sess, reason)
	}
}

// Keyring returns the keyring of uid's active, unexpired session. This is the one call
// the filesystem makes; it takes only a shared lock.
func (s *Sessions) Keyring(uid int) (*Keyring, bool) {
	sess, ok := s.active(uid)
	if !ok {
		return nil, false
	}
	return sess.ring, true
}

// Active reports the user ID and expiry of uid's active session.
func (s *Sessions) Active(uid int) (user string, expires time.Time, ok bool) {
	sess, ok := s.active(uid)
	if !ok {
		return "", time.Time{}, false
	}
	return sess.user, sess.expires, true
}

// Logout ends uid's session; it reports whether there was one.
func (s *Sessions) Logout(ctx context.Context, uid int) bool {
	s.mu.Lock()
	sess, ok := s.byUID[uid]
	delete(s.byUID, uid)
	s.mu.Unlock()
	if ok {
		s.finish(ctx, sess, "logout")
	}
	return ok
}

// byUser returns the sessions of a user ID (normally at most one).
func (s *Sessions) byUser(user string) []*session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*session
	for _, sess := range s.byUID {
		if sess.user == user {
			out = append(out, sess)
		}
	}
	return out
}

// EndUser ends every session of user, as when the account is disabled.
func (s *Sessions) EndUser(ctx context.Context, user string) {
	for _, sess := range s.byUser(user) {
		s.endIf(ctx, sess.uid, sess, "user ended")
	}
}

// EndAll ends every session, as when the vault is sealed.
func (s *Sessions) EndAll(ctx context.Context) {
	s.mu.Lock()
	all := s.byUID
	s.byUID = make(map[int]*session)
	s.mu.Unlock()
	for _, sess := range all {
		s.finish(ctx, sess, "all ended")
	}
}

// Sweep ends every expired session, so that their keys are wiped even when nobody asks for
// them; the daemon calls it periodically.
func (s *Sessions) Sweep(ctx context.Context) {
	now := s.now()
	s.mu.RLock()
	var expired []*session
	for _, sess := range s.byUID {
		if !now.Before(sess.expires) {
			expired = append(expired, sess)
		}
	}
	s.mu.RUnlock()
	for _, sess := range expired {
		s.endIf(ctx, sess.uid, sess, "expired")
	}
}

// GrantShare adds the key of share to user's live session at once, after the daemon added
// the user to the share. Without a session there is nothing to do.
func (s *Sessions) GrantShare(ctx context.Context, user, share string) error {
	for _, sess := range s.byUser(user) {
		k, err := s.keys.ShareKey(ctx, share)
		if err != nil {
			return fmt.Errorf("token: grant share %q: %w", share, err)
		}
		r := sess.ring
		r.mu.Lock()
		// An existing entry is kept, since the filesystem may be using its pointer. The
		// membership is checked again under the keyring's lock: a removal that committed
		// since the caller's addition has run (or will run) RevokeShare, which must win.
		if _, dup := r.shares[share]; r.closed || dup || !s.isMember(sess.uid, share) {
			k.Wipe()
		} else {
			r.shares[share] = lockedKey(&k)
		}
		r.mu.Unlock()
	}
	return nil
}

// RevokeShare wipes the key of share from user's live session at once, after the daemon
// removed the user from the share.
func (s *Sessions) RevokeShare(user, share string) {
	for _, sess := range s.byUser(user) {
		r := sess.ring
		r.mu.Lock()
		if k, ok := r.shares[share]; ok {
			dropKey(k)
			delete(r.shares, share)
		}
		r.mu.Unlock()
	}
}

// reconcile makes the keyring of sess hold exactly the keys of the shares its uid belongs
// to now. Login calls it after installing the session: a membership change committed
// while the keyring was built called GrantShare or RevokeShare before the session existed.
func (s *Sessions) reconcile(ctx context.Context, sess *session) error {
	want := make(map[string]bool)
	for _, share := range s.keys.SharesOf(sess.uid) {
		want[share] = true
	}
	r := sess.ring
	r.mu.Lock()
	for name, k := range r.shares {
		if !want[name] {
			dropKey(k)
			delete(r.shares, name)
		}
	}
	var missing []string
	for name := range want {
		if _, ok := r.shares[name]; !ok {
			missing = append(missing, name)
		}
	}
	r.mu.Unlock()
	for _, name := range missing {
		if err := s.GrantShare(ctx, sess.user, name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sessions) isMember(uid int, share string) bool {
	for _, name := range s.keys.SharesOf(uid) {
		if name == share {
			return true
		}
	}
	return false
}
