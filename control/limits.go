package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"dsh/limit"
	"dsh/metrics"
)

// Defaults of ServerOptions: what one uid may hold of the control socket at once.
const (
	// DefaultMaxRequests is how many requests of one uid may be in progress at once.
	DefaultMaxRequests = 8
	// DefaultMaxStreams is how many uploads (dsh upload) of one uid may run at once: each
	// may hold up to about 50 MiB of unflushed data in the daemon.
	DefaultMaxStreams = 2
	// DefaultMaxConns is how many connections of one uid may be open at once.
	DefaultMaxConns = 64
	// DefaultStreamIdle is how long an upload's body may send nothing before it is cut off
	// (and its staged data removed, as for any interrupted upload).
	DefaultStreamIdle = 30 * time.Second
)

// ServerOptions bound what each uid may take of the server. The zero value gives the
// defaults.
type ServerOptions struct {
	MaxRequests int
	MaxStreams  int
	MaxConns    int
	StreamIdle  time.Duration
	// Limits counts refusals (dsh_limit_refusals_total); nil counts nothing.
	Limits *metrics.Limits
	// Refused, when set, is told of each request turned away or cut off by a limit, to
	// audit it. It must be quick; it runs on the request's goroutine (or the accept loop's,
	// for a connection).
	Refused func(ctx context.Context, c Caller, l metrics.Limit)
}

func (o ServerOptions) withDefaults() ServerOptions {
	if o.MaxRequests <= 0 {
		o.MaxRequests = DefaultMaxRequests
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.StreamIdle <= 0 {
		o.StreamIdle = DefaultStreamIdle
	}
	return o
}

// guard holds the per-uid counts of a Server.
type guard struct {
	opts     ServerOptions
	requests *limit.PerKey[int]
	streams  *limit.PerKey[int]
	conns    *limit.PerKey[int]
}

func newGuard(o ServerOptions) *guard {
	o = o.withDefaults()
	return &guard{opts: o, requests: limit.NewPerKey[int](o.MaxRequests),
		streams: limit.NewPerKey[int](o.MaxStreams), conns: limit.NewPerKey[int](o.MaxConns)}
}

func (g *guard) refused(ctx context.Context, c Caller, l metrics.Limit) {
	g.opts.Limits.Refused(l)
	if g.opts.Refused != nil {
		g.opts.Refused(ctx, c, l)
	}
}

// admit takes a request slot (and for a stream, a stream slot) for c, or refuses. done
// gives them back.
func (g *guard) admit(ctx context.Context, c Caller, stream bool) (done func(), err error) {
	if !g.requests.TryAcquire(c.UID) {
		g.refused(ctx, c, metrics.LimitControlRequests)
		return nil, fmt.Errorf("%w: uid %d already has %d requests in progress; wait for them to finish", ErrTooMany, c.UID, g.opts.MaxRequests)
	}
	if !stream {
		return func() { g.requests.Release(c.UID) }, nil
	}
	if !g.streams.TryAcquire(c.UID) {
		g.requests.Release(c.UID)
		g.refused(ctx, c, metrics.LimitUploadStreams)
		return nil, fmt.Errorf("%w: uid %d already has %d uploads running; wait for one to finish", ErrTooMany, c.UID, g.opts.MaxStreams)
	}
	return func() { g.streams.Release(c.UID); g.requests.Release(c.UID) }, nil
}

// idleBody is a stream's body that must keep moving: each read may wait at most idle for
// data, then the stream is cut off.
type idleBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	idle    time.Duration
	onStall func()
	stalled bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.stalled {
		return 0, b.stallErr()
	}
	if err := b.rc.SetReadDeadline(time.Now().Add(b.idle)); err != nil {
		return 0, fmt.Errorf("control: set read deadline: %w", err)
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		b.stalled = true
		b.onStall()
		return n, b.stallErr()
	}
	return n, err
}

func (b *idleBody) stallErr() error {
	return fmt.Errorf("%w: the upload sent nothing for %s and was cut off", ErrTimeout, b.idle)
}

// limitListener closes a new connection at once when its uid already holds the most
// connections the guard allows; the others carry their caller, read once at accept.
type limitListener struct {
	net.Listener
	g *guard
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c, err := peerCred(conn)
		if err != nil {
			// Served, and refused with 403 for want of an identity.
			return conn, nil
		}
		if !l.g.conns.TryAcquire(c.UID) {
			l.g.refused(context.Background(), c, metrics.LimitControlConnections)
			conn.Close()
			continue
		}
		return &countedConn{Conn: conn, caller: c, release: func() { l.g.conns.Release(c.UID) }}, nil
	}
}

// countedConn gives back its uid's connection slot when closed, once.
type countedConn struct {
	net.Conn
	caller  Caller
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
