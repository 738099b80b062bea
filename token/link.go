package token

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"dsh/audit"
	"dsh/kv"
)

// This file delivers a soft token by e-mail, safely: the operator issues a one-time link
// (a code of 100 random bits) that the daemon mails to the user; the user opens it and
// gives their password and the new token's PIN; only then is the token made, and its QR
// code shown once. The message never carries the token's secret, and the code alone is
// worth nothing without the password.

// linkRecord is an unused link: its code's digest and expiry.
type linkRecord struct {
	Digest  []byte    `json:"digest"`
	Expires time.Time `json:"expires"`
}

// IssueTokenLink makes a one-time link code for user (the operator; the daemon checks),
// replacing any earlier unused one. The user must be enrolled: the link asks for their
// password. The code is returned once, to be mailed, and stored only as a digest.
func (s *Service) IssueTokenLink(ctx context.Context, actorUID int, user string) (string, time.Time, error) {
	const action = "token.link.issue"
	if _, active, ok := s.dir.UserByID(user); !ok || !active {
		return "", time.Time{}, s.refuse(ctx, actorUID, user, action, reasonUnknownUser, fmt.Errorf("token: e-mail a soft token to %q: %w: no such active user", user, ErrNotFound))
	}
	code, err := randomCode()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: link: %w", err)
	}
	expires := s.now().Add(s.opts.LinkValidity)
	err = s.st.Update(ctx, func(tx kv.Txn) error {
		if _, err := tx.Get(userKey(user)); errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("%w: %s has not enrolled yet; send the enrolment code instead", ErrInvalid, user)
		} else if err != nil {
			return err
		}
		return putJSON(tx, linkKey(user), &linkRecord{Digest: digest("link\x00" + code), Expires: expires})
	})
	if err != nil {
		detail := reasonError
		if errors.Is(err, ErrInvalid) {
			detail = reasonNotEnrolled
		}
		return "", time.Time{}, s.refuse(ctx, actorUID, user, action, detail, fmt.Errorf("token: e-mail a soft token: %w", err))
	}
	if err := s.record(ctx, actorUID, user, action, user, "ok", "", audit.Durable); err != nil {
		return "", time.Time{}, fmt.Errorf("token: link: %w", err)
	}
	return code, expires, nil
}

// ClaimTokenLink makes the soft token a link promised: the user of peerUID (userID, if
// given, must be that user) gives the link's code, their password and the PIN for the new
// token. It returns the token and its otpauth URL, to show once. Like a login it does the
// same Argon2id work on every path (the password and the new PIN are hashed), counts a
// failure towards lockout on the command line and is throttled on the portal; the link is
// spent only by a success.
func (s *Service) ClaimTokenLink(ctx context.Context, peerUID int, userID, code string, password, pin []byte) (Enrolled, error) {
	const action = "token.link.claim"
	if err := checkPIN(pin); err != nil {
		return Enrolled{}, s.refuse(ctx, peerUID, userID, action, reasonInvalid, fmt.Errorf("token: soft token by e-mail: %w", err))
	}
	if err := s.throttled(ctx, peerUID, userID, action); err != nil {
		return Enrolled{}, err
	}
	res, err := s.claim(ctx, peerUID, userID, code, password, pin, action)
	s.throttleOutcome(ctx, peerUID, userID, err)
	return res, err
}

func (s *Service) claim(ctx context.Context, peerUID int, userID, code string, password, pin []byte, action string) (Enrolled, error) {
	user, reason, rerr := s.resolve(peerUID, userID)
	var rec *userRecord
	var link linkRecord
	haveLink := false
	if rerr == nil {
		err := s.st.View(ctx, func(tx kv.Txn) error {
			var r userRecord
			found, err := getJSON(tx, userKey(user), &r)
			if err != nil || !found {
				return err
			}
			rec = &r
			haveLink, err = getJSON(tx, linkKey(user), &link)
			return err
		})
		if err != nil {
			return Enrolled{}, s.failed(ctx, peerUID, user, action, err)
		}
		if rec == nil {
			reason, rerr = reasonNotEnrolled, ErrUnauthorized
		}
	}
	now := s.now()
	ph := s.decoy
	if rec != nil {
		ph = rec.Password
	}
	passOK, err := s.verify(ctx, ph, password)
	if err != nil {
		return Enrolled{}, s.failed(ctx, peerUID, user, action, err)
	}
	// The new PIN is hashed on every path, so a refusal costs what a success costs.
	pinHash, err := s.hash(ctx, pin, s.opts.ShortKDF)
	if err != nil {
		return Enrolled{}, s.failed(ctx, peerUID, user, action, err)
	}
	linkOK := haveLink && now.Before(link.Expires) && subtle.ConstantTimeCompare(link.Digest, digest("link\x00"+code)) == 1
	if rerr != nil {
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, reason, fmt.Errorf("token: soft token by e-mail: %w", rerr))
	}
	if now.Before(rec.LockedUntil) {
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: soft token by e-mail: %w", &LockedError{Until: rec.LockedUntil}))
	}
	var tok tokenRecord
	var url string
	if passOK && linkOK {
		if tok, url, err = s.newTokenHashed(user, pinHash, now); err != nil {
			return Enrolled{}, s.failed(ctx, peerUID, user, action, err)
		}
	}
	v, err := s.settle(ctx, user, now, passOK && linkOK, func(tx kv.Txn, cur *userRecord) (bool, error) {
		if subtle.ConstantTimeCompare(cur.Password.Hash, rec.Password.Hash) != 1 {
			return false, nil
		}
		var l linkRecord
		if found, err := getJSON(tx, linkKey(user), &l); err != nil || !found || subtle.ConstantTimeCompare(l.Digest, link.Digest) != 1 {
			return false, err // spent or replaced meanwhile
		}
		if err := tx.Delete(linkKey(user)); err != nil {
			return false, err
		}
		return true, putJSON(tx, tokenKey(user, tok.ID), &tok)
	})
	var le *LockedError
	switch {
	case errors.As(err, &le):
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, reasonLocked, fmt.Errorf("token: soft token by e-mail: %w", err))
	case err != nil:
		return Enrolled{}, s.failed(ctx, peerUID, user, action, err)
	}
	if !v.granted {
		if v.lockedNow {
			s.lockedOut(ctx, peerUID, user, v.until)
		}
		detail := reasonBadCredentials
		if passOK && !haveLink {
			detail = "no link issued"
		}
		return Enrolled{}, s.refuse(ctx, peerUID, user, action, detail,
			fmt.Errorf("token: soft token by e-mail: %w (or the link was used or has expired)", ErrUnauthorized))
	}
	if err := s.record(ctx, peerUID, user, action, tok.ID, "ok", "", audit.Durable); err != nil {
		return Enrolled{}, fmt.Errorf("token: soft token by e-mail: %w", err)
	}
	s.notify(ctx, EventTokenAdded, user, tok.ID, time.Time{})
	return Enrolled{TokenID: tok.ID, URL: url}, nil
}
