package acl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dsh/audit"
	"dsh/kv"
)

// Store is the ACL state of one dsh store. Its methods are safe for concurrent use. It must
// be the only writer of acl/ keys in its kv.Store, since its snapshot replays only its own
// writes.
type Store struct {
	kv      kv.Store
	wrapper KeyWrapper
	auditor Auditor
	opts    Options

	snap   atomic.Pointer[snapshot]
	closed atomic.Bool

	// writeMu is held from the start of a change's kv.Update until its snapshot is
	// published, so snapshots are published in commit order and the re-check inside the
	// Update sees every earlier change. Decide never takes it.
	writeMu sync.Mutex

	// testHookBeforeUpdate runs between a change's audit record and its Update; tests use
	// it to change the state in that window.
	testHookBeforeUpdate func()
}

// New loads the ACL state from st and returns the Store that guards it. wrapper wraps the
// keys of new shares and users; auditor records every change and refusal.
func New(st kv.Store, wrapper KeyWrapper, auditor Auditor, opts Options) (*Store, error) {
	if st == nil || wrapper == nil || auditor == nil {
		return nil, errors.New("acl: new: kv store, key wrapper and auditor are all required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	snap, err := loadSnapshot(context.Background(), st)
	if err != nil {
		return nil, err
	}
	s := &Store{kv: st, wrapper: wrapper, auditor: auditor, opts: opts}
	s.snap.Store(snap)
	return s, nil
}

// Close empties the Store's cache, so that Decide denies everything (as for a uid without an
// account), and makes every later method fail with ErrClosed. The daemon calls it when it
// seals the vault. It does not close the kv.Store, which the caller owns.
func (s *Store) Close() {
	s.closed.Store(true)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.snap.Store(emptySnapshot())
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// ActorFor returns the Actor for a caller's uid as the stored state knows it now: Operator
// for uid 0, User for a uid that has an account. Session is left false for the token
// service to set. A uid without an account is not an error: each action refuses it.
func (s *Store) ActorFor(ctx context.Context, uid int) (Actor, error) {
	if err := s.checkOpen(); err != nil {
		return Actor{}, err
	}
	if err := ctx.Err(); err != nil {
		return Actor{}, fmt.Errorf("acl: actor for uid %d: %w", uid, err)
	}
	if uid < 0 {
		return Actor{}, fail(ErrInvalid, fmt.Sprintf("uid %d is invalid", uid))
	}
	a := Actor{UID: uid, Operator: uid == 0}
	if u := s.snap.Load().byUID[uid]; u != nil {
		a.User = u.ID
	}
	return a, nil
}

// UserByUID returns the account of uid, disabled or not.
func (s *Store) UserByUID(uid int) (User, bool) {
	u := s.snap.Load().byUID[uid]
	if u == nil {
		return User{}, false
	}
	return *u, true
}

// principal is an Actor checked against the stored state: the operator, or an active user.
type principal struct {
	operator bool
	user     string
}

// authenticate checks a against st. It trusts only a.UID (from the peer credentials) and
// a.Session; a User or Operator field that disagrees with the state is refused, so that a
// caller's stale or hand-made Actor can never lend it a role.
func authenticate(st state, a Actor) (principal, error) {
	if a.Operator != (a.UID == 0) {
		return principal{}, fail(ErrForbidden, fmt.Sprintf("actor uid %d does not match its operator flag", a.UID))
	}
	if a.UID == 0 {
		if a.User != "" {
			return principal{}, fail(ErrForbidden, "the operator (uid 0) has no DSH account")
		}
		return principal{operator: true}, nil
	}
	u, err := st.userByUID(a.UID)
	if err != nil {
		return principal{}, err
	}
	switch {
	case u == nil:
		return principal{}, fail(ErrForbidden, fmt.Sprintf("uid %d has no DSH account", a.UID))
	case a.User != "" && a.User != u.ID:
		return principal{}, fail(ErrForbidden, fmt.Sprintf("uid %d belongs to %s, not %s", a.UID, u.ID, show(a.User)))
	case u.Status != StatusActive:
		return principal{}, fail(ErrForbidden, fmt.Sprintf("user %s is disabled", u.ID))
	}
	return principal{user: u.ID}, nil
}

func requireOperator(p principal, what string) error {
	if !p.operator {
		return fail(ErrForbidden, fmt.Sprintf("only the operator may %s", what))
	}
	return nil
}

// requireManager is the one place that says who may manage a project: the operator, its
// IAO, and (unless iaoOnly) its IAAs; IAO and IAA actions also need a two-factor session
// when Options.RequireSession is set. A caller who does not manage the project is refused
// the same way whether or not it exists (proj nil), so refusals reveal nothing.
func (s *Store) requireManager(p principal, a Actor, proj *Project, name string, iaoOnly bool) error {
	if p.operator {
		if proj == nil {
			return fail(ErrNotFound, fmt.Sprintf("project %s not found", name))
		}
		return nil
	}
	isIAO, isIAA := roles(p, proj)
	switch {
	case iaoOnly && !isIAO:
		return fail(ErrForbidden, fmt.Sprintf("%s is not the IAO of project %s", p.user, name))
	case !isIAO && !isIAA:
		return fail(ErrForbidden, fmt.Sprintf("%s is not the IAO or an IAA of project %s", p.user, name))
	case s.opts.RequireSession && !a.Session:
		return fail(ErrForbidden, fmt.Sprintf("%s needs an active two-factor session (dsh login) to manage project %s", p.user, name))
	}
	return nil
}

// roles says whether a user p is the IAO or an IAA of proj (which may be nil).
func roles(p principal, proj *Project) (isIAO, isIAA bool) {
	if proj == nil || p.user == "" {
		return false, false
	}
	return proj.IAO == p.user, slices.Contains(proj.IAAs, p.user)
}

// requireShareManager authorizes an action on share name: the caller must manage its
// project. To a caller who may not see every share, an unknown share is refused exactly like
// a share of someone else's project, so nobody can probe which shares exist.
func (s *Store) requireShareManager(st state, p principal, a Actor, name string) (*Share, error) {
	sh, err := st.share(name)
	if err != nil {
		return nil, err
	}
	var proj *Project
	if sh != nil {
		if proj, err = st.project(sh.Project); err != nil {
			return nil, err
		}
	}
	if p.operator && sh == nil {
		return nil, fail(ErrNotFound, fmt.Sprintf("share %s not found", name))
	}
	if isIAO, isIAA := roles(p, proj); !p.operator && !isIAO && !isIAA {
		return nil, fail(ErrForbidden, fmt.Sprintf("%s may not manage share %s: not the IAO or an IAA of its project, or no such share", p.user, name))
	}
	if err := s.requireManager(p, a, proj, sh.Project, false); err != nil {
		return nil, err
	}
	return sh, nil
}

// change is one audited change of the state.
type change struct {
	action, object string
	// check validates the arguments, authorizes p and checks the preconditions against st;
	// it returns a short detail for the audit record. It runs twice: in a read transaction
	// before the audit record, and again inside the Update, where a failure means the state
	// changed in between.
	check func(st state, p principal) (detail string, err error)
	// write makes the change; it runs inside the Update, right after check.
	write func(w *writer) error
}

// run makes one change: check (refusals are audited and returned), write the "ok" audit
// record durably (refusing the change if that fails), then commit with the check repeated
// inside the transaction, and publish the new snapshot before returning.
func (s *Store) run(ctx context.Context, a Actor, c change) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	var p principal
	var detail string
	err := s.kv.View(ctx, func(tx kv.Txn) error {
		var err error
		st := txnState{tx}
		if p, err = authenticate(st, a); err != nil {
			return err
		}
		detail, err = c.check(st, p)
		return err
	})
	if err != nil {
		return s.refused(ctx, a, p, c.action, c.object, err)
	}
	if _, err := s.auditor.Append(ctx, s.entry(a, p, c.action, c.object, "ok", detail), audit.Durable); err != nil {
		return fmt.Errorf("%s %s refused: %w: %w", c.action, c.object, ErrAudit, err)
	}
	if s.testHookBeforeUpdate != nil {
		s.testHookBeforeUpdate()
	}
	if err := s.commit(ctx, a, c); err != nil {
		// The "ok" record above said the change was about to happen; this one says it did
		// not. It is durable for the same reason, and written even if ctx has ended.
		e := s.entry(a, p, c.action, c.object, "error", shortErr(err))
		if _, aerr := s.auditor.Append(context.WithoutCancel(ctx), e, audit.Durable); aerr != nil {
			return fmt.Errorf("%w; recording the failure in the audit log also failed: %w", err, aerr)
		}
		return err
	}
	return nil
}

func (s *Store) commit(ctx context.Context, a Actor, c change) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	var w *writer
	err := s.kv.Update(ctx, func(tx kv.Txn) error {
		w = &writer{txnState: txnState{tx}}
		p, err := authenticate(w, a)
		if err != nil {
			return err
		}
		if _, err := c.check(w, p); err != nil {
			return err
		}
		return c.write(w)
	})
	if err != nil {
		return err
	}
	b := newBuilder(s.snap.Load())
	for _, ch := range w.changes {
		if err := b.apply(ch.key, ch.val, ch.val == nil); err != nil {
			// Our own write failed to replay: the cache can no longer be trusted, so load
			// it again from what was committed, or else deny everything until the daemon
			// opens the store again (fail closed).
			snap, lerr := loadSnapshot(context.WithoutCancel(ctx), s.kv)
			if lerr != nil {
				s.snap.Store(emptySnapshot())
				return fmt.Errorf("acl: %s committed but the cache could not be rebuilt: %w", c.action, lerr)
			}
			s.snap.Store(snap)
			return nil
		}
	}
	s.snap.Store(b.s)
	return nil
}

// refused audits a refusal and returns err, joined with the audit error if that failed too.
// Refusals are Buffered: nothing takes effect, so there is nothing to hold back.
func (s *Store) refused(ctx context.Context, a Actor, p principal, action, object string, err error) error {
	result := "error"
	if errors.Is(err, ErrForbidden) {
		result = "denied"
	}
	e := s.entry(a, p, action, object, result, shortErr(err))
	if _, aerr := s.auditor.Append(context.WithoutCancel(ctx), e, audit.Buffered); aerr != nil {
		return fmt.Errorf("%w; recording the refusal in the audit log also failed: %w", err, aerr)
	}
	return err
}

// entry names the actor by the account the state gave it, or else by what it claimed.
func (s *Store) entry(a Actor, p principal, action, object, result, detail string) audit.Entry {
	user := p.user
	if user == "" && !p.operator && a.User != "" {
		user = show(a.User)
	}
	return audit.Entry{UID: int64(a.UID), User: user, Action: action, Object: object, Result: result, Detail: detail}
}

// maxDetail bounds the error text kept in an audit record.
const maxDetail = 512

func shortErr(err error) string {
	msg := err.Error()
	if len(msg) > maxDetail {
		msg = strings.ToValidUTF8(msg[:maxDetail], "") + "..."
	}
	return msg
}

// UserByID returns the account with user ID id, disabled or not.
func (s *Store) UserByID(id string) (User, bool) {
	u := s.snap.Load().users[id]
	if u == nil {
		return User{}, false
	}
	return *u, true
}

// UserIDs lists the IDs of every account, enabled or not, for the daemon's own sweeps
// (such as Arrivals retention), which act for no caller and so are neither checked nor
// audited here.
func (s *Store) UserIDs() []string {
	snap := s.snap.Load()
	out := make([]string, 0, len(snap.users))
	for id := range snap.users {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
