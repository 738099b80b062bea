package token

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/pskc"
)

// This file is the pool of hardware tokens: imported from the vendors' seed files,
// assigned by serial to a user (who then sets its PIN), taken back, revoked, and
// resynchronised. A device's secret lives in exactly one place: sealed in its pool record
// while it is free, in its owner's token record while it is assigned, nowhere once revoked.

// States of a hardware token in the pool.
const (
	PoolFree     = "free"
	PoolAssigned = "assigned"
	PoolRevoked  = "revoked"
)

// poolRecord is one device of the pool.
type poolRecord struct {
	Serial       string    `json:"serial"`
	Kind         string    `json:"kind"`
	Digits       int       `json:"digits"`
	Period       int       `json:"period,omitempty"`
	Algo         string    `json:"algo"`
	Manufacturer string    `json:"manufacturer,omitempty"`
	State        string    `json:"state"`
	User         string    `json:"user,omitempty"`
	Imported     time.Time `json:"imported"`
	Changed      time.Time `json:"changed,omitzero"`
	// While free: the sealed secret and where the device's counter or drift stood.
	Secret  []byte `json:"secret,omitempty"`
	Counter uint64 `json:"counter,omitempty"`
	Drift   int64  `json:"drift,omitempty"`
}

// poolContext binds a free device's sealed secret to its serial.
func poolContext(serial string) []byte { return []byte("dsh v1 hardware pool\x00" + serial) }

// HardwareInfo describes a device of the pool, without its secret.
type HardwareInfo struct {
	Serial       string
	Kind         string // "hotp" or "totp"
	Digits       int
	Period       int // TOTP time step in seconds
	Algorithm    string
	Manufacturer string
	State        string // PoolFree, PoolAssigned or PoolRevoked
	User         string // the owner (assigned), or the last owner (revoked)
	PINSet       bool
	Imported     time.Time
	Changed      time.Time // assigned, taken back or revoked
	LastUsed     time.Time
}

// ImportResult says what an import did: serials added to the pool, and those skipped
// because the pool knows them already (free, assigned or revoked).
type ImportResult struct {
	Imported []string
	Skipped  []string
}

func tokenInfo(t *tokenRecord) TokenInfo {
	return TokenInfo{ID: t.ID, Kind: t.Kind, Created: t.Created, LastUsed: t.LastUsed,
		Hardware: t.hardware(), Digits: t.digitsOf(), Period: int(t.periodOf()), PINSet: t.usable()}
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// importBatch is how many devices one transaction adds; a file of thousands goes in
// several (a re-import after a crash skips the serials already in).
const importBatch = 500

// ImportHardware adds devices to the pool of free hardware tokens. actorUID is the
// operator's, for the audit log; source names the file. Serials the pool knows already
// are skipped, never overwritten. The seeds are sealed at once; the caller wipes its
// copies.
func (s *Service) ImportHardware(ctx context.Context, actorUID int, source string, seeds []pskc.Seed) (ImportResult, error) {
	const action = "token.hardware.import"
	var res ImportResult
	now := s.now()
	recs := make([]poolRecord, len(seeds))
	for i, sd := range seeds {
		enc := []byte(b32.EncodeToString(sd.Secret))
		sealed, err := s.sealer.Seal(enc, poolContext(sd.Serial))
		wipe(enc)
		if err != nil {
			return res, s.refuse(ctx, actorUID, "", action, reasonError, fmt.Errorf("token: import: seal: %w", err))
		}
		recs[i] = poolRecord{Serial: sd.Serial, Kind: string(sd.Kind), Digits: sd.Digits, Period: sd.Period, Algo: sd.Algorithm,
			Manufacturer: sd.Manufacturer, State: PoolFree, Imported: now, Secret: sealed, Counter: sd.Counter}
	}
	// Fail closed: the import is in the audit log before any device is in the pool.
	if err := s.record(ctx, actorUID, "", action, source, "ok", fmt.Sprintf("%d devices in the file", len(recs)), audit.Durable); err != nil {
		return res, fmt.Errorf("token: import: %w", err)
	}
	for start := 0; start < len(recs); start += importBatch {
		batch := recs[start:min(start+importBatch, len(recs))]
		var added, skipped []string
		err := s.st.Update(ctx, func(tx kv.Txn) error {
			added, skipped = added[:0], skipped[:0]
			for i := range batch {
				_, err := tx.Get(poolKey(batch[i].Serial))
				switch {
				case err == nil:
					skipped = append(skipped, batch[i].Serial)
					continue
				case !errors.Is(err, kv.ErrNotFound):
					return fmt.Errorf("read %s: %w", batch[i].Serial, err)
				}
				if err := putJSON(tx, poolKey(batch[i].Serial), &batch[i]); err != nil {
					return err
				}
				added = append(added, batch[i].Serial)
			}
			return nil
		})
		if err != nil {
			_ = s.record(ctx, actorUID, "", action, source, "error", fmt.Sprintf("stopped after %d devices imported", len(res.Imported)), audit.Durable)
			return res, fmt.Errorf("token: import: %w (%d devices were imported before)", err, len(res.Imported))
		}
		res.Imported = append(res.Imported, added...)
		res.Skipped = append(res.Skipped, skipped...)
	}
	return res, s.record(ctx, actorUID, "", action, source, "ok", fmt.Sprintf("%d imported, %d already known", len(res.Imported), len(res.Skipped)), audit.Durable)
}

// ListHardware lists the pool (for the operator), in serial order, with each assigned
// device's PIN state and last use from its owner's record.
func (s *Service) ListHardware(ctx context.Context) ([]HardwareInfo, error) {
	var out []HardwareInfo
	err := s.st.View(ctx, func(tx kv.Txn) error {
		out = out[:0]
		var recs []poolRecord
		err := tx.Scan([]byte(prefixPool), nil, func(key, value []byte) (bool, error) {
			var p poolRecord
			if err := json.Unmarshal(value, &p); err != nil {
				return false, fmt.Errorf("decode %s: %w", key, err)
			}
			recs = append(recs, p)
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, p := range recs {
			h := HardwareInfo{Serial: p.Serial, Kind: p.Kind, Digits: p.Digits, Period: p.Period, Algorithm: p.Algo,
				Manufacturer: p.Manufacturer, State: p.State, User: p.User, Imported: p.Imported, Changed: p.Changed}
			if p.State == PoolAssigned {
				var t tokenRecord
				if found, err := getJSON(tx, tokenKey(p.User, p.Serial), &t); err != nil {
					return err
				} else if found {
					h.PINSet, h.LastUsed = t.usable(), t.LastUsed
				}
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("token: list hardware tokens: %w", err)
	}
	return out, nil
}

// poolChange makes one change of the pool, fail closed: check reads the state in a
// snapshot and names the user the change concerns; the change is audited; then apply
// commits it in a transaction that runs check again first. A commit that fails after its
// record was written is recorded as an error.
func (s *Service) poolChange(ctx context.Context, uid int, action, object string, check func(tx kv.Txn) (string, error), apply func(tx kv.Txn) error) (string, error) {
	var user string
	err := s.st.View(ctx, func(tx kv.Txn) (err error) {
		user, err = check(tx)
		return err
	})
	if err != nil {
		return user, s.poolRefusal(ctx, uid, user, action, err)
	}
	if err := s.record(ctx, uid, user, action, object, "ok", "", audit.Durable); err != nil {
		return user, fmt.Errorf("token: %s: %w", action, err)
	}
	err = s.st.Update(ctx, func(tx kv.Txn) error {
		if _, err := check(tx); err != nil {
			return err
		}
		return apply(tx)
	})
	if err != nil {
		_ = s.record(ctx, uid, user, action, object, "error", "not applied", audit.Durable)
		return user, fmt.Errorf("token: %s: %w", action, err)
	}
	return user, nil
}

// AssignHardware gives a free device to user (operator only; the daemon checks). The
// token is not usable until its owner sets its PIN (SetPIN from a session, or at
// enrolment with one of its codes).
func (s *Service) AssignHardware(ctx context.Context, actorUID int, serial, user string) error {
	const action = "token.hardware.assign"
	if _, _, ok := s.dir.UserByID(user); !ok {
		return s.refuse(ctx, actorUID, user, action, reasonUnknownUser, fmt.Errorf("token: assign %s: user %q: %w", serial, user, ErrNotFound))
	}
	now := s.now()
	var p poolRecord
	check := func(tx kv.Txn) (string, error) {
		if found, err := getJSON(tx, poolKey(serial), &p); err != nil {
			return user, err
		} else if !found {
			return user, fmt.Errorf("no hardware token with serial %q in the pool: %w", serial, ErrNotFound)
		}
		if p.State != PoolFree {
			return user, fmt.Errorf("%w: hardware token %s is %s%s", ErrInvalid, serial, p.State, ownerNote(p))
		}
		if _, err := tx.Get(tokenKey(user, serial)); err == nil {
			return user, fmt.Errorf("%w: %s already has a token named %s", ErrInvalid, user, serial)
		} else if !errors.Is(err, kv.ErrNotFound) {
			return user, err
		}
		return user, nil
	}
	_, err := s.poolChange(ctx, actorUID, action, serial, check, func(tx kv.Txn) error {
		secret, err := s.sealer.Open(p.Secret, poolContext(serial))
		if err != nil {
			return fmt.Errorf("open the pool's secret of %s: %w", serial, err)
		}
		sealed, err := s.sealer.Seal(secret, sealContext(user, serial))
		wipe(secret)
		if err != nil {
			return fmt.Errorf("seal the secret of %s: %w", serial, err)
		}
		t := tokenRecord{ID: serial, Kind: p.Kind, Created: now, Secret: sealed, Serial: serial, Digits: p.Digits,
			Period: p.Period, Algo: p.Algo, Counter: p.Counter, Drift: p.Drift}
		p.State, p.User, p.Changed, p.Secret, p.Counter, p.Drift = PoolAssigned, user, now, nil, 0, 0
		if err := putJSON(tx, tokenKey(user, serial), &t); err != nil {
			return err
		}
		return putJSON(tx, poolKey(serial), &p)
	})
	if err != nil {
		return err
	}
	s.notifyBy(ctx, "the operator", EventHardwareAdded, user, serial)
	return nil
}

func ownerNote(p poolRecord) string {
	if p.User != "" {
		return " (" + p.User + ")"
	}
	return ""
}

// poolRefusal audits a refused or failed pool operation and returns err with the service's
// kinds intact.
func (s *Service) poolRefusal(ctx context.Context, uid int, user, action string, err error) error {
	detail := reasonError
	switch {
	case errors.Is(err, ErrNotFound):
		detail = "no such token"
	case errors.Is(err, ErrInvalid):
		detail = reasonInvalid
	case errors.Is(err, ErrUnauthorized):
		detail = "codes not found"
	}
	return s.refuse(ctx, uid, user, action, detail, fmt.Errorf("token: %s: %w", action, err))
}

// UnassignHardware takes a device back from its owner into the free pool (operator only),
// for a device returned in working order: its secret, counter and drift go back with it,
// its PIN is dropped.
func (s *Service) UnassignHardware(ctx context.Context, actorUID int, serial string) error {
	const action = "token.hardware.unassign"
	var p poolRecord
	var t tokenRecord
	check := func(tx kv.Txn) (user string, err error) {
		p, t, err = assignedDevice(tx, serial)
		return p.User, err
	}
	owner, err := s.poolChange(ctx, actorUID, action, serial, check, func(tx kv.Txn) error {
		secret, err := s.sealer.Open(t.Secret, sealContext(p.User, serial))
		if err != nil {
			return fmt.Errorf("open the secret of %s: %w", serial, err)
		}
		sealed, err := s.sealer.Seal(secret, poolContext(serial))
		wipe(secret)
		if err != nil {
			return fmt.Errorf("seal the secret of %s: %w", serial, err)
		}
		if err := tx.Delete(tokenKey(p.User, serial)); err != nil {
			return err
		}
		p.State, p.User, p.Changed, p.Secret, p.Counter, p.Drift = PoolFree, "", s.now(), sealed, t.Counter, t.Drift
		return putJSON(tx, poolKey(serial), &p)
	})
	if err != nil {
		return err
	}
	s.notifyBy(ctx, "the operator", EventHardwareTaken, owner, serial)
	return nil
}

// assignedDevice reads an assigned device's pool record and its owner's token record.
func assignedDevice(tx kv.Txn, serial string) (poolRecord, tokenRecord, error) {
	var p poolRecord
	var t tokenRecord
	if found, err := getJSON(tx, poolKey(serial), &p); err != nil {
		return p, t, err
	} else if !found {
		return p, t, fmt.Errorf("no hardware token with serial %q in the pool: %w", serial, ErrNotFound)
	}
	if p.State != PoolAssigned {
		return p, t, fmt.Errorf("%w: hardware token %s is %s, not assigned", ErrInvalid, serial, p.State)
	}
	if found, err := getJSON(tx, tokenKey(p.User, serial), &t); err != nil {
		return p, t, err
	} else if !found {
		return p, t, fmt.Errorf("hardware token %s is not among %s's tokens: %w", serial, p.User, ErrNotFound)
	}
	return p, t, nil
}

// RevokeHardware revokes a device for good (operator only): lost, stolen or broken. An
// assigned device's codes stop working at once; its serial can never be assigned again.
func (s *Service) RevokeHardware(ctx context.Context, actorUID int, serial string) error {
	const action = "token.hardware.revoke"
	var p poolRecord
	check := func(tx kv.Txn) (string, error) {
		if found, err := getJSON(tx, poolKey(serial), &p); err != nil {
			return "", err
		} else if !found {
			return "", fmt.Errorf("no hardware token with serial %q in the pool: %w", serial, ErrNotFound)
		}
		if p.State == PoolRevoked {
			return p.User, fmt.Errorf("%w: hardware token %s is revoked already", ErrInvalid, serial)
		}
		if p.State == PoolFree {
			return "", nil
		}
		return p.User, nil
	}
	owner, err := s.poolChange(ctx, actorUID, action, serial, check, func(tx kv.Txn) error {
		if p.State == PoolAssigned {
			if err := tx.Delete(tokenKey(p.User, serial)); err != nil {
				return err
			}
		}
		return revokeInPool(tx, serial, s.now())
	})
	if err != nil {
		return err
	}
	s.notifyBy(ctx, "the operator", EventTokenRevoked, owner, serial)
	return nil
}

// revokeInPool marks a device revoked and forgets its secret. It keeps the last owner,
// for the record of where the device went.
func revokeInPool(tx kv.Txn, serial string, now time.Time) error {
	var p poolRecord
	if found, err := getJSON(tx, poolKey(serial), &p); err != nil {
		return err
	} else if !found {
		return nil // a token record without a pool record: nothing more to revoke
	}
	clear(p.Secret)
	p.State, p.Changed, p.Secret, p.Counter, p.Drift = PoolRevoked, now, nil, 0, 0
	return putJSON(tx, poolKey(serial), &p)
}

// ResyncToken resynchronises one of the session user's hardware tokens from two
// consecutive codes: an HOTP device pressed many times away from dsh, or a TOTP device
// whose clock drifted. The codes are spent.
func (s *Service) ResyncToken(ctx context.Context, uid int, id, code1, code2 string) error {
	const action = "token.resync"
	user, err := s.sessionUser(ctx, uid, action)
	if err != nil {
		return err
	}
	return s.resync(ctx, uid, user, id, code1, code2, action)
}

// ResyncHardware is ResyncToken for the operator, by serial, for a user who reads the
// codes out to the service desk.
func (s *Service) ResyncHardware(ctx context.Context, actorUID int, serial, code1, code2 string) error {
	const action = "token.hardware.resync"
	var owner string
	err := s.st.View(ctx, func(tx kv.Txn) error {
		p, _, err := assignedDevice(tx, serial)
		owner = p.User
		return err
	})
	if err != nil {
		return s.poolRefusal(ctx, actorUID, owner, action, err)
	}
	return s.resync(ctx, actorUID, owner, serial, code1, code2, action)
}

func (s *Service) resync(ctx context.Context, uid int, user, id, code1, code2, action string) error {
	if len(code1) < 6 || len(code1) > 8 || !digits(code1, len(code1)) || !digits(code2, len(code1)) {
		return s.refuse(ctx, uid, user, action, reasonInvalid, fmt.Errorf("token: resync: %w: give two consecutive codes of 6 to 8 digits", ErrInvalid))
	}
	if code1 == code2 {
		return s.refuse(ctx, uid, user, action, reasonInvalid, fmt.Errorf("token: resync: %w: the two codes are the same; give two consecutive codes", ErrInvalid))
	}
	now := s.now()
	var t tokenRecord
	// find reads the token and moves t past the two codes; false when they are not found.
	find := func(tx kv.Txn) (bool, error) {
		if ok, err := getJSON(tx, tokenKey(user, id), &t); err != nil {
			return false, err
		} else if !ok {
			return false, fmt.Errorf("token %q: %w", id, ErrNotFound)
		}
		if !t.hardware() {
			return false, fmt.Errorf("%w: token %s is a soft token: its codes follow the phone's clock and never need resynchronising", ErrInvalid, id)
		}
		secret, err := s.sealer.Open(t.Secret, sealContext(user, id))
		if err != nil {
			return false, fmt.Errorf("open token secret: %w", err)
		}
		found := t.resync(string(secret), code1, code2, now, s.opts.SyncWindow)
		wipe(secret)
		return found, nil
	}
	notFound := fmt.Errorf("%w: the two codes are not consecutive codes of %s within %d of where it stood", ErrUnauthorized, id, s.opts.SyncWindow)
	_, err := s.poolChange(ctx, uid, action, id, func(tx kv.Txn) (string, error) {
		found, err := find(tx)
		if err == nil && !found {
			err = notFound
		}
		return user, err
	}, func(tx kv.Txn) error { return putJSON(tx, tokenKey(user, id), &t) })
	if errors.Is(err, ErrUnauthorized) {
		return fmt.Errorf("token: resync: %w", notFound)
	}
	return err
}

// notifyBy is notify with an explicit origin ("the operator").
func (s *Service) notifyBy(ctx context.Context, via string, kind EventKind, user, object string) {
	if s.notifier == nil || user == "" {
		return
	}
	s.notifier.Notify(context.WithoutCancel(ctx), Event{Kind: kind, User: user, Object: object, Via: via, At: s.now()})
}
