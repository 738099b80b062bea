package token

import (
	"context"
	"time"
)

// EventKind names what happened to an account that its owner is told about.
type EventKind string

// The events the token service reports to its Notifier.
const (
	EventLockout       EventKind = "lockout"        // too many failed logins; Until is when it ends
	EventICE           EventKind = "ice"            // an emergency code was issued; Until is its expiry
	EventTokenAdded    EventKind = "token-added"    // a soft token was created; Object is its ID
	EventTokenRevoked  EventKind = "token-revoked"  // a token was revoked; Object is its ID or serial
	EventPIN           EventKind = "pin"            // a token got a new PIN; Object names it
	EventPassword      EventKind = "password"       // the password was changed
	EventQuestions     EventKind = "questions"      // the security questions were replaced
	EventHardwareAdded EventKind = "hardware-added" // a hardware token was assigned; Object is its serial
	EventHardwareTaken EventKind = "hardware-taken" // a hardware token was taken back into the pool
)

// Event is something the owner of an account is told about, typically by e-mail. It never
// carries a secret: no code, PIN, password or seed.
type Event struct {
	Kind   EventKind
	User   string
	Object string
	Until  time.Time
	// Via says where the change came from: "the command line" or "the portal (from ADDR)".
	Via string
	At  time.Time
}

// Notifier tells account owners about events. Notify must return at once and must not
// fail the action that caused it: the daemon queues a message and sends it later.
type Notifier interface {
	Notify(ctx context.Context, e Event)
}

// notify reports e for user, if the service has a Notifier.
func (s *Service) notify(ctx context.Context, kind EventKind, user, object string, until time.Time) {
	if s.notifier == nil || user == "" {
		return
	}
	via := "the command line"
	if o := originOf(ctx); o.Portal {
		via = "the portal (from " + o.Address + ")"
	}
	s.notifier.Notify(context.WithoutCancel(ctx), Event{Kind: kind, User: user, Object: object, Until: until, Via: via, At: s.now()})
}
