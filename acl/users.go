package acl

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// now is when a record is created: UTC, to the microsecond, so it reads the same after
// a round trip through JSON on every host.
func (s *Store) now() time.Time {
	return s.opts.Now().UTC().Truncate(time.Microsecond)
}

// CreateUser creates an active account with its own Arrivals key. Only the operator may.
// The ID and the uid must both be new: a uid belongs to one user at most.
func (s *Store) CreateUser(ctx context.Context, a Actor, nu NewUser) (User, error) {
	u := User{ID: nu.ID, UID: nu.UID, Email: nu.Email, Status: StatusActive, Created: s.now()}
	var wrapped []byte
	c := change{
		action: "user.create",
		object: fmt.Sprintf("user %s uid %d email %s", show(nu.ID), nu.UID, showEmail(nu.Email)),
		check: func(st state, p principal) (string, error) {
			if err := requireOperator(p, "create users"); err != nil {
				return "", err
			}
			if err := firstErr(checkID("user ID", nu.ID), checkUID(nu.UID), checkEmail(nu.Email)); err != nil {
				return "", err
			}
			if old, err := st.user(nu.ID); err != nil || old != nil {
				return "", orErr(err, fail(ErrExists, fmt.Sprintf("user %s already exists", nu.ID)))
			}
			old, err := st.userByUID(nu.UID)
			if err != nil {
				return "", err
			}
			if old != nil {
				return "", fail(ErrExists, fmt.Sprintf("uid %d already belongs to user %s", nu.UID, old.ID))
			}
			return "", nil
		},
		write: func(w *writer) error {
			if err := w.setJSON(userKey(u.ID), userRecord{User: u, ArrivalsKey: wrapped}); err != nil {
				return err
			}
			return w.set(uidKey(u.UID), []byte(u.ID))
		},
	}
	// The key is made once, outside the transaction that may run several times; an
	// invalid ID must not reach the wrapping context, so it waits for a valid one.
	if checkID("user ID", nu.ID) == nil {
		var err error
		if wrapped, err = s.newWrappedKey(arrivalsContext(nu.ID)); err != nil {
			return User{}, fmt.Errorf("acl: create user %s: %w", nu.ID, err)
		}
	}
	if err := s.run(ctx, a, c); err != nil {
		return User{}, err
	}
	return u, nil
}

// DisableUser disables an account: it is refused every access and action until enabled,
// and keeps its memberships and roles for then. Only the operator may.
func (s *Store) DisableUser(ctx context.Context, a Actor, id string) error {
	return s.setStatus(ctx, a, id, StatusDisabled, "user.disable")
}

// EnableUser enables a disabled account, restoring its memberships and roles as they were.
// Only the operator may.
func (s *Store) EnableUser(ctx context.Context, a Actor, id string) error {
	return s.setStatus(ctx, a, id, StatusActive, "user.enable")
}

func (s *Store) setStatus(ctx context.Context, a Actor, id string, to Status, action string) error {
	return s.run(ctx, a, change{
		action: action,
		object: "user " + show(id),
		check: func(st state, p principal) (string, error) {
			if err := requireOperator(p, "disable or enable users"); err != nil {
				return "", err
			}
			if err := checkID("user ID", id); err != nil {
				return "", err
			}
			u, err := st.user(id)
			switch {
			case err != nil:
				return "", err
			case u == nil:
				return "", fail(ErrNotFound, fmt.Sprintf("user %s not found", id))
			case u.Status == to:
				return "", fail(ErrExists, fmt.Sprintf("user %s is already %s", id, to))
			}
			return "", nil
		},
		write: func(w *writer) error {
			r, err := w.userRecord(id)
			if err != nil {
				return err
			}
			r.Status = to
			return w.setJSON(userKey(id), r)
		},
	})
}

// ListUsers returns every account, sorted by ID. Only the operator may.
func (s *Store) ListUsers(ctx context.Context, a Actor) ([]User, error) {
	snap, p, err := s.listing(ctx, a, "user.list", "users")
	if err != nil {
		return nil, err
	}
	if err := requireOperator(p, "list users"); err != nil {
		return nil, s.refused(ctx, a, p, "user.list", "users", err)
	}
	out := make([]User, 0, len(snap.users))
	for _, u := range snap.users {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(x, y User) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

// CreateProject creates a project and names its IAO, who must be an active user. Only the
// operator may.
func (s *Store) CreateProject(ctx context.Context, a Actor, name, iao string) (Project, error) {
	proj := Project{Name: name, IAO: iao, IAAs: []string{}, Created: s.now()}
	err := s.run(ctx, a, change{
		action: "project.create",
		object: fmt.Sprintf("project %s iao %s", show(name), show(iao)),
		check: func(st state, p principal) (string, error) {
			if err := requireOperator(p, "create projects"); err != nil {
				return "", err
			}
			if err := firstErr(checkID("project name", name), checkID("user ID", iao)); err != nil {
				return "", err
			}
			if old, err := st.project(name); err != nil || old != nil {
				return "", orErr(err, fail(ErrExists, fmt.Sprintf("project %s already exists", name)))
			}
			return "", activeUser(st, iao, "the IAO")
		},
		write: func(w *writer) error { return w.setJSON(projectKey(name), proj) },
	})
	if err != nil {
		return Project{}, err
	}
	return proj, nil
}

// ListProjects returns, sorted by name, every project to the operator, and to anyone else
// the projects they are the IAO or an IAA of.
func (s *Store) ListProjects(ctx context.Context, a Actor) ([]Project, error) {
	snap, p, err := s.listing(ctx, a, "project.list", "projects")
	if err != nil {
		return nil, err
	}
	out := []Project{}
	for _, proj := range snap.projects {
		if isIAO, isIAA := roles(p, proj); p.operator || isIAO || isIAA {
			out = append(out, cloneProject(proj))
		}
	}
	slices.SortFunc(out, func(x, y Project) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// AddIAA makes user an IAA of project. The IAO (or the operator) may; user must exist.
func (s *Store) AddIAA(ctx context.Context, a Actor, project, user string) error {
	return s.setIAA(ctx, a, project, user, true)
}

// RemoveIAA removes user from the IAAs of project. The IAO (or the operator) may.
func (s *Store) RemoveIAA(ctx context.Context, a Actor, project, user string) error {
	return s.setIAA(ctx, a, project, user, false)
}

func (s *Store) setIAA(ctx context.Context, a Actor, project, user string, add bool) error {
	action := "project.iaa_remove"
	if add {
		action = "project.iaa_add"
	}
	var next Project
	return s.run(ctx, a, change{
		action: action,
		object: fmt.Sprintf("project %s iaa %s", show(project), show(user)),
		check: func(st state, p principal) (string, error) {
			if err := firstErr(checkID("project name", project), checkID("user ID", user)); err != nil {
				return "", err
			}
			proj, err := st.project(project)
			if err != nil {
				return "", err
			}
			if err := s.requireManager(p, a, proj, project, true); err != nil {
				return "", err
			}
			if u, err := st.user(user); err != nil || u == nil {
				return "", orErr(err, fail(ErrNotFound, fmt.Sprintf("user %s not found", user)))
			}
			next = cloneProject(proj)
			has := slices.Contains(proj.IAAs, user)
			switch {
			case add && user == proj.IAO:
				return "", fail(ErrInvalid, fmt.Sprintf("%s is the IAO of project %s, and cannot also be an IAA", user, project))
			case add && has:
				return "", fail(ErrExists, fmt.Sprintf("%s is already an IAA of project %s", user, project))
			case !add && !has:
				return "", fail(ErrNotFound, fmt.Sprintf("%s is not an IAA of project %s", user, project))
			case add:
				next.IAAs = append(next.IAAs, user)
				slices.Sort(next.IAAs)
			default:
				next.IAAs = slices.DeleteFunc(next.IAAs, func(x string) bool { return x == user })
			}
			return "", nil
		},
		write: func(w *writer) error { return w.setJSON(projectKey(project), next) },
	})
}

// activeUser checks that id names an existing, active account.
func activeUser(st state, id, role string) error {
	u, err := st.user(id)
	switch {
	case err != nil:
		return err
	case u == nil:
		return fail(ErrNotFound, fmt.Sprintf("user %s not found", id))
	case u.Status != StatusActive:
		return fail(ErrInvalid, fmt.Sprintf("user %s is disabled and cannot be %s", id, role))
	}
	return nil
}

// listing authenticates a for a read-only listing against the current snapshot; a refusal
// is audited like any other.
func (s *Store) listing(ctx context.Context, a Actor, action, object string) (*snapshot, principal, error) {
	if err := s.checkOpen(); err != nil {
		return nil, principal{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, principal{}, fmt.Errorf("acl: %s: %w", action, err)
	}
	snap := s.snap.Load()
	p, err := authenticate(snapState{snap}, a)
	if err != nil {
		return nil, p, s.refused(ctx, a, p, action, object, err)
	}
	return snap, p, nil
}

func cloneProject(p *Project) Project {
	cp := *p
	cp.IAAs = slices.Clone(p.IAAs)
	if cp.IAAs == nil {
		cp.IAAs = []string{}
	}
	return cp
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// orErr returns err if it is set, else refusal: the usual "lookup failed or found the
// wrong thing" in one line.
func orErr(err, refusal error) error {
	if err != nil {
		return err
	}
	return refusal
}
