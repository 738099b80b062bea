// Package airlock owns the way results leave the haven: egress requests, their review by k
// of a project's reviewers (never the requester), and the release of exactly the approved
// bytes to the requester within a window. A request freezes its files when it is submitted:
// it records each file's plaintext SHA-256, its size and the objects it was read from, and
// those objects are pinned so that no later write or delete of the file changes or removes
// what was requested. Requests live in the kv store under "airlock/"; every transition is one
// audit record, written durably before the transition takes effect (fail closed), carrying
// the hashes, who, and why.
//
// The package decides who may do what to a request from the roles the Directory reports; it
// never reads or writes file contents itself (Files does, for it) and never hands out a byte
// that does not hash to what was approved: downloads are hashed and scanned before the first
// byte leaves, and hashed again as they stream.
package airlock

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/metrics"
	"dsh/scan"
)

// State is where a request stands. The strings are stored and are the values of the metric
// label "state", so they never change.
type State string

// The states of a request.
const (
	// Draft: written, not yet submitted; nothing is frozen.
	Draft State = "draft"
	// Submitted: frozen and scanned, waiting for its first approval.
	Submitted State = "submitted"
	// InReview: some approvals, fewer than k.
	InReview State = "in_review"
	// Approved: k approvals; the requester may download within the window.
	Approved State = "approved"
	// Rejected: a reviewer said no, with a reason.
	Rejected State = "rejected"
	// Released: the requester has downloaded (some of) the approved files.
	Released State = "released"
	// Expired: not decided, or approved and not downloaded, in time.
	Expired State = "expired"
	// Revoked: an approval withdrawn before anything was downloaded.
	Revoked State = "revoked"
	// Cancelled: withdrawn by the requester before approval.
	Cancelled State = "cancelled"
)

// States lists every state, in the order of a request's life.
var States = []State{Draft, Submitted, InReview, Approved, Rejected, Released, Expired, Revoked, Cancelled}

// Label is the state as people read it ("in review").
func (s State) Label() string {
	if s == InReview {
		return "in review"
	}
	return string(s)
}

// open reports whether a request in state s still holds its frozen objects.
func (s State) open() bool {
	return s == Submitted || s == InReview || s == Approved || s == Released
}

// Errors of every method; the daemon maps them to control errors.
var (
	// ErrNotFound: no such request (or one the caller may not see).
	ErrNotFound = errors.New("no such egress request")
	// ErrForbidden: the caller may not do this to the request.
	ErrForbidden = errors.New("not allowed")
	// ErrState: the request is not in a state that allows this.
	ErrState = errors.New("not possible in the request's state")
	// ErrInvalid: a malformed argument.
	ErrInvalid = errors.New("invalid")
	// ErrScan: a file did not scan clean, or no verdict could be had.
	ErrScan = errors.New("malware scan")
	// ErrChanged: the bytes read do not hash to what was approved.
	ErrChanged = errors.New("the file's bytes differ from the approved ones")
	// ErrAudit: the audit record could not be written, so nothing was done.
	ErrAudit = errors.New("audit record could not be written")
)

// Defaults of Options.
const (
	// DefaultApprovals is k, the approvals a request needs, for a project that set none.
	DefaultApprovals = 2
	// DefaultWindow is how long approved files may be downloaded.
	DefaultWindow = 7 * 24 * time.Hour
	// DefaultReviewFor is how long a submitted request waits for its decision.
	DefaultReviewFor = 30 * 24 * time.Hour
	// MaxFiles bounds the files of one request.
	MaxFiles = 32
	// MaxReason bounds a reason, in bytes.
	MaxReason = 1000
)

// Who is the caller, as the daemon authenticated it: a user with a live two-factor session,
// or the operator (root, no account).
type Who struct {
	UID      int
	User     string
	Operator bool
}

// name is how the caller appears in records.
func (w Who) name() string {
	if w.Operator {
		return "operator"
	}
	return w.User
}

// Directory answers what the package needs to know of accounts, shares and projects.
type Directory interface {
	// ShareProject returns the project a share belongs to.
	ShareProject(share string) (project string, ok bool)
	// CanRead reports whether uid may read share now (a member with a live session).
	CanRead(uid int, share string) bool
	// Managers returns the IAO and IAAs of a project.
	Managers(project string) (iao string, iaas []string, ok bool)
	// Active reports whether user is an active account.
	Active(user string) bool
}

// Frozen is one file as a request froze it: what Files.Freeze read and pinned.
type Frozen struct {
	Path string
	Size int64
	// Objects are the IDs of the objects the content was read from, in file order.
	Objects []string
	// Content is how Files finds the bytes again (opaque here).
	Content []byte
}

// Files reads share files for the package: it freezes them (pinning their objects) and
// opens frozen content for reading, without needing the share's membership.
type Files interface {
	Freeze(ctx context.Context, share, pin string, paths []string) ([]Frozen, error)
	Open(ctx context.Context, share string, f Frozen) (io.ReadCloser, error)
	Unfreeze(ctx context.Context, pin string) error
	// Pins lists the pins whose names start with prefix.
	Pins(ctx context.Context, prefix string) ([]string, error)
}

// Options tune a Store.
type Options struct {
	// Window is how long approved files may be downloaded; 0 means DefaultWindow.
	Window time.Duration
	// ReviewFor is how long a submitted request waits for a decision; 0 means
	// DefaultReviewFor.
	ReviewFor time.Duration
	// Now is the clock; nil means time.Now.
	Now     func() time.Time
	Metrics *metrics.Airlock
	Log     *slog.Logger
}

// Store holds the egress requests of one dsh store.
type Store struct {
	kv      kv.Store
	audit   audit.Appender
	dir     Directory
	files   Files
	scanner scan.Scanner
	opts    Options

	// mu serializes transitions: each reads a request, audits and writes it back.
	mu sync.Mutex
}

// New returns the Store over st. scanner may be nil: then nothing can be submitted or
// downloaded (no verdict, no release).
func New(st kv.Store, aud audit.Appender, dir Directory, files Files, scanner scan.Scanner, opts Options) *Store {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.ReviewFor <= 0 {
		opts.ReviewFor = DefaultReviewFor
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Store{kv: st, audit: aud, dir: dir, files: files, scanner: scanner, opts: opts}
}

func (s *Store) now() time.Time { return s.opts.Now().UTC() }
