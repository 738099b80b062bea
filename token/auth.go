package token

import (
	"context"
	"crypto/rand"
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

// addFailure counts one failed attempt and locks the account when the limit is reached;
// it reports whether this failure locked it. The count restarts after a lock, so the
// next lock again takes MaxFailures attempts.
func (s *Service) addFailure(rec *userRecord, now time.Time) bool {
	rec.Failures++
	if rec.Failures < s.opts.MaxFailures {
		return false
	}
	rec.Failures = 0
	rec.LockedUntil = now.Add(s.opts.Lockout)
	return true
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
	if !digits(f.code, int(totpDigits)) {
		return fmt.Errorf("%w: the code has %d digits", ErrInvalid, int(totpDigits))
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

// authenticate checks all factors, then commits the outcome atomically: on success the
// TOTP step (or emergency code) is consumed and the failure count reset; on failure the
// count rises and may lock the account. The expensive hashing happens outside the
// transaction, which may run more than once; inside it only cheap re-checks are made, so
// two racing logins with one code cannot both succeed.
func (s *Service) authenticate(ctx context.Context, peerUID int, userID string, f factors, action string) (authenticated, error) {
	user, reason, err := s.resolve(peerUID, userID)
	if err != nil {
		if reason == reasonUnknownUser {
			s.checkDecoy(f.password)
		}
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reason, fmt.Errorf("token: %s: %w", action, err))
	}
	rec, toks, found, err := s.loadUser(ctx, user)
	if err != nil {
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonError, fmt.Errorf("token: %s: %w", action, err))
	}
	if !found {
		s.checkDecoy(f.password)
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonNotEnrolled, fmt.Errorf("token: %s: %w", action, ErrUnauthorized))
	}
	now := s.now()
	if now.Before(rec.LockedUntil) {
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: %s: %w", action, &LockedError{Until: rec.LockedUntil}))
	}

	passOK := rec.Password.matches(f.password)
	var tokID string
	var matched int64
	secondOK := false
	if f.ice {
		secondOK = rec.ICE != nil && now.Before(rec.ICE.Expires) && rec.ICE.Code.matches([]byte(f.emergency))
	} else {
		for i := range toks {
			if !toks[i].PIN.matches(f.pin) {
				continue
			}
			secret, err := s.sealer.Open(toks[i].Secret, sealContext(user, toks[i].ID))
			if err != nil {
				return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonError, fmt.Errorf("token: %s: open token secret: %w", action, err))
			}
			st, ok := matchStep(string(secret), f.code, now)
			wipe(secret)
			if ok {
				tokID, matched, secondOK = toks[i].ID, st, true
				break
			}
		}
	}

	var granted, locked, replay bool
	var lockedUntil time.Time
	ok := passOK && secondOK
	err = s.st.Update(ctx, func(tx kv.Txn) error {
		granted, locked, replay = false, false, false
		var cur userRecord
		if found, err := getJSON(tx, userKey(user), &cur); err != nil {
			return err
		} else if !found {
			return ErrUnauthorized
		}
		if now.Before(cur.LockedUntil) {
			lockedUntil = cur.LockedUntil
			return &LockedError{Until: cur.LockedUntil}
		}
		good := ok && subtle.ConstantTimeCompare(cur.Password.Hash, rec.Password.Hash) == 1
		if good && f.ice {
			// The code is spent by this transaction; a racing one finds it gone.
			good = cur.ICE != nil && rec.ICE != nil && subtle.ConstantTimeCompare(cur.ICE.Code.Hash, rec.ICE.Code.Hash) == 1
			if good {
				cur.ICE = nil
			}
		}
		if good && !f.ice {
			var t tokenRecord
			found, err := getJSON(tx, tokenKey(user, tokID), &t)
			if err != nil {
				return err
			}
			if !found || matched <= t.LastStep {
				good, replay = false, found
			} else {
				t.LastStep, t.LastUsed = matched, now
				if err := putJSON(tx, tokenKey(user, tokID), &t); err != nil {
					return err
				}
			}
		}
		if good {
			cur.Failures, cur.LockedUntil = 0, time.Time{}
		} else {
			locked = s.addFailure(&cur, now)
			lockedUntil = cur.LockedUntil
		}
		granted = good
		return putJSON(tx, userKey(user), &cur)
	})
	var le *LockedError
	switch {
	case errors.As(err, &le):
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: %s: %w", action, err))
	case errors.Is(err, ErrUnauthorized):
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonNotEnrolled, fmt.Errorf("token: %s: %w", action, err))
	case err != nil:
		return authenticated{}, s.refuse(ctx, peerUID, user, action, reasonError, fmt.Errorf("token: %s: %w", action, err))
	}
	if !granted {
		if locked {
			s.lockedOut(ctx, peerUID, user, lockedUntil)
		}
		detail := reasonBadCredentials
		if replay {
			detail = reasonReplay
		}
		return authenticated{}, s.refuse(ctx, peerUID, user, action, detail, fmt.Errorf("token: %s: %w", action, ErrUnauthorized))
	}
	return authenticated{user: user, tokenID: tokID}, nil
}

// Login checks password, PIN and TOTP code for the user of peerUID (userID, if given,
// must be that user) and starts a session holding the user's keys, replacing any earlier
// session of peerUID. It returns when the session expires.
func (s *Service) Login(ctx context.Context, peerUID int, userID string, password, pin []byte, code string) (time.Time, error) {
	return s.login(ctx, peerUID, userID, factors{password: password, pin: pin, code: code}, metrics.MethodToken)
}

// LoginICE is Login with an emergency code instead of PIN and TOTP code. The code is
// spent by a successful login.
func (s *Service) LoginICE(ctx context.Context, peerUID int, userID string, password []byte, emergencyCode string) (time.Time, error) {
	return s.login(ctx, peerUID, userID, factors{password: password, emergency: emergencyCode, ice: true}, metrics.MethodICE)
}

func (s *Service) login(ctx context.Context, peerUID int, userID string, f factors, m metrics.Method) (time.Time, error) {
	action := "token.login." + string(m)
	// Malformed input is refused before any check, so a typo does not count towards
	// lockout; saying so reveals nothing about the stored credentials.
	if err := f.check(); err != nil {
		s.countLogin(m, metrics.ResultDenied)
		return time.Time{}, s.refuse(ctx, peerUID, userID, action, reasonInvalid, fmt.Errorf("token: login: %w", err))
	}
	a, err := s.authenticate(ctx, peerUID, userID, f, action)
	if err != nil {
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrLocked) || errors.Is(err, ErrForbidden) {
			s.countLogin(m, metrics.ResultDenied)
		} else {
			s.countLogin(m, metrics.ResultError)
		}
		return time.Time{}, err
	}
	expires := s.now().Add(s.opts.SessionTTL)
	ring, err := s.sessions.buildKeyring(ctx, peerUID, a.user, expires)
	if err != nil {
		s.countLogin(m, metrics.ResultError)
		return time.Time{}, s.refuse(ctx, peerUID, a.user, action, reasonError, fmt.Errorf("token: login: %w", err))
	}
	// Fail closed: no access is granted that the audit log does not hold.
	if err := s.record(ctx, peerUID, a.user, action, a.tokenID, "ok", "", audit.Durable); err != nil {
		ring.wipeAll()
		s.countLogin(m, metrics.ResultError)
		return time.Time{}, fmt.Errorf("token: login refused: %w", err)
	}
	sess := &session{uid: peerUID, user: a.user, method: m, expires: expires, ring: ring}
	s.sessions.install(ctx, sess)
	// A disable or a membership change that committed while the keyring was being built
	// found no session to adjust; catch up with the state as it is now, so that nothing
	// revoked before this point survives in the new session.
	if _, active, ok := s.dir.UserByUID(peerUID); !ok || !active {
		s.sessions.endIf(ctx, peerUID, sess, "user ended")
		s.countLogin(m, metrics.ResultDenied)
		return time.Time{}, fmt.Errorf("token: login: %w: account is disabled", ErrForbidden)
	}
	if err := s.sessions.reconcile(ctx, sess); err != nil {
		s.sessions.endIf(ctx, peerUID, sess, "keyring error")
		s.countLogin(m, metrics.ResultError)
		return time.Time{}, fmt.Errorf("token: login: %w", err)
	}
	s.countLogin(m, metrics.ResultOK)
	return expires, nil
}

// checkDecoy spends on password the time a real password check takes.
func (s *Service) checkDecoy(password []byte) {
	s.decoyOnce.Do(func() {
		var salt [16]byte
		rand.Read(salt[:])
		s.decoy, _ = newHash(salt[:], s.opts.PasswordKDF)
	})
	_ = s.decoy.matches(password)
}
