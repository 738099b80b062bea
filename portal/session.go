package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Cookie names. The __Host- prefix makes the browser refuse them unless they are Secure,
// set by this host itself and scoped to the whole site, so a neighbour cannot plant one.
const (
	sessionCookie = "__Host-dsh-session"
	// preCookie carries the CSRF token of the forms shown before sign-in (sign-in, ICE).
	preCookie = "__Host-dsh-pre"
)

// Lifetimes of a portal sign-in: it ends after IdleTimeout without a request, after
// MaxLifetime in any case, and whenever the dsh session it started ends. The daemon gives
// that session the same two limits (token.Options.PortalIdle, PortalLifetime), so it ends
// by itself when the sign-in does, and never replaces or outlives a dsh login's session.
const (
	IdleTimeout = 15 * time.Minute
	MaxLifetime = time.Hour
)

// flash is a one-shot message shown on the next page after a form was handled.
type flash struct {
	OK  bool
	Msg string
}

// websession is one browser's sign-in. The browser holds a random token; the server keeps
// only its SHA-256, so a memory dump of the map does not give working cookies.
type websession struct {
	user    string
	uid     int
	csrf    string
	created time.Time
	// sid names the dsh session the sign-in started (SessionView.Current): when it ends,
	// the sign-in ends too.
	sid uint64

	mu    sync.Mutex
	seen  time.Time
	dead  bool // timed out: good for its sign-out only
	flash *flash
}

// takeFlash returns the pending message and clears it.
func (s *websession) takeFlash() *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

func (s *websession) setFlash(ok bool, msg string) {
	s.mu.Lock()
	s.flash = &flash{OK: ok, Msg: msg}
	s.mu.Unlock()
}

// sessions are the signed-in browsers, keyed by the hash of their cookie.
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]*websession
	now func() time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{m: make(map[[32]byte]*websession), now: now}
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// start records a new sign-in bound to dsh session sid and returns the cookie value for it.
func (ss *sessions) start(user string, uid int, sid uint64) string {
	tok := randomToken()
	now := ss.now()
	s := &websession{user: user, uid: uid, csrf: randomToken(), created: now, seen: now, sid: sid}
	ss.mu.Lock()
	ss.m[sha256.Sum256([]byte(tok))] = s
	ss.mu.Unlock()
	return tok
}

// lookup returns the live sign-in of a cookie value and marks it used. A timed-out
// sign-in is kept (see peek) but never live again.
func (ss *sessions) lookup(tok string) (*websession, bool) {
	if tok == "" {
		return nil, false
	}
	h := sha256.Sum256([]byte(tok))
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[h]
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timedOut(now) {
		return nil, false
	}
	s.seen = now
	return s, true
}

// timedOut reports whether the sign-in ended by its own timeouts, for good (a clock set
// back does not revive it); s.mu must be held.
func (s *websession) timedOut(now time.Time) bool {
	if now.Sub(s.seen) > IdleTimeout || now.Sub(s.created) > MaxLifetime {
		s.dead = true
	}
	return s.dead
}

// peek returns the sign-in of a cookie value even when it has timed out (until the sweep
// forgets it): signing out from a page left open must still work.
func (ss *sessions) peek(tok string) (*websession, bool) {
	if tok == "" {
		return nil, false
	}
	h := sha256.Sum256([]byte(tok))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[h]
	return s, ok
}

// endAll forgets every sign-in (the store was sealed).
func (ss *sessions) endAll() {
	ss.mu.Lock()
	clear(ss.m)
	ss.mu.Unlock()
}

// end forgets the sign-in of a cookie value.
func (ss *sessions) end(tok string) {
	h := sha256.Sum256([]byte(tok))
	ss.mu.Lock()
	delete(ss.m, h)
	ss.mu.Unlock()
}

// endUser forgets every sign-in of user (their dsh session ended).
func (ss *sessions) endUser(user string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for h, s := range ss.m {
		if s.user == user {
			delete(ss.m, h)
		}
	}
}

// sweep forgets sign-ins past their maximum lifetime, so abandoned ones do not pile up (a
// timed-out one stays until then, for its sign-out; its dsh session has ended by itself).
func (ss *sessions) sweep() {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for h, s := range ss.m {
		if now.Sub(s.created) > MaxLifetime {
			delete(ss.m, h)
		}
	}
}

// sameToken compares two CSRF tokens in constant time; an empty one never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// setCookie sets a Secure, HttpOnly, SameSite=Strict cookie for the whole site; maxAge 0
// makes it a browser-session cookie, a negative one deletes it.
func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}
