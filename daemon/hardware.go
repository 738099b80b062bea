package daemon

import (
	"context"
	"io"

	"dsh/control"
	"dsh/mail"
	"dsh/pskc"
	"dsh/token"
)

// ImportTokens reads a vendor's seed file into the pool of hardware tokens (operator
// only; anyone else is refused before the body is read).
func (d *Daemon) ImportTokens(ctx context.Context, c control.Caller, format, name string, key []byte, body io.Reader) (control.ImportResponse, error) {
	if err := d.requireOperator(ctx, c, "token.hardware.import"); err != nil {
		return control.ImportResponse{}, err
	}
	data, err := io.ReadAll(body)
	defer clear(data)
	if err != nil {
		return control.ImportResponse{}, err
	}
	seeds, err := pskc.Parse(data, pskc.Format(format), key)
	if err != nil {
		return control.ImportResponse{}, control.WithKind(control.ErrInvalid, err)
	}
	defer pskc.WipeAll(seeds)
	if name == "" {
		name = "unnamed file"
	}
	var out control.ImportResponse
	err = d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		res, err := t.ImportHardware(ctx, c.UID, name, seeds)
		out = control.ImportResponse{Imported: nonNil(res.Imported), Skipped: nonNil(res.Skipped)}
		return err
	})
	return out, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ListHardware lists the pool (operator only).
func (d *Daemon) ListHardware(ctx context.Context, c control.Caller) ([]control.HardwareView, error) {
	if err := d.requireOperator(ctx, c, "token.hardware.list"); err != nil {
		return nil, err
	}
	var out []control.HardwareView
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		hs, err := t.ListHardware(ctx)
		for _, h := range hs {
			out = append(out, control.HardwareView{Serial: h.Serial, Kind: h.Kind, Digits: h.Digits, Period: h.Period, Algorithm: h.Algorithm,
				Manufacturer: h.Manufacturer, State: h.State, User: h.User, PINSet: h.PINSet, Imported: h.Imported, Changed: h.Changed, LastUsed: h.LastUsed})
		}
		return err
	})
	return out, err
}

// AssignHardware gives a device of the pool to a user (operator only).
func (d *Daemon) AssignHardware(ctx context.Context, c control.Caller, req control.AssignRequest) error {
	if err := d.requireOperator(ctx, c, "token.hardware.assign"); err != nil {
		return err
	}
	return d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		return t.AssignHardware(ctx, c.UID, req.Serial, req.User)
	})
}

// UnassignHardware takes a device back into the pool (operator only).
func (d *Daemon) UnassignHardware(ctx context.Context, c control.Caller, serial string) error {
	if err := d.requireOperator(ctx, c, "token.hardware.unassign"); err != nil {
		return err
	}
	return d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		return t.UnassignHardware(ctx, c.UID, serial)
	})
}

// ResyncToken resynchronises a hardware token: the operator's by serial (a user reading
// codes to the service desk), anyone else's their own, with a session.
func (d *Daemon) ResyncToken(ctx context.Context, c control.Caller, req control.ResyncRequest) error {
	return d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		if c.IsRoot() {
			return t.ResyncHardware(ctx, c.UID, req.ID, req.Code1, req.Code2)
		}
		return t.ResyncToken(ctx, c.UID, req.ID, req.Code1, req.Code2)
	})
}

// shareNotice tells user about a change of their membership of share.
func (d *Daemon) shareNotice(c control.Caller, user, share string, added bool, mode string) {
	n := mail.Notice{Kind: mail.NoticeShareRemoved, User: user, Object: share, Via: via(c)}
	if added {
		n.Kind, n.Detail = mail.NoticeShareAdded, "read-write"
		if mode == "ro" {
			n.Detail = "read-only"
		}
	}
	d.notify(n)
}

// revokeAsOperator revokes a hardware token by serial for the operator (dsh token revoke
// SERIAL as root): a lost device, reported to the service desk.
func (d *Daemon) revokeAsOperator(ctx context.Context, c control.Caller, serial string) error {
	return d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		return t.RevokeHardware(ctx, c.UID, serial)
	})
}
