package audit

import "context"

type viaKey struct{}

// WithVia returns ctx carrying the channel a request came through, such as
// "portal 192.0.2.7": every record appended with that context names it in its detail, so
// a portal sign-in or share change is told apart from its command-line twin.
func WithVia(ctx context.Context, via string) context.Context {
	return context.WithValue(ctx, viaKey{}, via)
}

// addVia appends the context's channel, if any, to the entry's detail.
func addVia(ctx context.Context, e *Entry) {
	v, _ := ctx.Value(viaKey{}).(string)
	if v == "" {
		return
	}
	if e.Detail == "" {
		e.Detail = "via " + v
	} else {
		e.Detail += "; via " + v
	}
}
