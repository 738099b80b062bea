package token

import "context"

// Origin is the channel a call comes through. The zero Origin is the command line (the
// control socket); the portal sets Portal and the client's address.
type Origin struct {
	// Portal marks a call from the web portal: its failed checks are throttled (per Address
	// and per account) instead of counted towards the account's lockout, and a login starts
	// a portal session (see Sessions).
	Portal bool
	// Address is the portal client's address; the throttle's key. Empty on the command line.
	Address string
}

type originKey struct{}

// WithOrigin returns ctx carrying o; the token service's calls made with it act for o.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// originOf is the Origin ctx carries; the command line when none.
func originOf(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}
