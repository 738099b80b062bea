package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"dsh/audit"
	"dsh/kv"
)

// TokenInfo describes a token without its secret.
type TokenInfo struct {
	ID       string
	Kind     string    // "totp" or "hotp"
	Created  time.Time // when the token was created or assigned
	LastUsed time.Time // the last accepted code; zero if never used
	// Hardware is set for a device from the pool; ID is then its serial, and Digits and
	// Period say how it computes codes (Period for TOTP only).
	Hardware bool
	Digits   int
	Period   int
	// PINSet is false for a hardware token whose owner has not set its PIN: its codes are
	// not accepted until they do.
	PINSet bool
}

// RequestICE issues an 8-digit emergency code to a user who gives the password and all
// three security answers (case-sensitive), replacing any earlier code. Wrong answers count
// like a failed login (towards lockout on the command line, the throttles on the portal),
// so the answers cannot be guessed at leisure.
func (s *Service) RequestICE(ctx context.Context, peerUID int, userID string, password []byte, answers [3][]byte) (code string, expires time.Time, err error) {
	const action = "token.ice.issue"
	if err := s.throttled(ctx, peerUID, userID, action); err != nil {
		return "", time.Time{}, err
	}
	code, expires, err = s.requestICE(ctx, peerUID, userID, password, answers, action)
	s.throttleOutcome(ctx, peerUID, userID, err)
	return code, expires, err
}

func (s *Service) requestICE(ctx context.Context, peerUID int, userID string, password []byte, answers [3][]byte, action string) (string, time.Time, error) {
	user, reason, rerr := s.resolve(peerUID, userID)
	var rec *userRecord
	if rerr == nil {
		r, _, found, err := s.loadUser(ctx, user)
		if err != nil {
			return "", time.Time{}, s.failed(ctx, peerUID, user, action, err)
		}
		if found {
			rec = &r
		} else {
			reason, rerr = reasonNotEnrolled, ErrUnauthorized
		}
	}
	// The same Argon2id work on every path, as for a login: the password and every answer
	// are hashed, against the decoys where the user has nothing to check against.
	ph, qs := s.decoy, [3]hashed{s.decoyShort, s.decoyShort, s.decoyShort}
	if rec != nil {
		ph = rec.Password
		for i := range qs {
			qs[i] = rec.Questions[i].Answer
		}
	}
	ok, err := s.verify(ctx, ph, password)
	for i := range answers {
		if err != nil {
			break
		}
		var match bool
		// Every answer is hashed even after a wrong one, so timing does not tell which.
		match, err = s.verify(ctx, qs[i], answers[i])
		ok = ok && match
	}
	if err != nil {
		return "", time.Time{}, s.failed(ctx, peerUID, user, action, err)
	}
	if rerr != nil {
		return "", time.Time{}, s.refuse(ctx, peerUID, user, action, reason, fmt.Errorf("token: ICE: %w", rerr))
	}
	now := s.now()
	if now.Before(rec.LockedUntil) {
		return "", time.Time{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: ICE: %w", &LockedError{Until: rec.LockedUntil}))
	}
	var code string
	var ice *emergency
	if ok {
		if code, err = randomDigits(8); err != nil {
			return "", time.Time{}, fmt.Errorf("token: ICE: %w", err)
		}
		h, err := s.hash(ctx, []byte(code), s.opts.ShortKDF)
		if err != nil {
			return "", time.Time{}, s.failed(ctx, peerUID, user, action, err)
		}
		ice = &emergency{Code: h, Expires: now.Add(s.opts.ICEValidity)}
	}
	v, err := s.settle(ctx, user, now, ok, func(_ kv.Txn, cur *userRecord) (bool, error) {
		cur.ICE = ice
		return true, nil
	})
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return "", time.Time{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: ICE: %w", err))
		}
		return "", time.Time{}, s.failed(ctx, peerUID, user, action, err)
	}
	if !v.granted {
		if v.lockedNow {
			s.lockedOut(ctx, peerUID, user, v.until)
		}
		return "", time.Time{}, s.refuse(ctx, peerUID, user, action, reasonBadCredentials, fmt.Errorf("token: ICE: %w", ErrUnauthorized))
	}
	if err := s.record(ctx, peerUID, user, action, "", "ok", "", audit.Durable); err != nil {
		return "", time.Time{}, fmt.Errorf("token: ICE: %w", err)
	}
	s.notify(ctx, EventICE, user, "", ice.Expires)
	return code, ice.Expires, nil
}

// sessionUser returns the user of uid's active session, or ErrForbidden.
func (s *Service) sessionUser(ctx context.Context, uid int, action string) (string, error) {
	user, _, ok := s.sessions.Active(uid)
	if !ok {
		return "", s.refuse(ctx, uid, "", action, reasonNoSession, fmt.Errorf("token: %s: %w: no active session (log in first with dsh login)", action, ErrForbidden))
	}
	return user, nil
}

// ListTokens lists the soft tokens of the user of uid's session, in token ID order,
// never with their secrets.
func (s *Service) ListTokens(ctx context.Context, uid int) ([]TokenInfo, error) {
	user, err := s.sessionUser(ctx, uid, "token.list")
	if err != nil {
		return nil, err
	}
	var toks []tokenRecord
	if err := s.st.View(ctx, func(tx kv.Txn) (err error) {
		toks, err = listTokens(tx, user)
		return err
	}); err != nil {
		return nil, fmt.Errorf("token: list tokens: %w", err)
	}
	out := make([]TokenInfo, len(toks))
	for i := range toks {
		out[i] = tokenInfo(&toks[i])
	}
	return out, nil
}

// CreateToken adds a soft token with a new PIN to the user of uid's session (after an
// ICE login this is how a user who lost their phone gets going again). It returns the
// token ID and the otpauth URL, which carries the secret: show it once, never log it.
func (s *Service) CreateToken(ctx context.Context, uid int, pin []byte) (Enrolled, error) {
	const action = "token.create"
	user, err := s.sessionUser(ctx, uid, action)
	if err != nil {
		return Enrolled{}, err
	}
	if err := checkPIN(pin); err != nil {
		return Enrolled{}, s.refuse(ctx, uid, user, action, reasonInvalid, fmt.Errorf("token: create token: %w", err))
	}
	tok, url, err := s.newToken(ctx, user, pin, s.now())
	if err != nil {
		return Enrolled{}, fmt.Errorf("token: create token: %w", err)
	}
	if err := s.st.Update(ctx, func(tx kv.Txn) error { return putJSON(tx, tokenKey(user, tok.ID), &tok) }); err != nil {
		return Enrolled{}, s.refuse(ctx, uid, user, action, reasonError, fmt.Errorf("token: create token: %w", err))
	}
	if err := s.record(ctx, uid, user, action, tok.ID, "ok", "", audit.Durable); err != nil {
		return Enrolled{}, fmt.Errorf("token: create token: %w", err)
	}
	s.notify(ctx, EventTokenAdded, user, tok.ID, time.Time{})
	return Enrolled{TokenID: tok.ID, URL: url}, nil
}

// updateToken applies fn to one of the session user's tokens; remove deletes it instead.
func (s *Service) updateToken(ctx context.Context, uid int, id, action string, fn func(*tokenRecord), remove bool) error {
	user, err := s.sessionUser(ctx, uid, action)
	if err != nil {
		return err
	}
	err = s.st.Update(ctx, func(tx kv.Txn) error {
		var t tokenRecord
		found, err := getJSON(tx, tokenKey(user, id), &t)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("token %q: %w", id, ErrNotFound)
		}
		if remove {
			if t.hardware() {
				// A lost or broken device: its serial can never be assigned again.
				if err := revokeInPool(tx, t.Serial, s.now()); err != nil {
					return err
				}
			}
			return tx.Delete(tokenKey(user, id))
		}
		fn(&t)
		return putJSON(tx, tokenKey(user, id), &t)
	})
	if err != nil {
		detail := reasonError
		if errors.Is(err, ErrNotFound) {
			detail = "no such token"
		}
		return s.refuse(ctx, uid, user, action, detail, fmt.Errorf("token: %s: %w", action, err))
	}
	if err := s.record(ctx, uid, user, action, id, "ok", "", audit.Durable); err != nil {
		return err
	}
	if remove {
		s.notify(ctx, EventTokenRevoked, user, id, time.Time{})
	} else {
		s.notify(ctx, EventPIN, user, id, time.Time{})
	}
	return nil
}

// RevokeToken deletes one of the session user's tokens; its codes stop working at once. A
// hardware token is revoked in the pool too: a lost device never comes back into use.
func (s *Service) RevokeToken(ctx context.Context, uid int, id string) error {
	return s.updateToken(ctx, uid, id, "token.revoke", nil, true)
}

// SetPIN gives one of the session user's tokens a new 4-digit PIN: also how the owner of a
// newly assigned hardware token makes it usable.
func (s *Service) SetPIN(ctx context.Context, uid int, id string, pin []byte) error {
	const action = "token.set-pin"
	if err := checkPIN(pin); err != nil {
		return s.refuse(ctx, uid, "", action, reasonInvalid, fmt.Errorf("token: set PIN: %w", err))
	}
	h, err := s.hash(ctx, pin, s.opts.ShortKDF)
	if err != nil {
		return fmt.Errorf("token: set PIN: %w", err)
	}
	return s.updateToken(ctx, uid, id, action, func(t *tokenRecord) { t.PIN = h }, false)
}

// ChangePassword sets a new password for the user of peerUID after checking the current
// password, a PIN and a TOTP code (which is spent, like at login). Failures count towards
// lockout. No session is needed, nor created.
func (s *Service) ChangePassword(ctx context.Context, peerUID int, current, pin []byte, code string, newPassword []byte) error {
	const action = "token.passwd"
	if err := checkPassword(newPassword); err != nil {
		return s.refuse(ctx, peerUID, "", action, reasonInvalid, fmt.Errorf("token: change password: %w", err))
	}
	return s.changeCredentials(ctx, peerUID, factors{password: current, pin: pin, code: code}, action, "change password", func() (func(*userRecord), error) {
		h, err := s.hash(ctx, newPassword, s.opts.PasswordKDF)
		if err != nil {
			return nil, err
		}
		return func(rec *userRecord) { rec.Password = h }, nil
	})
}

// SetQuestions replaces the three security questions (and answers) of the user of peerUID
// after checking password, PIN and TOTP code, as ChangePassword does: the answers are a
// way to an emergency code, so changing them needs every factor.
func (s *Service) SetQuestions(ctx context.Context, peerUID int, password, pin []byte, code string, qs [3]Question) error {
	const action = "token.questions"
	if err := checkQuestions(qs); err != nil {
		return s.refuse(ctx, peerUID, "", action, reasonInvalid, fmt.Errorf("token: set security questions: %w", err))
	}
	return s.changeCredentials(ctx, peerUID, factors{password: password, pin: pin, code: code}, action, "set security questions", func() (func(*userRecord), error) {
		var hashed [3]question
		for i, q := range qs {
			h, err := s.hash(ctx, q.Answer, s.opts.ShortKDF)
			if err != nil {
				return nil, err
			}
			hashed[i] = question{Question: q.Question, Answer: h}
		}
		return func(rec *userRecord) { rec.Questions = hashed }, nil
	})
}

// Questions returns the texts of the security questions of the user of peerUID's session.
func (s *Service) Questions(ctx context.Context, uid int) ([3]string, error) {
	var out [3]string
	user, err := s.sessionUser(ctx, uid, "token.questions.list")
	if err != nil {
		return out, err
	}
	rec, _, found, err := s.loadUser(ctx, user)
	if err != nil {
		return out, fmt.Errorf("token: security questions: %w", err)
	}
	if !found {
		return out, fmt.Errorf("token: security questions of %q: %w", user, ErrNotFound)
	}
	for i, q := range rec.Questions {
		out[i] = q.Question
	}
	return out, nil
}

// changeCredentials authenticates all three factors (spending the code), then runs prepare
// (which hashes the new secrets: only for a caller who passed, so a guess costs no extra
// key derivation and refusals keep their timing) and applies the change it returns to the
// user's record, audited as action; what names the step in errors.
func (s *Service) changeCredentials(ctx context.Context, peerUID int, f factors, action, what string, prepare func() (func(*userRecord), error)) error {
	if err := f.check(); err != nil {
		return s.refuse(ctx, peerUID, "", action, reasonInvalid, fmt.Errorf("token: %s: %w", what, err))
	}
	a, err := s.authenticate(ctx, peerUID, "", f, action)
	if err != nil {
		return err
	}
	change, err := prepare()
	if err != nil {
		return fmt.Errorf("token: %s: %w", what, err)
	}
	err = s.st.Update(ctx, func(tx kv.Txn) error {
		var cur userRecord
		if found, err := getJSON(tx, userKey(a.user), &cur); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("credentials of %q: %w", a.user, ErrNotFound)
		}
		change(&cur)
		return putJSON(tx, userKey(a.user), &cur)
	})
	if err != nil {
		return s.refuse(ctx, peerUID, a.user, action, reasonError, fmt.Errorf("token: %s: %w", what, err))
	}
	if err := s.record(ctx, peerUID, a.user, action, "", "ok", "", audit.Durable); err != nil {
		return err
	}
	if action == "token.passwd" {
		s.notify(ctx, EventPassword, a.user, "", time.Time{})
	} else {
		s.notify(ctx, EventQuestions, a.user, "", time.Time{})
	}
	return nil
}
