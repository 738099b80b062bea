package daemon

import (
	"context"
	"errors"
	"fmt"

	"dsh/acl"
	"dsh/control"
	"dsh/internal/secmem"
	"dsh/vault"
)

// keyWrapper wraps share and Arrivals keys under a key derived from the root key, so the acl
// package never holds the root key itself. The key lives in secret memory.
type keyWrapper struct{ key *vault.Key }

// wrapKeys holds the keyWrappers' keys: locked, out of core dumps.
var wrapKeys secmem.Pool[vault.Key]

func newKeyWrapper(k vault.Key) *keyWrapper {
	w := &keyWrapper{key: wrapKeys.Get()}
	*w.key = k
	k.Wipe()
	return w
}

// wipe wipes the key and gives its memory back; the wrapper is unusable afterwards.
func (w *keyWrapper) wipe() {
	if w.key != nil {
		w.key.Wipe()
		wrapKeys.Put(w.key)
		w.key = nil
	}
}

func (w *keyWrapper) Wrap(k *vault.Key, context []byte) (vault.WrappedKey, error) {
	return vault.WrapKey(w.key, k, context)
}

func (w *keyWrapper) Unwrap(wk vault.WrappedKey, context []byte) (vault.Key, error) {
	return vault.UnwrapKey(w.key, wk, context)
}

// withACL resolves the caller to an acl.Actor and runs fn with the unsealed acl store.
func (d *Daemon) withACL(ctx context.Context, c control.Caller, fn func(s *acl.Store, a acl.Actor) error) error {
	// A change that has started must finish and be audited as it happened, even when the
	// client hangs up: a cancelled context between the audit record and the commit would
	// leave a record of a change that was never made.
	ctx = context.WithoutCancel(ctx)
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.parts == nil || d.acl == nil {
		return fmt.Errorf("%w: %w", control.ErrUnavailable, vault.ErrSealed)
	}
	a, err := d.acl.ActorFor(ctx, c.UID)
	if err != nil {
		return aclError(err)
	}
	if user, _, ok := d.tok.Sessions().Active(c.UID); ok && a.User != "" && user == a.User {
		a.Session = true
	}
	return aclError(fn(d.acl, a))
}

// changeACL is withACL for a change: once it is made, the store moves to a new epoch, so
// that putting back a copy of the metadata from before it is detected at the next unseal.
func (d *Daemon) changeACL(ctx context.Context, c control.Caller, fn func(s *acl.Store, a acl.Actor) error) error {
	err := d.withACL(ctx, c, fn)
	if err == nil {
		d.checkpoint(context.WithoutCancel(ctx), "acl")
	}
	return err
}

// aclError gives acl's errors the control kinds that become HTTP statuses.
func aclError(err error) error { return withKind(err, aclKinds) }

var aclKinds = []kind{
	{acl.ErrInvalid, control.ErrInvalid},
	{acl.ErrNotFound, control.ErrNotFound},
	{acl.ErrExists, control.ErrConflict},
	{acl.ErrForbidden, control.ErrForbidden},
	{acl.ErrAudit, control.ErrUnavailable},
	{acl.ErrClosed, control.ErrUnavailable},
}

// kind maps a package's error to the control kind that becomes its HTTP status.
type kind struct{ from, to error }

// withKind gives err the control kind of the first entry of table it matches; err is
// returned unchanged when none does (an internal error, answered 500).
func withKind(err error, table []kind) error {
	for _, k := range table {
		if errors.Is(err, k.from) {
			return control.WithKind(k.to, err)
		}
	}
	return err
}

func userView(u acl.User) control.UserView {
	return control.UserView{ID: u.ID, UID: u.UID, Email: u.Email, Status: string(u.Status), Created: u.Created}
}

func projectView(p acl.Project) control.ProjectView {
	return control.ProjectView{Name: p.Name, IAO: p.IAO, IAAs: p.IAAs, Created: p.Created}
}

// CreateUser creates an account and adds it to the named shares. The shares are checked
// first, so a typo in one of them changes nothing.
func (d *Daemon) CreateUser(ctx context.Context, c control.Caller, req control.UserCreateRequest) (control.UserCreateResponse, error) {
	var out control.UserCreateResponse
	err := d.changeACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		for _, sh := range req.Shares {
			if _, err := s.ShareMembers(ctx, a, sh); err != nil {
				return err
			}
		}
		u, err := s.CreateUser(ctx, a, acl.NewUser{ID: req.ID, UID: req.UID, Email: req.Email})
		if err != nil {
			return err
		}
		out.User = userView(u)
		for _, sh := range req.Shares {
			if err := s.AddMember(ctx, a, sh, u.ID, acl.ReadWrite); err != nil {
				return fmt.Errorf("user %s was created, but adding it to share %s failed: %w", u.ID, sh, err)
			}
			out.Shares = append(out.Shares, sh)
		}
		code, exp, err := d.tok.CreateEnrolment(ctx, c.UID, u.ID)
		if err != nil {
			return fmt.Errorf("user %s was created, but no enrolment code could be issued (dsh user enrolment-code %s): %w", u.ID, u.ID, err)
		}
		out.Enrolment = control.EnrolmentCode{User: u.ID, Code: code, Expires: exp}
		out.Enrolment.MailedTo = d.mailEnrolment(ctx, u.ID, code, exp)
		return nil
	})
	return out, err
}

// SetUserEnabled disables or enables an account.
func (d *Daemon) SetUserEnabled(ctx context.Context, c control.Caller, id string, enabled bool) error {
	return d.changeACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		if enabled {
			return s.EnableUser(ctx, a, id)
		}
		if err := s.DisableUser(ctx, a, id); err != nil {
			return err
		}
		// Before the command returns, the user's sessions end and their keys are wiped.
		d.tok.Sessions().EndUser(ctx, id)
		return nil
	})
}

// ListUsers lists every account.
func (d *Daemon) ListUsers(ctx context.Context, c control.Caller) ([]control.UserView, error) {
	var out []control.UserView
	err := d.withACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		users, err := s.ListUsers(ctx, a)
		for _, u := range users {
			out = append(out, userView(u))
		}
		return err
	})
	return out, err
}

// CreateProject creates a project and names its IAO.
func (d *Daemon) CreateProject(ctx context.Context, c control.Caller, req control.ProjectCreateRequest) (control.ProjectView, error) {
	var out control.ProjectView
	err := d.changeACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		p, err := s.CreateProject(ctx, a, req.Name, req.IAO)
		out = projectView(p)
		return err
	})
	return out, err
}

// ListProjects lists projects.
func (d *Daemon) ListProjects(ctx context.Context, c control.Caller) ([]control.ProjectView, error) {
	var out []control.ProjectView
	err := d.withACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		ps, err := s.ListProjects(ctx, a)
		for _, p := range ps {
			out = append(out, projectView(p))
		}
		return err
	})
	return out, err
}

// SetIAA adds or removes an IAA of a project.
func (d *Daemon) SetIAA(ctx context.Context, c control.Caller, req control.IAARequest, add bool) error {
	return d.changeACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		if add {
			return s.AddIAA(ctx, a, req.Project, req.User)
		}
		return s.RemoveIAA(ctx, a, req.Project, req.User)
	})
}

// CreateShare creates a share against a project.
func (d *Daemon) CreateShare(ctx context.Context, c control.Caller, req control.ShareCreateRequest) (control.ShareView, error) {
	var out control.ShareView
	err := d.changeACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		sh, err := s.CreateShare(ctx, a, req.Name, req.Project)
		out = control.ShareView{Name: sh.Name, Project: sh.Project, Created: sh.Created}
		return err
	})
	return out, err
}

// AddMember adds a user to a share.
func (d *Daemon) AddMember(ctx context.Context, c control.Caller, req control.MemberRequest) error {
	mode := acl.ReadWrite
	if req.ReadOnly {
		mode = acl.ReadOnly
	}
	return d.changeACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		if err := s.AddMember(ctx, a, req.Share, req.User, mode); err != nil {
			return err
		}
		d.shareNotice(c, req.User, req.Share, true, string(mode))
		if err := d.tok.Sessions().GrantShare(ctx, req.User, req.Share); err != nil {
			return fmt.Errorf("%s was added to %s, but their current session could not receive the key (it will after their next login): %w", req.User, req.Share, err)
		}
		return nil
	})
}

// RemoveMember removes a user from a share.
func (d *Daemon) RemoveMember(ctx context.Context, c control.Caller, req control.MemberRequest) error {
	return d.changeACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		if err := s.RemoveMember(ctx, a, req.Share, req.User); err != nil {
			return err
		}
		// Before the command returns, the key leaves the user's live session.
		d.tok.Sessions().RevokeShare(req.User, req.Share)
		d.shareNotice(c, req.User, req.Share, false, "")
		return nil
	})
}

// ListShares lists the shares the caller belongs to or manages.
func (d *Daemon) ListShares(ctx context.Context, c control.Caller) ([]control.ShareAccessView, error) {
	var out []control.ShareAccessView
	err := d.withACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		shares, err := s.ListShares(ctx, a)
		for _, sh := range shares {
			out = append(out, control.ShareAccessView{Share: sh.Share, Project: sh.Project, Mode: string(sh.Mode), Manager: sh.Manager})
		}
		return err
	})
	return out, err
}

// ShareMembers lists the members of a share.
func (d *Daemon) ShareMembers(ctx context.Context, c control.Caller, share string) (control.MembersResponse, error) {
	out := control.MembersResponse{Share: share, Members: []control.MemberView{}}
	err := d.withACL(ctx, c, func(s *acl.Store, a acl.Actor) error {
		ms, err := s.ShareMembers(ctx, a, share)
		for _, m := range ms {
			out.Members = append(out.Members, control.MemberView{User: m.User, Mode: string(m.Mode), Status: string(m.Status)})
		}
		return err
	})
	return out, err
}
