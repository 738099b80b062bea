// Package acl owns who may do what in a dsh store: users, projects with their IAO and IAAs,
// shares with their wrapped keys, memberships, and the access decision that every filesystem
// open asks for.
//
// Authority is enforced here and nowhere else: every method that changes or lists the state
// takes the Actor asking, checks its role against the stored state, writes an audit record
// before the change takes effect (refusing the change when the record cannot be written),
// and only then commits. Refusals are audited too; allowed reads (listings, Decide) are not,
// and the filesystem audits its own decisions. Decide answers from an in-memory snapshot
// that every change through this Store replaces before the changing method returns.
//
// The package must never decide from anything but the stored state (the snapshot is only a
// copy of it, rebuilt from the same keys), never trust a role that the caller claims without
// checking it against that state, and never see the root key: share and Arrivals keys are
// wrapped and unwrapped through the narrow KeyWrapper the daemon hands in.
//
// Roles, as decided for dsh:
//
//   - The operator (uid 0) creates, disables, enables and lists users, creates and lists
//     projects, and may also do everything an IAO may on every project (a haven's service
//     desk adds members when it creates an account). The operator has no DSH account, so
//     Decide denies it every file access, like any other uid without one.
//   - The IAO of a project adds and removes its IAAs, and does what an IAA does.
//   - An IAA (and the IAO) creates shares against the project, adds and removes members,
//     changes a member's mode by adding it again, and lists members.
//   - Anyone with an active account lists the shares they are a member of or manage.
//   - A disabled account keeps its roles and memberships (enabling restores them) but is
//     refused every action and every access while disabled.
//
// Outsiders learn nothing about shares and projects they do not manage: an action on a
// share or project that the caller does not manage fails with ErrForbidden whether or not it
// exists; only the operator, who may see everything, is told ErrNotFound. Share names are one
// namespace across projects, so a manager creating a share does learn that a name is taken
// (ErrExists); managers are few and named by the operator.
package acl

import (
	"errors"
	"time"

	"dsh/audit"
	"dsh/vault"
)

// Errors of every method. Callers (the daemon maps them to HTTP statuses) match them with
// errors.Is; the message of the returned error is one line that names the thing.
var (
	// ErrInvalid: a malformed user ID, project or share name, e-mail, uid or mode, or an
	// argument that the state makes meaningless (an IAO that is disabled).
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: an unknown user, project or share (told only to a caller who may know of
	// it), or removing someone who is not a member or not an IAA.
	ErrNotFound = errors.New("not found")
	// ErrExists: a duplicate name, a uid that already belongs to a user, or a change that is
	// already in effect (a member added again with the same mode, a disabled user disabled).
	ErrExists = errors.New("already exists")
	// ErrForbidden: the caller's role does not allow the action, its account is disabled or
	// missing, or it lacks the two-factor session that Options.RequireSession asks for.
	ErrForbidden = errors.New("forbidden")
	// ErrAudit: the audit record of a change could not be written, so the change was not made.
	ErrAudit = errors.New("audit record could not be written")
	// ErrClosed: the Store was closed (the vault is sealed).
	ErrClosed = errors.New("acl store is closed")
)

// aclError carries one of the sentinels above while printing only its own message, so that
// the one line a user sees names the thing without a redundant "not found: ... not found".
type aclError struct {
	kind error
	msg  string
}

func (e *aclError) Error() string { return e.msg }
func (e *aclError) Unwrap() error { return e.kind }

func fail(kind error, msg string) error { return &aclError{kind: kind, msg: msg} }

// Status is the state of a user account.
type Status string

// Account states.
const (
	StatusActive   Status = "active"
	StatusDisabled Status = "disabled"
)

// Mode is how a member may use a share.
type Mode string

// Membership modes; these strings are stored, so they never change.
const (
	ReadWrite Mode = "rw"
	ReadOnly  Mode = "ro"
)

func (m Mode) valid() bool { return m == ReadWrite || m == ReadOnly }

// User is a DSH account.
type User struct {
	ID      string    `json:"id"`
	UID     int       `json:"uid"`
	Email   string    `json:"email"`
	Status  Status    `json:"status"`
	Created time.Time `json:"created"`
}

// NewUser is what the operator gives to create an account.
type NewUser struct {
	ID    string `json:"id"`
	UID   int    `json:"uid"`
	Email string `json:"email"`
}

// Project is a research project: it owns shares and names who manages them.
type Project struct {
	Name    string    `json:"name"`
	IAO     string    `json:"iao"`
	IAAs    []string  `json:"iaas"`
	Created time.Time `json:"created"`
}

// Share is a Group folder belonging to a project.
type Share struct {
	Name    string    `json:"name"`
	Project string    `json:"project"`
	Created time.Time `json:"created"`
}

// Member is one member of a share as its managers see it.
type Member struct {
	User   string `json:"user"`
	Mode   Mode   `json:"mode"`
	Status Status `json:"status"`
}

// ShareAccess says why a share is listed for someone: Mode is their membership ("" when they
// are not a member), Manager that they are the IAO or an IAA of its project (or the operator).
type ShareAccess struct {
	Share   string `json:"share"`
	Project string `json:"project"`
	Mode    Mode   `json:"mode,omitempty"`
	Manager bool   `json:"manager"`
}

// Actor is who asks for an action. Build it with Store.ActorFor; the token service sets
// Session. Only UID and Session are trusted: the Store checks User and Operator against the
// stored state and refuses an Actor whose fields disagree with it.
type Actor struct {
	// UID is the caller's Linux uid, from the socket's peer credentials.
	UID int
	// User is the DSH user ID of UID, "" when the uid has none.
	User string
	// Operator is true exactly when UID is 0.
	Operator bool
	// Session says that the caller holds an active two-factor session.
	Session bool
}

// KeyWrapper wraps and unwraps share and Arrivals keys under a key the acl package never
// sees (the daemon derives it from the root key). context binds a wrapped key to its record.
type KeyWrapper interface {
	Wrap(k *vault.Key, context []byte) (vault.WrappedKey, error)
	Unwrap(w vault.WrappedKey, context []byte) (vault.Key, error)
}

// Auditor is where the Store records changes and refusals; *audit.Log is one.
type Auditor = audit.Appender

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// RequireSession makes every IAO and IAA action (share create, add, remove, members;
	// IAA add and remove) need Actor.Session. The operator is exempt: it has no DSH account
	// and so no session, and is authenticated by being root on the host.
	RequireSession bool
	// Now gives creation times; nil means time.Now. For tests.
	Now func() time.Time
}
