package token

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"dsh/audit"
	"dsh/internal/secmem"
	"dsh/metrics"
	"dsh/vault"
)

// Keyring holds the keys a uid's sessions give it: the user's shares and Arrivals. Its keys
// live only in memory and are wiped when the uid's last session ends or the membership is
// revoked. All sessions of one uid share one Keyring, so the filesystem sees the union of
// what they grant with one lookup, and a handle keeps working while any of them lives.
type Keyring struct {
	now func() time.Time
	// until is when the keyring stops answering, in Unix nanoseconds: the latest deadline
	// of the sessions that hold it. Sessions moves it as sessions come, go and are used.
	until atomic.Int64

	// mu is per keyring, so one user's revocation never stalls another user's opens.
	mu       sync.RWMutex
	shares   map[string]*vault.Key
	arrivals *vault.Key
	closed   bool
}

// live reports whether the keyring may answer now; r.mu must be held (either way).
func (r *Keyring) live() bool {
	return !r.closed && r.now().UnixNano() < r.until.Load()
}

// Has reports whether the session holds the key of share, without touching the key.
func (r *Keyring) Has(share string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.shares[share]
	return ok && r.live()
}

// HasArrivals reports whether the session holds its Arrivals key.
func (r *Keyring) HasArrivals() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.arrivals != nil && r.live()
}

// UseKey calls fn with the key of share while holding the keyring's read lock, so that a
// revocation, logout or seal cannot wipe the key while fn uses it; ok is false when the
// session does not hold the key. fn must be short and must not keep the pointer.
func (r *Keyring) UseKey(share string, fn func(*vault.Key) error) (ok bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.shares[share]
	if !ok || !r.live() {
		return false, nil
	}
	return true, fn(k)
}

// UseArrivals is UseKey for the user's Arrivals key.
func (r *Keyring) UseArrivals(fn func(*vault.Key) error) (ok bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.arrivals == nil || !r.live() {
		return false, nil
	}
	return true, fn(r.arrivals)
}

// wipeAll zeroes every key and closes the keyring; lookups fail from then on.
func (r *Keyring) wipeAll() {
	r.until.Store(0)
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

// session is one login of a user on one uid, from the command line or from the portal.
type session struct {
	id      uint64
	uid     int
	user    string
	portal  bool
	method  metrics.Method
	started time.Time
	expires time.Time     // the end in any case
	idle    time.Duration // ends this long after seen; zero for none
	seen    time.Time     // the last use (Touch); guarded by Sessions.mu
}

// deadline is when the session ends unless used again. Sessions.mu must be held.
func (s *session) deadline() time.Time {
	if s.idle > 0 {
		if t := s.seen.Add(s.idle); t.Before(s.expires) {
			return t
		}
	}
	return s.expires
}

// describe is the session's audit detail: its number and channel.
func (s *session) describe() string {
	ch := "command line"
	if s.portal {
		ch = "portal"
	}
	return fmt.Sprintf("session %d (%s)", s.id, ch)
}

// SessionInfo describes a live session.
type SessionInfo struct {
	// ID names the session among all sessions of the daemon's life; the portal keeps it
	// to find the session its sign-in started.
	ID   uint64
	UID  int
	User string
	// Portal is set for a portal sign-in's session; false for dsh login.
	Portal  bool
	Method  metrics.Method
	Started time.Time
	// Expires is when the session ends unless used again (a portal session's idle
	// timeout), or in any case.
	Expires time.Time
}

func (s *session) info() SessionInfo {
	return SessionInfo{ID: s.id, UID: s.uid, User: s.user, Portal: s.portal, Method: s.method, Started: s.started, Expires: s.deadline()}
}

// maxPortalSessions bounds the portal sessions of one uid (browsers signed in at once); a
// further sign-in replaces the oldest.
const maxPortalSessions = 8

// holder is everything one uid is logged in with: at most one command-line session, up to
// maxPortalSessions portal sessions, and the keyring they share.
type holder struct {
	user     string
	ring     *Keyring
	sessions []*session
}

// setUntil makes the keyring answer until the latest deadline of h's sessions.
// Sessions.mu must be held.
func (h *holder) setUntil() {
	var until time.Time
	for _, s := range h.sessions {
		if d := s.deadline(); d.After(until) {
			until = d
		}
	}
	h.ring.until.Store(until.UnixNano())
}

// Sessions are the live login sessions, held only in memory. A uid may hold one session
// started with dsh login and, beside it, the sessions of its portal sign-ins; each keeps
// its own lifetime and ends on its own (a web sign-out never ends the command line's
// session), while all of them share the uid's one Keyring.
type Sessions struct {
	keys Keys
	aud  Auditor
	met  *metrics.Metrics
	now  func() time.Time

	lastID atomic.Uint64

	mu    sync.RWMutex
	byUID map[int]*holder

	// onEnd is called after sessions ended or lost keys (OnAccessEnd).
	onEnd atomic.Pointer[func()]
}

// OnAccessEnd registers fn, called after sessions end (logout, web sign-out, a disabled
// user, the expiry sweep, sealing) or lose a share's key (removal): whoever holds data
// decrypted for a session (the filesystem's open files) drops what nobody may read any
// more. fn is called with no lock of Sessions held and may call back into it. An expiry
// found by a lookup (Keyring, on every filesystem operation) is left to the next sweep, so
// that fn never runs on the filesystem's hot path.
func (s *Sessions) OnAccessEnd(fn func()) { s.onEnd.Store(&fn) }

// notify calls the OnAccessEnd function if ended, and returns ended.
func (s *Sessions) notify(ended bool) bool {
	if fn := s.onEnd.Load(); ended && fn != nil {
		(*fn)()
	}
	return ended
}

func newSessions(keys Keys, aud Auditor, met *metrics.Metrics, now func() time.Time) *Sessions {
	return &Sessions{keys: keys, aud: aud, met: met, now: now, byUID: make(map[int]*holder)}
}

// newSession makes a session of user on uid starting now, with the lifetimes opts gives
// its channel. It is not live until install.
func (s *Sessions) newSession(uid int, user string, m metrics.Method, portal bool, now time.Time, opts Options) *session {
	sess := &session{id: s.lastID.Add(1), uid: uid, user: user, portal: portal, method: m, started: now, seen: now,
		expires: now.Add(opts.SessionTTL)}
	if portal {
		sess.expires = now.Add(min(opts.SessionTTL, opts.PortalLifetime))
		sess.idle = opts.PortalIdle
	}
	return sess
}

// buildKeyring unwraps the keys of the user's current shares and Arrivals. On any failure
// it wipes what it already holds, so a half-built keyring never outlives the call.
func (s *Sessions) buildKeyring(ctx context.Context, uid int, user string) (*Keyring, error) {
	r := &Keyring{now: s.now, shares: make(map[string]*vault.Key)}
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

// install makes sess live. If its uid already holds a live keyring of the same user, sess
// joins it (and ring, built for the login, is wiped); otherwise ring becomes the uid's
// keyring. A command-line session replaces the uid's earlier command-line session; a portal
// session replaces only the oldest portal session when the uid has maxPortalSessions.
func (s *Sessions) install(ctx context.Context, sess *session, ring *Keyring) {
	var replaced []*session
	var oldRing *Keyring
	s.mu.Lock()
	h := s.byUID[sess.uid]
	if h != nil && (h.user != sess.user || !h.ringLive(s.now())) {
		// Another user on this uid (an account re-created), or nothing live: start over.
		replaced, oldRing = h.sessions, h.ring
		h = nil
	}
	if h == nil {
		h = &holder{user: sess.user, ring: ring}
		s.byUID[sess.uid] = h
		ring = nil
	} else {
		portals := 0
		for _, o := range h.sessions {
			if o.portal {
				portals++
			}
		}
		keep := h.sessions[:0:0]
		for _, o := range h.sessions {
			switch {
			case !sess.portal && !o.portal:
				replaced = append(replaced, o)
			case sess.portal && o.portal && portals >= maxPortalSessions:
				replaced = append(replaced, o) // the oldest: sessions are in start order
				portals = -1
			default:
				keep = append(keep, o)
			}
		}
		h.sessions = keep
	}
	h.sessions = append(h.sessions, sess)
	h.setUntil()
	s.mu.Unlock()

	if ring != nil {
		ring.wipeAll()
	}
	if oldRing != nil {
		oldRing.wipeAll()
	}
	if s.met != nil {
		s.met.SessionsActive.Inc()
	}
	s.finish(ctx, replaced, "replaced")
}

// ringLive reports whether h's keyring may answer at now. Sessions.mu must be held.
func (h *holder) ringLive(now time.Time) bool {
	return now.UnixNano() < h.ring.until.Load()
}

// remove takes the sessions of uid that end says should end out of the table; when none is
// left, the uid's keyring stops answering at once and is returned for the caller to wipe
// outside the lock.
func (s *Sessions) remove(uid int, end func(*session) bool) (ended []*session, ring *Keyring) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.byUID[uid]
	if h == nil {
		return nil, nil
	}
	keep := h.sessions[:0:0]
	for _, o := range h.sessions {
		if end(o) {
			ended = append(ended, o)
		} else {
			keep = append(keep, o)
		}
	}
	h.sessions = keep
	if len(keep) == 0 {
		delete(s.byUID, uid)
		h.ring.until.Store(0)
		return ended, h.ring
	}
	h.setUntil()
	return ended, nil
}

// end removes the sessions of uid that match, wipes the keyring if none is left and records
// each end; it reports whether any session ended.
func (s *Sessions) end(ctx context.Context, uid int, reason string, match func(*session) bool) bool {
	ended, ring := s.remove(uid, match)
	if ring != nil {
		ring.wipeAll()
	}
	s.finish(ctx, ended, reason)
	return len(ended) > 0
}

// finish counts and records ended sessions; the caller has already removed them from the
// table, so each session is finished once.
func (s *Sessions) finish(ctx context.Context, ended []*session, reason string) {
	for _, sess := range ended {
		if s.met != nil {
			s.met.SessionsActive.Dec()
		}
		// The session is gone whether or not the record lands; an audit failure is the
		// audit log's to report, and keeping keys alive because of it would be worse.
		_, _ = s.aud.Append(ctx, audit.Entry{
			UID: int64(sess.uid), User: sess.user, Action: "token.session.end",
			Result: "ok", Detail: reason + "; " + sess.describe(),
		}, audit.Buffered)
	}
}

// expire ends the sessions of uid whose deadline has passed.
func (s *Sessions) expire(ctx context.Context, uid int) {
	now := s.now()
	s.end(ctx, uid, "expired", func(o *session) bool { return !now.Before(o.deadline()) })
}

// Keyring returns the keyring of uid's live sessions. This is the one call the filesystem
// makes, on every operation: a map lookup under a shared lock and a clock read.
func (s *Sessions) Keyring(uid int) (*Keyring, bool) {
	s.mu.RLock()
	h := s.byUID[uid]
	s.mu.RUnlock()
	if h == nil {
		return nil, false
	}
	if s.now().UnixNano() < h.ring.until.Load() {
		return h.ring, true
	}
	s.expire(context.Background(), uid)
	return nil, false
}

// Active reports the user of uid's live sessions and the latest time one of them ends
// (unless used again).
func (s *Sessions) Active(uid int) (user string, expires time.Time, ok bool) {
	now := s.now()
	s.mu.RLock()
	h := s.byUID[uid]
	if h != nil && now.UnixNano() < h.ring.until.Load() {
		user, expires, ok = h.user, time.Unix(0, h.ring.until.Load()), true
	}
	s.mu.RUnlock()
	if h != nil && !ok {
		s.expire(context.Background(), uid)
	}
	return user, expires, ok
}

// List describes uid's live sessions, oldest first.
func (s *Sessions) List(uid int) []SessionInfo {
	now := s.now()
	s.mu.RLock()
	var out []SessionInfo
	if h := s.byUID[uid]; h != nil {
		for _, o := range h.sessions {
			if now.Before(o.deadline()) {
				out = append(out, o.info())
			}
		}
	}
	s.mu.RUnlock()
	return out
}

// info describes one live session of uid.
func (s *Sessions) info(uid int, id uint64) (SessionInfo, bool) {
	for _, i := range s.List(uid) {
		if i.ID == id {
			return i, true
		}
	}
	return SessionInfo{}, false
}

// Touch marks session id of uid as used now, which moves a portal session's idle deadline;
// it reports false when that session has ended (then nothing is moved). The portal calls it
// on every request of the sign-in that started the session.
func (s *Sessions) Touch(uid int, id uint64) bool {
	now := s.now()
	s.mu.Lock()
	h := s.byUID[uid]
	var sess *session
	if h != nil {
		for _, o := range h.sessions {
			if o.id == id {
				sess = o
			}
		}
	}
	alive := sess != nil && now.Before(sess.deadline())
	if alive {
		sess.seen = now
		h.setUntil()
	}
	s.mu.Unlock()
	if sess != nil && !alive {
		s.expire(context.Background(), uid)
	}
	return alive
}

// End ends session id of uid; it reports whether it was live.
func (s *Sessions) End(ctx context.Context, uid int, id uint64, reason string) bool {
	return s.notify(s.end(ctx, uid, reason, func(o *session) bool { return o.id == id }))
}

// Logout ends every session of uid, from the command line and the portal alike (dsh
// logout closes the drives); it reports whether there was one.
func (s *Sessions) Logout(ctx context.Context, uid int) bool {
	return s.notify(s.end(ctx, uid, "logout", func(*session) bool { return true }))
}

// EndPortal ends the portal sessions of uid (a web sign-out), leaving a session started
// with dsh login alone; it reports whether there was one.
func (s *Sessions) EndPortal(ctx context.Context, uid int) bool {
	return s.notify(s.end(ctx, uid, "portal sign-out", func(o *session) bool { return o.portal }))
}

// uidsOf returns the uids whose sessions are user's (normally at most one).
func (s *Sessions) uidsOf(user string) []int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []int
	for uid, h := range s.byUID {
		if h.user == user {
			out = append(out, uid)
		}
	}
	return out
}

// ringsOf returns the keyrings of user's sessions.
func (s *Sessions) ringsOf(user string) []*Keyring {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Keyring
	for _, h := range s.byUID {
		if h.user == user {
			out = append(out, h.ring)
		}
	}
	return out
}

// EndUser ends every session of user, as when the account is disabled.
func (s *Sessions) EndUser(ctx context.Context, user string) {
	ended := false
	for _, uid := range s.uidsOf(user) {
		ended = s.end(ctx, uid, "user ended", func(o *session) bool { return o.user == user }) || ended
	}
	s.notify(ended)
}

// EndAll ends every session, as when the vault is sealed.
func (s *Sessions) EndAll(ctx context.Context) {
	s.mu.Lock()
	all := s.byUID
	s.byUID = make(map[int]*holder)
	for _, h := range all {
		h.ring.until.Store(0)
	}
	s.mu.Unlock()
	uids := make([]int, 0, len(all))
	for uid := range all {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	for _, uid := range uids {
		h := all[uid]
		h.ring.wipeAll()
		s.finish(ctx, h.sessions, "all ended")
	}
	s.notify(len(uids) > 0)
}

// Sweep ends every session whose deadline has passed, so that keys are wiped even when
// nobody asks for them; the daemon calls it periodically.
func (s *Sessions) Sweep(ctx context.Context) {
	now := s.now()
	s.mu.RLock()
	var due []int
	for uid, h := range s.byUID {
		for _, o := range h.sessions {
			if !now.Before(o.deadline()) {
				due = append(due, uid)
				break
			}
		}
	}
	s.mu.RUnlock()
	for _, uid := range due {
		s.expire(ctx, uid)
	}
	s.notify(len(due) > 0)
}

// GrantShare adds the key of share to the keyring of user's live sessions at once, after
// the daemon added the user to the share. Without a session there is nothing to do.
func (s *Sessions) GrantShare(ctx context.Context, user, share string) error {
	for _, uid := range s.uidsOf(user) {
		if err := s.grant(ctx, uid, user, share); err != nil {
			return err
		}
	}
	return nil
}

// grant adds the key of share to the keyring of uid, if it is still user's.
func (s *Sessions) grant(ctx context.Context, uid int, user, share string) error {
	s.mu.RLock()
	h := s.byUID[uid]
	s.mu.RUnlock()
	if h == nil || h.user != user {
		return nil
	}
	k, err := s.keys.ShareKey(ctx, share)
	if err != nil {
		return fmt.Errorf("token: grant share %q: %w", share, err)
	}
	r := h.ring
	r.mu.Lock()
	// An existing entry is kept, since the filesystem may be using its pointer. The
	// membership is checked again under the keyring's lock: a removal that committed since
	// the caller's addition has run (or will run) RevokeShare, which must win.
	if _, dup := r.shares[share]; r.closed || dup || !s.isMember(uid, share) {
		k.Wipe()
	} else {
		r.shares[share] = lockedKey(&k)
	}
	r.mu.Unlock()
	return nil
}

// RevokeShare wipes the key of share from the keyring of user's live sessions at once,
// after the daemon removed the user from the share.
func (s *Sessions) RevokeShare(user, share string) {
	revoked := false
	for _, r := range s.ringsOf(user) {
		r.mu.Lock()
		if k, ok := r.shares[share]; ok {
			dropKey(k)
			delete(r.shares, share)
			revoked = true
		}
		r.mu.Unlock()
	}
	s.notify(revoked)
}

// reconcile makes the keyring of uid hold exactly the keys of the shares uid belongs to
// now. Login calls it after installing a session: a membership change committed while the
// keyring was built called GrantShare or RevokeShare before the session existed.
func (s *Sessions) reconcile(ctx context.Context, uid int, user string) error {
	s.mu.RLock()
	h := s.byUID[uid]
	s.mu.RUnlock()
	if h == nil || h.user != user {
		return nil
	}
	want := make(map[string]bool)
	for _, share := range s.keys.SharesOf(uid) {
		want[share] = true
	}
	r := h.ring
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
		if err := s.grant(ctx, uid, user, name); err != nil {
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
