package token

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/metrics"
)

// This file is the one place that decides what a failed or successful credential check
// does to an account: the command line's lockout, kept in the user's record, and the
// portal's throttles, kept in memory.

// verdict is what settle decided.
type verdict struct {
	granted bool
	// lockedNow is set when this failure locked the account, until then.
	lockedNow bool
	until     time.Time
}

// settle commits the outcome of a credential check of user in one transaction. While the
// account is locked it fails with a *LockedError, whatever the outcome; a lock reached on
// the command line applies to the portal too. If ok, grant runs inside the transaction with
// the current record: it makes the change the success buys (spending a code, issuing an ICE
// code) and may still refuse (a code spent meanwhile); a grant resets the failure count.
// A refusal on the command line counts towards lockout and locks the account at
// MaxFailures in a row; a refusal on the portal counts nothing here (the portal's throttle
// slows its caller down instead), so that nobody who can reach the portal can lock the
// owner out of dsh login.
func (s *Service) settle(ctx context.Context, user string, now time.Time, ok bool, grant func(tx kv.Txn, cur *userRecord) (bool, error)) (verdict, error) {
	portal := originOf(ctx).Portal
	var v verdict
	err := s.st.Update(ctx, func(tx kv.Txn) error {
		v = verdict{}
		var cur userRecord
		if found, err := getJSON(tx, userKey(user), &cur); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("credentials of %q: %w", user, ErrUnauthorized)
		}
		if now.Before(cur.LockedUntil) {
			return &LockedError{Until: cur.LockedUntil}
		}
		good := ok
		if good {
			var err error
			if good, err = grant(tx, &cur); err != nil {
				return err
			}
		}
		switch {
		case good:
			cur.Failures, cur.LockedUntil = 0, time.Time{}
		case portal:
			return nil
		default:
			cur.Failures++
			if cur.Failures >= s.opts.MaxFailures {
				cur.Failures = 0
				cur.LockedUntil = now.Add(s.opts.Lockout)
				v.lockedNow, v.until = true, cur.LockedUntil
			}
		}
		v.granted = good
		return putJSON(tx, userKey(user), &cur)
	})
	return v, err
}

// lockedOut records and counts a lockout that a failure just caused.
func (s *Service) lockedOut(ctx context.Context, uid int, user string, until time.Time) {
	if s.met != nil {
		s.met.Lockouts.Inc()
	}
	_ = s.record(ctx, uid, user, "token.lockout", "", "ok", "until "+until.UTC().Format(time.RFC3339), audit.Durable)
	s.notify(ctx, EventLockout, user, "", until)
}

// accountKey names the account a portal attempt is throttled under: the user ID as typed
// (known or not, so the throttle says nothing about which IDs exist), or the caller's uid
// when the call names none.
func accountKey(peerUID int, userID string) string {
	if userID == "" {
		return "uid " + strconv.Itoa(peerUID)
	}
	return "user " + userID
}

// throttled refuses a portal attempt whose address or account must still wait after
// earlier failures; on the command line it never refuses. The refusal costs no Argon2id
// work: it is the same for every user ID, so its timing tells nothing either.
func (s *Service) throttled(ctx context.Context, peerUID int, userID, action string) error {
	o := originOf(ctx)
	if !o.Portal {
		return nil
	}
	okA, waitA := s.byAddress.Allow(o.Address)
	okU, waitU := s.byAccount.Allow(accountKey(peerUID, userID))
	if okA && okU {
		return nil
	}
	s.lim.Refused(metrics.LimitSignInThrottle)
	return s.refuse(ctx, peerUID, userID, action, "throttled", fmt.Errorf("token: %s: %w", action, &ThrottledError{Wait: max(waitA, waitU)}))
}

// throttleOutcome feeds a portal attempt's outcome to the throttles: a refusal for its
// credentials slows down both its address and its account; a success clears the account
// (its owner proved themselves), never the address.
func (s *Service) throttleOutcome(ctx context.Context, peerUID int, userID string, err error) {
	o := originOf(ctx)
	if !o.Portal {
		return
	}
	key := accountKey(peerUID, userID)
	switch {
	case err == nil:
		s.byAccount.Reset(key)
	case errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden):
		s.byAddress.Fail(o.Address)
		s.byAccount.Fail(key)
	}
}
