// Package token authenticates dsh users: enrolment, passwords, TOTP soft tokens with PINs,
// ICE emergency codes, lockout, and the in-memory sessions that hold each logged-in user's
// share keys. It owns every credential under the "token/" prefix of the key-value store and
// must never store or log a secret in plaintext: passwords, PINs, answers and one-time codes
// are kept only as Argon2id or SHA-256 hashes, TOTP secrets only sealed, and no error, log
// line or audit record ever carries one.
package token

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/metrics"
	"dsh/vault"
)

// Errors of the token service. Callers match them with errors.Is; the messages are safe to
// show to the user.
var (
	// ErrInvalid is returned for malformed input, such as a short password or a PIN that is
	// not four digits. Nothing is counted towards lockout.
	ErrInvalid = errors.New("invalid input")
	// ErrUnauthorized is the one answer for wrong credentials. It never says which factor
	// was wrong, so that a guesser learns nothing from it.
	ErrUnauthorized = errors.New("wrong user ID, password, PIN or code")
	// ErrLocked is returned while an account is locked after too many failed logins.
	ErrLocked = errors.New("account is locked")
	// ErrForbidden is returned when the caller may not act at all, such as a disabled
	// account or an action that needs an active session.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound is returned for an unknown token or user record.
	ErrNotFound = errors.New("not found")
)

// Directory is the part of the user directory the token service needs; the daemon adapts
// the acl store to it, so that token does not depend on acl.
type Directory interface {
	// UserByUID returns the user ID of a Linux uid and whether the account is enabled.
	UserByUID(uid int) (id string, active bool, ok bool)
	// UserByID returns the uid of a user ID and whether the account is enabled.
	UserByID(id string) (uid int, active bool, ok bool)
}

// Keys gives a session the keys it may hold. The daemon implements it over the acl store;
// the returned keys are copies that the session owns and wipes.
type Keys interface {
	// SharesOf lists the shares uid is currently a member of.
	SharesOf(uid int) []string
	// ShareKey unwraps the key of a share.
	ShareKey(ctx context.Context, share string) (vault.Key, error)
	// ArrivalsKey unwraps the key of a user's Arrivals folder.
	ArrivalsKey(ctx context.Context, user string) (vault.Key, error)
}

// Sealer encrypts small secrets (TOTP seeds) at rest. context binds a ciphertext to the
// record it belongs to, so a sealed secret cannot be moved to another token.
type Sealer interface {
	// Seal encrypts and authenticates plaintext, bound to context.
	Seal(plaintext, context []byte) ([]byte, error)
	// Open reverses Seal; it fails if the ciphertext or the context differ in any bit.
	Open(ciphertext, context []byte) ([]byte, error)
}

// Auditor is where the service records every authentication event; *audit.Log is one.
type Auditor = audit.Appender

// KDFParams are Argon2id parameters. They are stored beside each hash, so raising the
// defaults later does not invalidate existing credentials.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// Defaults used when the corresponding Options field is zero.
var (
	// DefaultPasswordKDF is Argon2id with 2 passes over 64 MiB on 2 threads.
	DefaultPasswordKDF = KDFParams{Time: 2, MemoryKiB: 64 * 1024, Threads: 2}
	// DefaultShortKDF hashes PINs, answers and emergency codes. It is lighter because a
	// login already pays for the password hash; these secrets are guarded by lockout, not
	// by hash cost, since a 4-digit PIN falls to any hash in a moment once stolen.
	DefaultShortKDF = KDFParams{Time: 1, MemoryKiB: 19 * 1024, Threads: 1}
)

// Default limits used when the corresponding Options field is zero.
const (
	DefaultSessionTTL    = 10 * time.Hour
	DefaultMaxFailures   = 5
	DefaultLockout       = 15 * time.Minute
	DefaultICEValidity   = 24 * time.Hour
	DefaultEnrolValidity = 7 * 24 * time.Hour
	// DefaultIssuer names the service in authenticator apps.
	DefaultIssuer = "DSH"
)

// MinPasswordLen is the shortest password accepted, in characters.
const MinPasswordLen = 12

// Options tune a Service. The zero value gives the documented defaults.
type Options struct {
	// Now is the clock; nil means time.Now. Tests move it to cross TOTP steps and expiries.
	Now func() time.Time
	// PasswordKDF hashes passwords; zero means DefaultPasswordKDF.
	PasswordKDF KDFParams
	// ShortKDF hashes PINs, security answers and emergency codes; zero means DefaultShortKDF.
	ShortKDF KDFParams
	// SessionTTL is the lifetime of a session; zero means DefaultSessionTTL.
	SessionTTL time.Duration
	// MaxFailures is how many failed logins in a row lock an account; zero means 5.
	MaxFailures int
	// Lockout is how long a locked account stays locked; zero means 15 minutes.
	Lockout time.Duration
	// ICEValidity is how long an emergency code stays valid; zero means 24 hours.
	ICEValidity time.Duration
	// EnrolValidity is how long an enrolment code stays valid; zero means 7 days.
	EnrolValidity time.Duration
	// Issuer is the issuer written into otpauth URLs; empty means DefaultIssuer.
	Issuer string
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PasswordKDF == (KDFParams{}) {
		o.PasswordKDF = DefaultPasswordKDF
	}
	if o.ShortKDF == (KDFParams{}) {
		o.ShortKDF = DefaultShortKDF
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxFailures
	}
	if o.Lockout <= 0 {
		o.Lockout = DefaultLockout
	}
	if o.ICEValidity <= 0 {
		o.ICEValidity = DefaultICEValidity
	}
	if o.EnrolValidity <= 0 {
		o.EnrolValidity = DefaultEnrolValidity
	}
	if o.Issuer == "" {
		o.Issuer = DefaultIssuer
	}
	return o
}

// Deps are the collaborators of a Service. Metrics may be nil (nothing is counted); every
// other field is required.
type Deps struct {
	Store     kv.Store         // credentials, under "token/"
	Directory Directory        // who a uid is, and whether the account is enabled
	Keys      Keys             // share and Arrivals keys for session keyrings
	Sealer    Sealer           // seals TOTP secrets; a KeySealer over a derived key
	Auditor   Auditor          // every authentication event
	Metrics   *metrics.Metrics // dsh_logins_total, dsh_lockouts_total, dsh_sessions_active
}

// Service is the token service. It is safe for concurrent use.
type Service struct {
	st       kv.Store
	dir      Directory
	sealer   Sealer
	aud      Auditor
	met      *metrics.Metrics
	opts     Options
	sessions *Sessions

	// decoy is a password hash checked when the user is unknown or not enrolled, so a
	// refusal takes as long as a wrong password and timing does not tell which IDs exist.
	decoyOnce sync.Once
	decoy     hashed
}

// New returns a Service over its dependencies.
func New(d Deps, opts Options) (*Service, error) {
	if d.Store == nil || d.Directory == nil || d.Keys == nil || d.Sealer == nil || d.Auditor == nil {
		return nil, fmt.Errorf("token: new service: %w: missing dependency", ErrInvalid)
	}
	opts = opts.withDefaults()
	return &Service{
		st:       d.Store,
		dir:      d.Directory,
		sealer:   d.Sealer,
		aud:      d.Auditor,
		met:      d.Metrics,
		opts:     opts,
		sessions: newSessions(d.Keys, d.Auditor, d.Metrics, opts.Now),
	}, nil
}

// Sessions returns the live sessions, for the daemon (membership changes, sealing) and
// the filesystem (Keyring).
func (s *Service) Sessions() *Sessions { return s.sessions }

func (s *Service) now() time.Time { return s.opts.Now() }

// LockedError is returned (wrapping ErrLocked) while an account is locked; Until says when
// the lock ends.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return fmt.Sprintf("account is locked until %s", e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrLocked) hold.
func (e *LockedError) Unwrap() error { return ErrLocked }
