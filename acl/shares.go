package acl

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// CreateShare creates share name in project with a new random share key. The IAO or an IAA
// of the project (or the operator) may. Share names are unique across all projects.
func (s *Store) CreateShare(ctx context.Context, a Actor, name, project string) (Share, error) {
	sh := Share{Name: name, Project: project, Created: s.now()}
	var wrapped []byte
	c := change{
		action: "share.create",
		object: fmt.Sprintf("share %s project %s", show(name), show(project)),
		check: func(st state, p principal) (string, error) {
			if err := firstErr(checkID("share name", name), checkID("project name", project)); err != nil {
				return "", err
			}
			proj, err := st.project(project)
			if err != nil {
				return "", err
			}
			if err := s.requireManager(p, a, proj, project, false); err != nil {
				return "", err
			}
			if old, err := st.share(name); err != nil || old != nil {
				return "", orErr(err, fail(ErrExists, fmt.Sprintf("share %s already exists", name)))
			}
			return "", nil
		},
		write: func(w *writer) error {
			return w.setJSON(shareKey(name), shareRecord{Share: sh, Key: wrapped})
		},
	}
	if checkID("share name", name) == nil {
		var err error
		if wrapped, err = s.newWrappedKey(shareContext(name)); err != nil {
			return Share{}, fmt.Errorf("acl: create share %s: %w", name, err)
		}
	}
	if err := s.run(ctx, a, c); err != nil {
		return Share{}, err
	}
	return sh, nil
}

// AddMember makes user a member of share with mode. A manager of the share's project may.
// Adding someone who is already a member with another mode changes their mode (the audit
// detail says from which); with the same mode it fails with ErrExists. A disabled user may
// be added: the membership takes effect when the account is enabled.
func (s *Store) AddMember(ctx context.Context, a Actor, share, user string, mode Mode) error {
	return s.run(ctx, a, change{
		action: "share.add",
		object: fmt.Sprintf("share %s user %s %s", show(share), show(user), show(string(mode))),
		check: func(st state, p principal) (string, error) {
			if err := firstErr(checkID("share name", share), checkID("user ID", user), checkMode(mode)); err != nil {
				return "", err
			}
			if _, err := s.requireShareManager(st, p, a, share); err != nil {
				return "", err
			}
			if u, err := st.user(user); err != nil || u == nil {
				return "", orErr(err, fail(ErrNotFound, fmt.Sprintf("user %s not found", user)))
			}
			old, err := st.mode(share, user)
			switch {
			case err != nil:
				return "", err
			case old == mode:
				return "", fail(ErrExists, fmt.Sprintf("%s is already a member of share %s (%s)", user, share, mode))
			case old != "":
				return "mode was " + string(old), nil
			}
			return "", nil
		},
		write: func(w *writer) error { return w.setMember(share, user, mode) },
	})
}

// RemoveMember ends user's membership of share. A manager of the share's project may.
func (s *Store) RemoveMember(ctx context.Context, a Actor, share, user string) error {
	return s.run(ctx, a, change{
		action: "share.remove",
		object: fmt.Sprintf("share %s user %s", show(share), show(user)),
		check: func(st state, p principal) (string, error) {
			if err := firstErr(checkID("share name", share), checkID("user ID", user)); err != nil {
				return "", err
			}
			if _, err := s.requireShareManager(st, p, a, share); err != nil {
				return "", err
			}
			old, err := st.mode(share, user)
			switch {
			case err != nil:
				return "", err
			case old == "":
				return "", fail(ErrNotFound, fmt.Sprintf("%s is not a member of share %s", user, share))
			}
			return "mode was " + string(old), nil
		},
		write: func(w *writer) error { return w.delMember(share, user) },
	})
}

// ShareMembers lists the members of share, sorted by user ID. A manager of the share's
// project may.
func (s *Store) ShareMembers(ctx context.Context, a Actor, share string) ([]Member, error) {
	const action = "share.members"
	object := "share " + show(share)
	snap, p, err := s.listing(ctx, a, action, object)
	if err != nil {
		return nil, err
	}
	if err := checkID("share name", share); err != nil {
		return nil, s.refused(ctx, a, p, action, object, err)
	}
	if _, err := s.requireShareManager(snapState{snap}, p, a, share); err != nil {
		return nil, s.refused(ctx, a, p, action, object, err)
	}
	out := []Member{}
	for user, mode := range snap.members[share] {
		m := Member{User: user, Mode: mode}
		if u := snap.users[user]; u != nil {
			m.Status = u.Status
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(x, y Member) int { return strings.Compare(x.User, y.User) })
	return out, nil
}

// ListShares returns, sorted by name, the shares a may see: those it is a member of (Mode
// set) and those of the projects it manages (Manager set); for the operator, every share.
func (s *Store) ListShares(ctx context.Context, a Actor) ([]ShareAccess, error) {
	snap, p, err := s.listing(ctx, a, "share.list", "shares")
	if err != nil {
		return nil, err
	}
	out := []ShareAccess{}
	for name, sh := range snap.shares {
		acc := ShareAccess{Share: name, Project: sh.Project}
		if !p.operator {
			acc.Mode = snap.members[name][p.user]
		}
		isIAO, isIAA := roles(p, snap.projects[sh.Project])
		acc.Manager = p.operator || isIAO || isIAA
		if acc.Mode != "" || acc.Manager {
			out = append(out, acc)
		}
	}
	slices.SortFunc(out, func(x, y ShareAccess) int { return strings.Compare(x.Share, y.Share) })
	return out, nil
}
