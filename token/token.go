// Package token authenticates dsh users: enrolment, passwords, TOTP soft tokens with PINs,
// ICE emergency codes, lockout and throttling, and the in-memory sessions that hold each
// logged-in user's share keys. It owns every credential under the "token/" prefix of the
// key-value store and must never store or log a secret in plaintext: passwords, PINs,
// answers and one-time codes are kept only as Argon2id or SHA-256 hashes, TOTP secrets only
// sealed, and no error, log line or audit record ever carries one.
//
// Calls come from two channels, told apart by the context (WithOrigin): the command line
// (the control socket, the default) and the web portal. Failed checks on the command line
// count towards the account's lockout; failed checks on the portal are throttled per client
// address and per account instead, so that nobody who can reach the portal can lock an owner
// out of dsh login. A portal sign-in's session lives as long as the web sign-in and sits
// beside, never in place of, a session started with dsh login.
//
// Every Argon2id computation takes its share of one process-wide memory budget (Deps.KDF),
// and every credential check does the same Argon2id work whether or not the user exists, is
// the caller, or has tokens, so that its answer and its timing say nothing about who exists.
package token

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/limit"
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
	// ErrThrottled is returned on the portal channel while a client address or an account
	// must wait after failed attempts (a *ThrottledError says how long).
	ErrThrottled = errors.New("too many failed attempts")
	// ErrBusy is returned when no share of the memory for credential checks came free in
	// time: too many checks are running or waiting.
	ErrBusy = errors.New("busy checking other logins")
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
	DefaultSessionTTL = 10 * time.Hour
	// DefaultPortalIdle and DefaultPortalLifetime end a portal sign-in's session, as the
	// web sign-in itself ends: after 15 minutes without a request, and after an hour.
	DefaultPortalIdle     = 15 * time.Minute
	DefaultPortalLifetime = time.Hour
	// DefaultKDFMemory is the memory, in KiB, that Argon2id checks may use at once when
	// Deps.KDF is nil: one password check (64 MiB) beside one PIN check (19 MiB).
	DefaultKDFMemory = 96 * 1024
	// DefaultKDFWait is how long a check waits for its share of that memory before the
	// caller is told the daemon is busy.
	DefaultKDFWait       = 10 * time.Second
	DefaultMaxFailures   = 5
	DefaultLockout       = 15 * time.Minute
	DefaultICEValidity   = 24 * time.Hour
	DefaultEnrolValidity = 7 * 24 * time.Hour
	// DefaultLinkValidity is how long a one-time link to a soft token sent by e-mail
	// stays valid.
	DefaultLinkValidity = 72 * time.Hour
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
	// PortalIdle and PortalLifetime end a portal session after that long without use
	// (Touch) and after that long in all; zero means the defaults. A portal session never
	// outlives SessionTTL either.
	PortalIdle, PortalLifetime time.Duration
	// AddressThrottle and AccountThrottle slow down failed portal attempts per client
	// address and per account; zero means DefaultAddressThrottle, DefaultAccountThrottle.
	AddressThrottle, AccountThrottle limit.BackoffPolicy
	// HOTPWindow is how many counter values ahead of the expected one a hardware HOTP
	// token's login code may come from; zero means DefaultHOTPWindow.
	HOTPWindow int
	// SyncWindow is how far resynchronisation searches for two consecutive codes; zero
	// means DefaultSyncWindow.
	SyncWindow int
	// LinkValidity is how long a one-time link that delivers a soft token by e-mail stays
	// valid; zero means DefaultLinkValidity.
	LinkValidity time.Duration
}

// The portal's throttles. An address gets 5 failures for free, an account 3; after that each
// attempt waits 1 s, doubling with each further failure up to 15 minutes (the lockout's
// length); an hour without failures starts again from nothing. At most 10,000 addresses and
// 10,000 account names are remembered (the stalest go first).
var (
	DefaultAddressThrottle = limit.BackoffPolicy{Free: 5, Base: time.Second, Max: 15 * time.Minute, Forget: time.Hour, MaxKeys: 10000}
	DefaultAccountThrottle = limit.BackoffPolicy{Free: 3, Base: time.Second, Max: 15 * time.Minute, Forget: time.Hour, MaxKeys: 10000}
)

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
	if o.PortalIdle <= 0 {
		o.PortalIdle = DefaultPortalIdle
	}
	if o.PortalLifetime <= 0 {
		o.PortalLifetime = DefaultPortalLifetime
	}
	if o.AddressThrottle == (limit.BackoffPolicy{}) {
		o.AddressThrottle = DefaultAddressThrottle
	}
	if o.AccountThrottle == (limit.BackoffPolicy{}) {
		o.AccountThrottle = DefaultAccountThrottle
	}
	if o.HOTPWindow <= 0 {
		o.HOTPWindow = DefaultHOTPWindow
	}
	if o.SyncWindow <= 0 {
		o.SyncWindow = DefaultSyncWindow
	}
	if o.LinkValidity <= 0 {
		o.LinkValidity = DefaultLinkValidity
	}
	return o
}

// Deps are the collaborators of a Service. Metrics and Limits may be nil (nothing is
// counted), KDF may be nil (the Service makes its own budget of DefaultKDFMemory); every
// other field is required.
type Deps struct {
	Store     kv.Store         // credentials, under "token/"
	Directory Directory        // who a uid is, and whether the account is enabled
	Keys      Keys             // share and Arrivals keys for session keyrings
	Sealer    Sealer           // seals TOTP secrets; a KeySealer over a derived key
	Auditor   Auditor          // every authentication event
	Metrics   *metrics.Metrics // dsh_logins_total, dsh_lockouts_total, dsh_sessions_active
	Limits    *metrics.Limits  // dsh_limit_refusals_total (throttled, busy)
	// KDF is the process-wide memory budget, in KiB, of Argon2id computations: each takes
	// its parameters' memory from it for as long as it runs. The daemon passes one budget
	// that outlives seal and unseal.
	KDF *limit.Budget
	// Notifier, when set, is told about lockouts, emergency codes and changes of tokens
	// and credentials, so that their owner hears of them (by e-mail).
	Notifier Notifier
}

// Service is the token service. It is safe for concurrent use.
type Service struct {
	st       kv.Store
	dir      Directory
	sealer   Sealer
	aud      Auditor
	met      *metrics.Metrics
	lim      *metrics.Limits
	opts     Options
	sessions *Sessions
	kdf      *limit.Budget
	notifier Notifier

	// decoy and decoyShort stand in for a password hash and a PIN, answer or emergency code
	// hash that a caller's user does not have (unknown, not the caller, not enrolled, no
	// token matching the code), so that every check does the same Argon2id work.
	decoy, decoyShort hashed

	// kdfRuns counts the Argon2id computations asked for, so tests can check that every
	// path of a check does the same work.
	kdfRuns atomic.Uint64

	// The portal's throttles (see Options.AddressThrottle).
	byAddress *limit.Backoff[string]
	byAccount *limit.Backoff[string]
}

// New returns a Service over its dependencies.
func New(d Deps, opts Options) (*Service, error) {
	if d.Store == nil || d.Directory == nil || d.Keys == nil || d.Sealer == nil || d.Auditor == nil {
		return nil, fmt.Errorf("token: new service: %w: missing dependency", ErrInvalid)
	}
	opts = opts.withDefaults()
	kdf := d.KDF
	if kdf == nil {
		kdf = limit.NewBudget(DefaultKDFMemory, DefaultKDFWait)
	}
	return &Service{
		st:         d.Store,
		dir:        d.Directory,
		sealer:     d.Sealer,
		aud:        d.Auditor,
		met:        d.Metrics,
		lim:        d.Limits,
		opts:       opts,
		sessions:   newSessions(d.Keys, d.Auditor, d.Metrics, opts.Now),
		kdf:        kdf,
		notifier:   d.Notifier,
		decoy:      newDecoy(opts.PasswordKDF),
		decoyShort: newDecoy(opts.ShortKDF),
		byAddress:  limit.NewBackoff[string](opts.AddressThrottle, opts.Now),
		byAccount:  limit.NewBackoff[string](opts.AccountThrottle, opts.Now),
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

// ThrottledError is returned (wrapping ErrThrottled) while a portal caller must wait; Wait
// says how long.
type ThrottledError struct{ Wait time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed attempts from this address or for this account; try again in %s",
		max(e.Wait.Round(time.Second), time.Second))
}

// Unwrap makes errors.Is(err, ErrThrottled) hold.
func (e *ThrottledError) Unwrap() error { return ErrThrottled }
