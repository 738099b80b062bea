package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"dsh/control"
	"dsh/token"
	"dsh/vault"
)

// sweepSessions wipes expired sessions' keys every interval until ctx ends, so that keys
// of a session nobody uses any more do not stay in memory until someone asks.
func (d *Daemon) sweepSessions(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		d.mu.RLock()
		defer d.mu.RUnlock()
		if d.tok != nil {
			d.tok.Sessions().Sweep(ctx)
		}
	})
}

// every runs fn every interval until ctx ends: the daemon's periodic upkeep (session
// sweep, egress expiry, epoch notes).
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// sweepInterval is how often expired sessions are swept: often enough that a short test
// lifetime is honoured, never more than every 30 s.
func sweepInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/4, time.Second), 30*time.Second)
}

// withTokens runs fn with the unsealed token service, or fails with "store is sealed". The
// context tells the token service which channel c is on: a portal caller's failed checks
// are throttled instead of counted towards lockout, and its login starts a portal session.
func (d *Daemon) withTokens(ctx context.Context, c control.Caller, fn func(ctx context.Context, t *token.Service) error) error {
	// A login or token change that has started is finished and audited even if the
	// client hangs up, as for acl changes.
	ctx = context.WithoutCancel(ctx)
	if c.Portal() {
		ctx = token.WithOrigin(ctx, token.Origin{Portal: true, Address: c.Remote})
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.tok == nil {
		return fmt.Errorf("%w: %w", control.ErrUnavailable, vault.ErrSealed)
	}
	return tokenError(fn(ctx, d.tok))
}

// tokenError gives the token service's errors the control kinds that become HTTP statuses,
// and a message that starts at what the user needs to know ("wrong user ID, password, PIN
// or code", "account is locked until ...") rather than at the package's call chain.
func tokenError(err error) error {
	for _, k := range tokenKinds {
		if errors.Is(err, k.from) {
			msg := err.Error()
			if i := strings.Index(msg, k.from.Error()); i > 0 {
				msg = msg[i:]
			}
			return control.WithKind(k.to, errors.New(msg))
		}
	}
	return err
}

var tokenKinds = []kind{
	{token.ErrThrottled, control.ErrTooMany},
	{token.ErrBusy, control.ErrUnavailable},
	{token.ErrInvalid, control.ErrInvalid},
	{token.ErrLocked, control.ErrLocked},
	{token.ErrUnauthorized, control.ErrUnauthorized},
	{token.ErrForbidden, control.ErrForbidden},
	{token.ErrNotFound, control.ErrNotFound},
}

// EnrolmentCode issues a fresh enrolment code for an existing account (operator only).
func (d *Daemon) EnrolmentCode(ctx context.Context, c control.Caller, user string) (control.EnrolmentCode, error) {
	if err := d.requireOperator(ctx, c, "token.enrol.code"); err != nil {
		return control.EnrolmentCode{}, err
	}
	var out control.EnrolmentCode
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		code, exp, err := t.CreateEnrolment(ctx, c.UID, user)
		out = control.EnrolmentCode{User: user, Code: code, Expires: exp}
		if err == nil {
			out.MailedTo = d.mailEnrolment(ctx, user, code, exp)
		}
		return err
	})
	return out, err
}

// Enrol sets the caller's first credentials with their enrolment code; with tokenCode, the
// PIN goes to the hardware token that gave it instead of a new soft token.
func (d *Daemon) Enrol(ctx context.Context, c control.Caller, code string, password, pin []byte, qs [3]control.Question, tokenCode string) (control.TokenCreated, error) {
	var out control.TokenCreated
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		en, err := t.EnrolWith(ctx, c.UID, code, password, pin, tokenQuestions(qs), tokenCode)
		out = control.TokenCreated{ID: en.TokenID, URL: en.URL}
		return err
	})
	return out, err
}

// Login starts a session for the caller's uid with a token code or an emergency code: from
// the socket one that replaces the uid's earlier dsh login, from the portal one beside it.
func (d *Daemon) Login(ctx context.Context, c control.Caller, user string, password, pin []byte, code, emergency string) (control.SessionView, error) {
	var started token.SessionInfo
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		var err error
		switch {
		case emergency != "" && (code != "" || len(pin) > 0):
			return fmt.Errorf("%w: give either a token code with its PIN or an emergency code, not both", control.ErrInvalid)
		case emergency != "":
			started, err = t.LoginICE(ctx, c.UID, user, password, emergency)
		default:
			started, err = t.Login(ctx, c.UID, user, password, pin, code)
		}
		return err
	})
	if err != nil {
		return control.SessionView{}, err
	}
	v, err := d.Session(ctx, c)
	v.Current = started.ID
	return v, err
}

// Logout ends the caller's sessions: from the socket (dsh logout) every session of the
// uid, from the portal (a web sign-out) only the portal's, never one started with dsh login.
func (d *Daemon) Logout(ctx context.Context, c control.Caller) error {
	return d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		ended := false
		if c.Portal() {
			ended = t.Sessions().EndPortal(ctx, c.UID)
		} else {
			ended = t.Sessions().Logout(ctx, c.UID)
		}
		if !ended {
			return fmt.Errorf("%w: uid %d has no session", control.ErrNotFound, c.UID)
		}
		return nil
	})
}

// sessionEntry is a session as the control socket shows it.
func sessionEntry(s token.SessionInfo) control.SessionEntry {
	ch := control.ChannelCommandLine
	if s.Portal {
		ch = control.ChannelPortal
	}
	return control.SessionEntry{ID: s.ID, Channel: ch, Method: string(s.Method), Started: s.Started, Expires: s.Expires}
}

// Session describes the caller's sessions and the shares they hold keys for.
func (d *Daemon) Session(ctx context.Context, c control.Caller) (control.SessionView, error) {
	out := control.SessionView{UID: c.UID, Shares: []control.ShareAccessView{}}
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		user, expires, ok := t.Sessions().Active(c.UID)
		if !ok {
			return nil
		}
		out.Active, out.User, out.Expires = true, user, expires
		for _, s := range t.Sessions().List(c.UID) {
			out.Sessions = append(out.Sessions, sessionEntry(s))
		}
		ring, ok := t.Sessions().Keyring(c.UID)
		if !ok {
			return nil
		}
		for _, sh := range d.acl.SharesOf(c.UID) {
			if ring.Has(sh.Share) {
				out.Shares = append(out.Shares, control.ShareAccessView{Share: sh.Share, Project: sh.Project, Mode: string(sh.Mode)})
			}
		}
		return nil
	})
	return out, err
}

func tokenView(t token.TokenInfo) control.TokenView {
	v := control.TokenView{ID: t.ID, Kind: t.Kind, Created: t.Created, LastUsed: t.LastUsed, Hardware: t.Hardware, PINSet: t.PINSet}
	if t.Hardware {
		v.Digits = t.Digits
		if t.Kind == "totp" {
			v.Period = t.Period
		}
	}
	return v
}

// ListTokens lists the session user's tokens.
func (d *Daemon) ListTokens(ctx context.Context, c control.Caller) ([]control.TokenView, error) {
	var out []control.TokenView
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		toks, err := t.ListTokens(ctx, c.UID)
		for _, tk := range toks {
			out = append(out, tokenView(tk))
		}
		return err
	})
	return out, err
}

// CreateToken adds a soft token to the session user.
func (d *Daemon) CreateToken(ctx context.Context, c control.Caller, pin []byte) (control.TokenCreated, error) {
	var out control.TokenCreated
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		en, err := t.CreateToken(ctx, c.UID, pin)
		out = control.TokenCreated{ID: en.TokenID, URL: en.URL}
		return err
	})
	return out, err
}

// RevokeToken deletes one of the session user's tokens; for the operator, it revokes the
// hardware token with serial id (a lost device reported to the service desk).
func (d *Daemon) RevokeToken(ctx context.Context, c control.Caller, id string) error {
	var err error
	if c.IsRoot() {
		err = d.revokeAsOperator(ctx, c, id)
	} else {
		err = d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
			return t.RevokeToken(ctx, c.UID, id)
		})
	}
	if err == nil {
		// A revoked token put back with an older copy of the metadata must be detected.
		d.checkpoint(context.WithoutCancel(ctx), "token")
	}
	return err
}

// SetPIN re-pins one of the session user's tokens.
func (d *Daemon) SetPIN(ctx context.Context, c control.Caller, id string, pin []byte) error {
	return d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		return t.SetPIN(ctx, c.UID, id, pin)
	})
}

// RequestICE issues an emergency code for the password and the three answers.
func (d *Daemon) RequestICE(ctx context.Context, c control.Caller, user string, password []byte, answers [3][]byte) (control.ICEResponse, error) {
	var out control.ICEResponse
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		code, exp, err := t.RequestICE(ctx, c.UID, user, password, answers)
		out = control.ICEResponse{Code: code, Expires: exp}
		return err
	})
	return out, err
}

// ChangePassword changes the caller's password after checking all three factors.
func (d *Daemon) ChangePassword(ctx context.Context, c control.Caller, current, pin []byte, code string, newPassword []byte) error {
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		return t.ChangePassword(ctx, c.UID, current, pin, code, newPassword)
	})
	if err == nil {
		// So is an old password put back with an older copy.
		d.checkpoint(context.WithoutCancel(ctx), "password")
	}
	return err
}

// tokenQuestions converts the control socket's questions for the token service; the
// answers are the same slices, wiped by the server after the call.
func tokenQuestions(qs [3]control.Question) [3]token.Question {
	var out [3]token.Question
	for i, q := range qs {
		out[i] = token.Question{Question: q.Question, Answer: q.Answer}
	}
	return out
}
