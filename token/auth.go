package token

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/metrics"
)

// Reason classes written to the audit log's Detail. They say why, never with what.
const (
	reasonBadCredentials = "bad credentials"
	reasonReplay         = "code replayed"
	reasonUIDMismatch    = "uid does not match user"
	reasonUnknownUser    = "no such user"
	reasonDisabled       = "account disabled"
	reasonNotEnrolled    = "not enrolled"
	reasonLocked         = "account locked"
	reasonInvalid        = "invalid input"
	reasonError          = "internal error"
	reasonNoSession      = "no session"
	reasonBusy           = "busy"
)

// record appends one audit entry. Details are reason classes, never secrets.
func (s *Service) record(ctx context.Context, uid int, user, action, object, result, detail string, d audit.Durability) error {
	_, err := s.aud.Append(ctx, audit.Entry{
		UID: int64(uid), User: user, Action: action, Object: object, Result: result, Detail: detail,
	}, d)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// refuse audits a refusal (buffered: it grants nothing) and returns err unchanged. A
// failing audit log does not turn a refusal into anything else.
func (s *Service) refuse(ctx context.Context, uid int, user, action, detail string, err error) error {
	result := "denied"
	if detail == reasonError {
		result = "error"
	}
	_ = s.record(ctx, uid, user, action, "", result, detail, audit.Buffered)
	return err
}

func (s *Service) countLogin(m metrics.Method, r metrics.Result) {
	if s.met != nil {
		s.met.Login(m, r)
	}
}

// resolve finds the user a caller on peerUID acts as. A given user ID must belong to
// peerUID: one local user cannot try another's credentials, nor lock them out.
func (s *Service) resolve(peerUID int, userID string) (string, string, error) {
	if userID != "" {
		uid, active, ok := s.dir.UserByID(userID)
		switch {
		case !ok:
			return userID, reasonUnknownUser, ErrUnauthorized
		case uid != peerUID:
			return userID, reasonUIDMismatch, ErrUnauthorized
		case !active:
			return userID, reasonDisabled, fmt.Errorf("%w: account is disabled", ErrForbidden)
		}
		return userID, "", nil
	}
	id, active, ok := s.dir.UserByUID(peerUID)
	switch {
	case !ok:
		return "", reasonUnknownUser, ErrUnauthorized
	case !active:
		return id, reasonDisabled, fmt.Errorf("%w: account is disabled", ErrForbidden)
	}
	return id, "", nil
}

// loadUser reads a user's credentials and tokens in one snapshot.
func (s *Service) loadUser(ctx context.Context, user string) (rec userRecord, toks []tokenRecord, found bool, err error) {
	err = s.st.View(ctx, func(tx kv.Txn) error {
		found, err = getJSON(tx, userKey(user), &rec)
		if err != nil || !found {
			return err
		}
		toks, err = listTokens(tx, user)
		return err
	})
	return rec, toks, found, err
}

// failed refuses after a check could not be made: the memory budget was exhausted (busy),
// or the store or a sealed secret failed.
func (s *Service) failed(ctx context.Context, uid int, user, action string, err error) error {
	detail := reasonError
	if errors.Is(err, ErrBusy) {
		detail = reasonBusy
	}
	return s.refuse(ctx, uid, user, action, detail, fmt.Errorf("token: %s: %w", action, err))
}

// factors are what a caller presents. For a token login pin and code are set; for an
// ICE login emergency is set.
type factors struct {
	password  []byte
	pin       []byte
	code      string
	emergency string
	ice       bool
}

func (f factors) check() error {
	if f.ice {
		if !digits(f.emergency, 8) {
			return fmt.Errorf("%w: the emergency code has 8 digits", ErrInvalid)
		}
		return nil
	}
	if err := checkPIN(f.pin); err != nil {
		return err
	}
	if !digits(f.code, int(totpDigits)) && !digits(f.code, 7) && !digits(f.code, 8) {
		return fmt.Errorf("%w: the code has 6 digits (8 on some hardware tokens)", ErrInvalid)
	}
	return nil
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// authenticated is who passed, and with which token.
type authenticated struct {
	user    string
	tokenID string
}

// checked is what checkFactors found.
type checked struct {
	passOK, secondOK bool
	tokenID          string // the token whose code matched
	step             int64  // the TOTP step or HOTP counter it matched
}

// checkFactors checks the factors in f against rec and toks, the stored credentials of
// user, or against the decoys when rec is nil (an unknown user, another uid's user, an
// account without credentials). Every path does the same Argon2id work: one hash with the
// password parameters and one with the short ones. The code picks the token (a cheap HMAC
// per token), so only that token's PIN is hashed, however many tokens the user has; with
// no token matching, the PIN is checked against the decoy.
func (s *Service) checkFactors(ctx context.Context, user string, rec *userRecord, toks []tokenRecord, f factors, now time.Time) (checked, error) {
	var c checked
	ph := s.decoy
	if rec != nil {
		ph = rec.Password
	}
	ok, err := s.verify(ctx, ph, f.password)
	if err != nil {
		return c, err
	}
	c.passOK = ok
	sh, valid := s.decoyShort, false
	second := f.pin
	if f.ice {
		second = []byte(f.emergency)
		defer wipe(second)
		if rec != nil && rec.ICE != nil {
			sh, valid = rec.ICE.Code, now.Before(rec.ICE.Expires)
		}
	} else {
		for i := range toks {
			if !toks[i].usable() {
				continue // a hardware token whose owner has not set its PIN yet
			}
			secret, err := s.sealer.Open(toks[i].Secret, sealContext(user, toks[i].ID))
			if err != nil {
				return c, fmt.Errorf("open token secret: %w", err)
			}
			st, ok := toks[i].match(string(secret), f.code, now, s.opts.HOTPWindow)
			wipe(secret)
			if ok && !valid {
				sh, valid, c.tokenID, c.step = toks[i].PIN, true, toks[i].ID, st
			}
		}
	}
	ok, err = s.verify(ctx, sh, second)
	if err != nil {
		return c, err
	}
	c.secondOK = ok && valid
	return c, nil
}

// authenticate checks all factors of the user of peerUID (userID, if given, must be that
// user), then settles the outcome atomically: on success the TOTP step (or emergency code)
// is consumed and the failure count reset; on failure the command line's count rises and
// may lock the account, and the portal's throttles slow their caller down. The expensive
// hashing happens outside the transaction, which may run more than once; inside it only
// cheap re-checks are made, so two racing logins with one code cannot both succeed.
func (s *Service) authenticate(ctx context.Context, peerUID int, userID string, f factors, action string) (authenticated, error) {
	if err := s.throttled(ctx, peerUID, userID, action); err != nil {
		return authenticated{}, err
	}
	a, err := s.authenticateOnce(ctx, peerUID, userID, f, action)
	s.throttleOutcome(ctx, peerUID, userID, err)
	return a, err
}

func (s *Service) authenticateOnce(ctx context.Context, peerUID int, userID string, f factors, action string) (authenticated, error) {
	user, reason, rerr := s.resolve(peerUID, userID)
	var rec *userRecord
	var toks []tokenRecord
	if rerr == nil {
		r, t, found, err := s.loadUser(ctx, user)
		if err != nil {
			return authenticated{}, s.failed(ctx, peerUID, user, action, err)
		}
		if found {
			rec, toks = &r, t
		} else {
			reason, rerr = reasonNotEnrolled, ErrUnauthorized
		}
	}
	now := s.now()
	// The check runs before any refusal is decided, on every path: the answer's timing
	// says nothing about whether the user exists, is the caller's, is locked or has tokens.
	c, err := s.checkFactors(ctx, user, rec, toks, f, now)
	if err != nil {
		return authenticated{}, s.failed(ctx, peerUID, user, action, err)
	}
	if rerr != nil {
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reason, fmt.Errorf("token: %s: %w", action, rerr))
	}
	if now.Before(rec.LockedUntil) {
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: %s: %w", action, &LockedError{Until: rec.LockedUntil}))
	}
	replay := false
	v, err := s.settle(ctx, user, now, c.passOK && c.secondOK, func(tx kv.Txn, cur *userRecord) (bool, error) {
		replay = false
		if subtle.ConstantTimeCompare(cur.Password.Hash, rec.Password.Hash) != 1 {
			return false, nil // the password changed since it was checked
		}
		if f.ice {
			// The code is spent by this transaction; a racing one finds it gone.
			if cur.ICE == nil || rec.ICE == nil || subtle.ConstantTimeCompare(cur.ICE.Code.Hash, rec.ICE.Code.Hash) != 1 {
				return false, nil
			}
			cur.ICE = nil
			return true, nil
		}
		var t tokenRecord
		found, err := getJSON(tx, tokenKey(user, c.tokenID), &t)
		if err != nil {
			return false, err
		}
		if !found || !t.accept(c.step, now) {
			replay = found
			return false, nil
		}
		return true, putJSON(tx, tokenKey(user, c.tokenID), &t)
	})
	var le *LockedError
	switch {
	case errors.As(err, &le):
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: %s: %w", action, err))
	case errors.Is(err, ErrUnauthorized):
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonNotEnrolled, fmt.Errorf("token: %s: %w", action, err))
	case err != nil:
		return authenticated{}, s.failed(ctx, peerUID, user, action, err)
	}
	if !v.granted {
		if v.lockedNow {
			s.lockedOut(ctx, peerUID, user, v.until)
		}
		detail := reasonBadCredentials
		if replay {
			detail = reasonReplay
		}
		return authenticated{}, s.refuse(ctx, peerUID, user, action, detail, fmt.Errorf("token: %s: %w", action, ErrUnauthorized))
	}
	return authenticated{user: user, tokenID: c.tokenID}, nil
}

// Login checks password, PIN and TOTP code for the user of peerUID (userID, if given, must
// be that user) and starts a session holding the user's keys. On the command line (the
// default Origin) it replaces any earlier command-line session of peerUID; on the portal
// it starts a portal session beside it (see Sessions). It returns the new session.
func (s *Service) Login(ctx context.Context, peerUID int, userID string, password, pin []byte, code string) (SessionInfo, error) {
	return s.login(ctx, peerUID, userID, factors{password: password, pin: pin, code: code}, metrics.MethodToken)
}

// LoginICE is Login with an emergency code instead of PIN and TOTP code. The code is
// spent by a successful login.
func (s *Service) LoginICE(ctx context.Context, peerUID int, userID string, password []byte, emergencyCode string) (SessionInfo, error) {
	return s.login(ctx, peerUID, userID, factors{password: password, emergency: emergencyCode, ice: true}, metrics.MethodICE)
}

// loginResult is the metric result of a failed login.
func loginResult(err error) metrics.Result {
	switch {
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrLocked), errors.Is(err, ErrForbidden), errors.Is(err, ErrThrottled):
		return metrics.ResultDenied
	}
	return metrics.ResultError
}

func (s *Service) login(ctx context.Context, peerUID int, userID string, f factors, m metrics.Method) (SessionInfo, error) {
	action := "token.login." + string(m)
	// Malformed input is refused before any check, so a typo does not count towards
	// lockout; saying so reveals nothing about the stored credentials.
	if err := f.check(); err != nil {
		s.countLogin(m, metrics.ResultDenied)
		return SessionInfo{}, s.refuse(ctx, peerUID, userID, action, reasonInvalid, fmt.Errorf("token: login: %w", err))
	}
	a, err := s.authenticate(ctx, peerUID, userID, f, action)
	if err != nil {
		s.countLogin(m, loginResult(err))
		return SessionInfo{}, err
	}
	sess := s.sessions.newSession(peerUID, a.user, m, originOf(ctx).Portal, s.now(), s.opts)
	ring, err := s.sessions.buildKeyring(ctx, peerUID, a.user)
	if err != nil {
		s.countLogin(m, metrics.ResultError)
		return SessionInfo{}, s.refuse(ctx, peerUID, a.user, action, reasonError, fmt.Errorf("token: login: %w", err))
	}
	// Fail closed: no access is granted that the audit log does not hold.
	if err := s.record(ctx, peerUID, a.user, action, a.tokenID, "ok", sess.describe(), audit.Durable); err != nil {
		ring.wipeAll()
		s.countLogin(m, metrics.ResultError)
		return SessionInfo{}, fmt.Errorf("token: login refused: %w", err)
	}
	s.sessions.install(ctx, sess, ring)
	// A disable or a membership change that committed while the keyring was being built
	// found no session to adjust; catch up with the state as it is now, so that nothing
	// revoked before this point survives in the new session.
	if _, active, ok := s.dir.UserByUID(peerUID); !ok || !active {
		s.sessions.End(ctx, peerUID, sess.id, "user ended")
		s.countLogin(m, metrics.ResultDenied)
		return SessionInfo{}, fmt.Errorf("token: login: %w: account is disabled", ErrForbidden)
	}
	if err := s.sessions.reconcile(ctx, peerUID, a.user); err != nil {
		s.sessions.End(ctx, peerUID, sess.id, "keyring error")
		s.countLogin(m, metrics.ResultError)
		return SessionInfo{}, fmt.Errorf("token: login: %w", err)
	}
	s.countLogin(m, metrics.ResultOK)
	info, ok := s.sessions.info(peerUID, sess.id)
	if !ok {
		// Ended already (a logout or seal raced with the login).
		return SessionInfo{}, fmt.Errorf("token: login: %w: the session ended at once", ErrForbidden)
	}
	return info, nil
}
