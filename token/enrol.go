package token

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	"dsh/audit"
	"dsh/kv"
)

// Question is one security question with its answer, as given at enrolment. Answers are
// case-sensitive and kept only as hashes.
type Question struct {
	Question string // shown to the user when asking for the answer; not a secret
	Answer   []byte // the caller's buffer; only its hash is kept
}

// Enrolled is what a successful enrolment gives the user: the first token and the
// otpauth URL to load into an authenticator app. The URL carries the secret; the caller
// shows it once and must not log it.
type Enrolled struct {
	TokenID string // names the token in list, revoke and set-pin
	URL     string // otpauth://totp/... holding the secret, for the app or a QR code
}

// CreateEnrolment issues a one-time enrolment code for user, replacing any earlier
// unused one. actorUID is the operator, for the audit record. The code is returned once
// and stored only as a digest.
func (s *Service) CreateEnrolment(ctx context.Context, actorUID int, user string) (code string, expires time.Time, err error) {
	const action = "token.enrol.code"
	if _, _, ok := s.dir.UserByID(user); !ok {
		return "", time.Time{}, s.refuse(ctx, actorUID, user, action, reasonUnknownUser, fmt.Errorf("token: enrolment code for %q: %w", user, ErrNotFound))
	}
	code, err = randomCode()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: enrolment code: %w", err)
	}
	expires = s.now().Add(s.opts.EnrolValidity)
	err = s.st.Update(ctx, func(tx kv.Txn) error {
		return putJSON(tx, enrolKey(user), &enrolment{Digest: digest(code), Expires: expires})
	})
	if err != nil {
		return "", time.Time{}, s.refuse(ctx, actorUID, user, action, reasonError, fmt.Errorf("token: enrolment code: %w", err))
	}
	if err := s.record(ctx, actorUID, user, action, user, "ok", "", audit.Durable); err != nil {
		return "", time.Time{}, fmt.Errorf("token: enrolment code: %w", err)
	}
	return code, expires, nil
}

func checkQuestions(qs [3]Question) error {
	for i, q := range qs {
		if q.Question == "" || len(q.Answer) == 0 {
			return fmt.Errorf("%w: security question %d needs a question and an answer", ErrInvalid, i+1)
		}
	}
	return nil
}

// Enrol sets the first credentials of the user of peerUID with their enrolment code:
// password, three security questions and a first soft token with its PIN. It replaces
// any earlier credentials of the user (an operator re-enrolment) and spends the code.
// Hardware tokens assigned to the user are kept.
func (s *Service) Enrol(ctx context.Context, peerUID int, code string, password, pin []byte, qs [3]Question) (Enrolled, error) {
	return s.EnrolWith(ctx, peerUID, code, password, pin, qs, "")
}

// EnrolWith is Enrol for a user who holds a hardware token: with tokenCode, a code of a
// hardware token assigned to the user whose PIN is not set yet, the PIN is set on that
// token (and the code spent) instead of a soft token being created. Enrolled.URL is then
// empty and TokenID the device's serial.
func (s *Service) EnrolWith(ctx context.Context, peerUID int, code string, password, pin []byte, qs [3]Question, tokenCode string) (Enrolled, error) {
	const action = "token.enrol"
	user, active, ok := s.dir.UserByUID(peerUID)
	switch {
	case !ok:
		return Enrolled{}, s.refuse(ctx, peerUID, "", action, reasonUnknownUser, fmt.Errorf("token: enrol: %w", ErrUnauthorized))
	case !active:
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, reasonDisabled, fmt.Errorf("token: enrol: %w: account is disabled", ErrForbidden))
	}
	if err := firstErr(checkPassword(password), checkPIN(pin), checkQuestions(qs)); err != nil {
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, reasonInvalid, fmt.Errorf("token: enrol: %w", err))
	}
	var en enrolment
	var found bool
	err := s.st.View(ctx, func(tx kv.Txn) (err error) {
		found, err = getJSON(tx, enrolKey(user), &en)
		return err
	})
	if err != nil {
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, reasonError, fmt.Errorf("token: enrol: %w", err))
	}
	now := s.now()
	if !found || !now.Before(en.Expires) || subtle.ConstantTimeCompare(en.Digest, digest(code)) != 1 {
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, "enrolment code invalid, used or expired",
			fmt.Errorf("token: enrol: %w: enrolment code invalid, used or expired", ErrUnauthorized))
	}

	rec := userRecord{}
	if rec.Password, err = s.hash(ctx, password, s.opts.PasswordKDF); err != nil {
		return Enrolled{}, fmt.Errorf("token: enrol: %w", err)
	}
	for i, q := range qs {
		rec.Questions[i].Question = q.Question
		if rec.Questions[i].Answer, err = s.hash(ctx, q.Answer, s.opts.ShortKDF); err != nil {
			return Enrolled{}, fmt.Errorf("token: enrol: %w", err)
		}
	}
	var tok tokenRecord
	var url string
	if tokenCode == "" {
		if tok, url, err = s.newToken(ctx, user, pin, now); err != nil {
			return Enrolled{}, fmt.Errorf("token: enrol: %w", err)
		}
	} else {
		if tok, err = s.hardwareForEnrolment(ctx, user, tokenCode, now); err != nil {
			return Enrolled{}, s.refuse(ctx, peerUID, user, action, "hardware code not matched", fmt.Errorf("token: enrol: %w", err))
		}
		if tok.PIN, err = s.hash(ctx, pin, s.opts.ShortKDF); err != nil {
			return Enrolled{}, fmt.Errorf("token: enrol: %w", err)
		}
	}
	hwAt := tok.LastStep // where the hardware token's code matched

	err = s.st.Update(ctx, func(tx kv.Txn) error {
		var cur enrolment
		found, err := getJSON(tx, enrolKey(user), &cur)
		if err != nil {
			return err
		}
		// A racing enrolment may have spent the code since it was checked.
		if !found || subtle.ConstantTimeCompare(cur.Digest, en.Digest) != 1 {
			return ErrUnauthorized
		}
		if err := tx.Delete(enrolKey(user)); err != nil {
			return fmt.Errorf("delete enrolment code: %w", err)
		}
		old, err := listTokens(tx, user)
		if err != nil {
			return err
		}
		for _, t := range old {
			if t.hardware() {
				continue // devices stay with their owner; the operator takes them back
			}
			if err := tx.Delete(tokenKey(user, t.ID)); err != nil {
				return fmt.Errorf("delete old token: %w", err)
			}
		}
		write := tok
		if tok.hardware() {
			// The code that proved the device is spent, on the record as it is now.
			var cur tokenRecord
			if found, err := getJSON(tx, tokenKey(user, tok.ID), &cur); err != nil {
				return err
			} else if !found || cur.usable() || !cur.accept(hwAt, now) {
				return fmt.Errorf("%w: the hardware token's code was used or the token changed meanwhile", ErrUnauthorized)
			}
			cur.PIN = tok.PIN
			write = cur
		}
		if err := putJSON(tx, tokenKey(user, write.ID), &write); err != nil {
			return err
		}
		return putJSON(tx, userKey(user), &rec)
	})
	if err != nil {
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, reasonError, fmt.Errorf("token: enrol: %w", err))
	}
	if err := s.record(ctx, peerUID, user, action, tok.ID, "ok", "", audit.Durable); err != nil {
		return Enrolled{}, fmt.Errorf("token: enrol: %w", err)
	}
	if tok.hardware() {
		s.notify(ctx, EventPIN, user, tok.ID, time.Time{})
	}
	return Enrolled{TokenID: tok.ID, URL: url}, nil
}

// hardwareForEnrolment finds the hardware token of user, assigned and without a PIN, that
// gave code. The returned record carries in LastStep where the code matched (the counter
// or time step), for the enrolment's transaction to spend.
func (s *Service) hardwareForEnrolment(ctx context.Context, user, code string, now time.Time) (tokenRecord, error) {
	if len(code) < 6 || len(code) > 8 || !digits(code, len(code)) {
		return tokenRecord{}, fmt.Errorf("%w: the hardware token's code has 6 to 8 digits", ErrInvalid)
	}
	var toks []tokenRecord
	if err := s.st.View(ctx, func(tx kv.Txn) (err error) {
		toks, err = listTokens(tx, user)
		return err
	}); err != nil {
		return tokenRecord{}, err
	}
	for _, t := range toks {
		if !t.hardware() || t.usable() {
			continue
		}
		secret, err := s.sealer.Open(t.Secret, sealContext(user, t.ID))
		if err != nil {
			return tokenRecord{}, fmt.Errorf("open token secret: %w", err)
		}
		n, ok := t.match(string(secret), code, now, s.opts.HOTPWindow)
		wipe(secret)
		if ok {
			t.LastStep = n
			return t, nil
		}
	}
	return tokenRecord{}, fmt.Errorf("%w: the code is not one of a hardware token assigned to you that waits for its PIN", ErrUnauthorized)
}

// newToken builds a token record with a fresh sealed secret and hashed PIN.
func (s *Service) newToken(ctx context.Context, user string, pin []byte, now time.Time) (tokenRecord, string, error) {
	pinHash, err := s.hash(ctx, pin, s.opts.ShortKDF)
	if err != nil {
		return tokenRecord{}, "", err
	}
	return s.newTokenHashed(user, pinHash, now)
}

// newTokenHashed is newToken with the PIN hashed already.
func (s *Service) newTokenHashed(user string, pinHash hashed, now time.Time) (tokenRecord, string, error) {
	id, err := randomID()
	if err != nil {
		return tokenRecord{}, "", err
	}
	secret, url, err := newTOTP(s.opts.Issuer, user)
	if err != nil {
		return tokenRecord{}, "", err
	}
	plain := []byte(secret)
	sealed, err := s.sealer.Seal(plain, sealContext(user, id))
	wipe(plain)
	if err != nil {
		return tokenRecord{}, "", fmt.Errorf("seal token secret: %w", err)
	}
	return tokenRecord{ID: id, Kind: kindTOTP, Created: now, Secret: sealed, PIN: pinHash}, url, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
