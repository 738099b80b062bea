// Package limit holds the daemon's admission controls: how much of the machine one caller may
// take at a time. A Budget bounds memory-heavy work (Argon2id checks) across the whole
// process; PerKey caps what one uid or one client address holds at once; Fair hands a few
// slots out in turn among the keys that want them; Backoff makes a key wait longer after
// each failure. The package knows nothing of users, sockets or HTTP: callers choose the keys
// and what a refusal means. It must never block without a bound chosen by its caller, and
// never keep an unbounded number of keys.
package limit

import "errors"

// ErrBusy is returned when a Budget or Fair could not give the caller its share in time.
var ErrBusy = errors.New("busy")
