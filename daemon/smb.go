package daemon

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"unicode"

	"dsh/audit"
	"dsh/control"
	"dsh/smb"
	"dsh/vault"
)

// SMBCheck decides a Samba tree connect. Samba runs `dsh smb check` as root on every tree
// connect (root preexec); the connect goes ahead only if the account's uid holds a live dsh
// session, so an SMB password alone opens nothing. Allowed and refused connects are both
// audited, naming the user; an allowed one that cannot be audited is refused.
func (d *Daemon) SMBCheck(ctx context.Context, c control.Caller, req control.SMBCheckRequest) (control.SMBCheckResponse, error) {
	if err := d.requireOperator(ctx, c, "smb.connect"); err != nil {
		return control.SMBCheckResponse{}, err
	}
	if err := validCheck(req); err != nil {
		return control.SMBCheckResponse{}, err
	}
	ctx = context.WithoutCancel(ctx)
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.tok == nil {
		return control.SMBCheckResponse{}, fmt.Errorf("%w: %w", control.ErrUnavailable, vault.ErrSealed)
	}
	e := audit.Entry{UID: int64(req.UID), Action: "smb.connect", Object: req.Share,
		Detail: fmt.Sprintf("account %s from %s", req.Account, req.Client)}
	if u, ok := d.acl.UserByUID(req.UID); ok {
		e.User = u.ID
	}
	user, expires, ok := d.tok.Sessions().Active(req.UID)
	if !ok || (e.User != "" && user != e.User) {
		e.Result, e.Detail = "denied", e.Detail+": no live dsh session"
		_, _ = d.parts.Audit.Append(ctx, e, audit.Buffered)
		return control.SMBCheckResponse{}, fmt.Errorf("%w: account %s (uid %d) has no live dsh session; log in first (dsh login or the portal)", control.ErrForbidden, req.Account, req.UID)
	}
	e.User, e.Result = user, "ok"
	if _, err := d.parts.Audit.Append(ctx, e, audit.Buffered); err != nil {
		return control.SMBCheckResponse{}, fmt.Errorf("%w: the audit log cannot be written; connect refused: %v", control.ErrUnavailable, err)
	}
	return control.SMBCheckResponse{User: user, Expires: expires}, nil
}

// validCheck refuses values Samba would never substitute: they are checked here rather than
// trusted, since they end up in the audit log.
func validCheck(req control.SMBCheckRequest) error {
	if req.UID < 0 {
		return fmt.Errorf("%w: uid %d", control.ErrInvalid, req.UID)
	}
	if !smb.ValidUnixName(req.Account) {
		return fmt.Errorf("%w: %q is not a Unix account name", control.ErrInvalid, req.Account)
	}
	if req.Share == "" || len(req.Share) > 80 {
		return fmt.Errorf("%w: the share name must be 1 to 80 characters", control.ErrInvalid)
	}
	for _, r := range req.Share {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: the share name holds an unprintable character", control.ErrInvalid)
		}
	}
	if net.ParseIP(req.Client) == nil {
		return fmt.Errorf("%w: client %q is not an IP address", control.ErrInvalid, req.Client)
	}
	return nil
}

// SMBPassword gives the caller a new random SMB password, set in the passdb of the Samba
// named by `dsh serve --smb-conf`, and returns it once. It needs a live two-factor session:
// the password is a second way to reach what the session opens, never a way around it.
func (d *Daemon) SMBPassword(ctx context.Context, c control.Caller) (control.SMBPasswordResponse, error) {
	if d.cfg.SMBConf == "" {
		return control.SMBPasswordResponse{}, fmt.Errorf("%w: this daemon does not know Samba's smb.conf (dsh serve --smb-conf FILE)", control.ErrUnavailable)
	}
	ctx = context.WithoutCancel(ctx)
	u, err := user.LookupId(strconv.Itoa(c.UID))
	if err != nil || !smb.ValidUnixName(u.Username) {
		return control.SMBPasswordResponse{}, fmt.Errorf("%w: uid %d has no Unix account on this host, which Samba needs; the operator adds one named by the user ID: useradd -M -N -s /usr/sbin/nologin -u %d ID", control.ErrNotFound, c.UID, c.UID)
	}
	account := u.Username
	// The session check and the audit record are made with the store held; smbpasswd runs
	// after, so a seal never waits for Samba's tool.
	audited := func(result, detail string) error {
		d.mu.RLock()
		defer d.mu.RUnlock()
		if d.tok == nil {
			return fmt.Errorf("%w: %w", control.ErrUnavailable, vault.ErrSealed)
		}
		user, _, ok := d.tok.Sessions().Active(c.UID)
		if u, known := d.acl.UserByUID(c.UID); known && user == "" {
			user = u.ID
		}
		e := audit.Entry{UID: int64(c.UID), User: user, Action: "smb.password", Object: account, Result: result, Detail: detail}
		if !ok && result == "ok" {
			e.Result, e.Detail = "denied", "no live dsh session"
			_, _ = d.parts.Audit.Append(ctx, e, audit.Buffered)
			return fmt.Errorf("%w: setting an SMB password needs an active two-factor session (dsh login)", control.ErrForbidden)
		}
		if _, err := d.parts.Audit.Append(ctx, e, audit.Durable); err != nil && result == "ok" {
			return fmt.Errorf("%w: the audit log cannot be written: %v", control.ErrUnavailable, err)
		}
		return nil
	}
	if err := audited("ok", ""); err != nil {
		return control.SMBPasswordResponse{}, err
	}
	pw, err := smb.NewPassword()
	if err != nil {
		return control.SMBPasswordResponse{}, err
	}
	defer clear(pw)
	if err := smb.SetPassword(ctx, d.cfg.SMBConf, account, pw); err != nil {
		_ = audited("error", "smbpasswd failed")
		d.log.Error("smb: setting an SMB password failed", "uid", c.UID, "err", err)
		return control.SMBPasswordResponse{}, fmt.Errorf("%w: Samba did not take the new password (see the daemon's log)", control.ErrUnavailable)
	}
	return control.SMBPasswordResponse{Account: account, Password: string(pw)}, nil
}
