package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"dsh/metrics"
)

// Caller is who is on the other end of the socket, as the kernel reports it (SO_PEERCRED).
type Caller struct {
	UID int
	GID int
	PID int
	// Remote is the client address of a request the portal makes for a signed-in browser
	// (or a sign-in attempt); empty on the control socket. A call with it set is on the
	// portal channel: its failed credential checks are throttled rather than counted
	// towards the account's lockout, and a login starts a portal session.
	Remote string
}

// Portal reports whether the call comes from the portal rather than the socket.
func (c Caller) Portal() bool { return c.Remote != "" }

// IsRoot reports whether the caller is the operator (uid 0).
func (c Caller) IsRoot() bool { return c.UID == 0 }

// Operator is the part of the daemon behind the operator endpoints.
type Operator interface {
	Status(ctx context.Context, c Caller) (StatusResponse, error)
	Unseal(ctx context.Context, c Caller, passphrase []byte) error
	Seal(ctx context.Context, c Caller) error
	// Rekey seals the root key under a new passphrase; the old one stops working.
	Rekey(ctx context.Context, c Caller, passphrase, newPassphrase []byte) error
}

// Auditor is the part of the daemon behind the audit endpoints.
type Auditor interface {
	AuditVerify(ctx context.Context, c Caller) (AuditVerifyResponse, error)
	// AuditShow calls emit with each record q selects, in order, as it reads them; it
	// stops at emit's first error and returns it.
	AuditShow(ctx context.Context, c Caller, q AuditQuery, emit func(AuditRecord) error) error
}

// Daemon is everything the control server needs from the daemon. Each method decides for
// itself whether the caller may do what it asks; the server only transports.
type Daemon interface {
	Operator
	Auditor
	Accounts
	Tokens
	Arrivals
	SMB
	Airlock
	Hardware
}

type callerKey struct{}

// handlerFunc is an endpoint: it returns the value to send as JSON (nil for 204) or an error.
type handlerFunc func(ctx context.Context, c Caller, r *http.Request) (any, error)

type route struct {
	method string
	h      handlerFunc
	// stream marks an endpoint whose body is a file of any size: no read deadline.
	stream bool
	// out, set instead of h, is an endpoint whose answer is JSON lines of any length,
	// written as they are made (streamFunc).
	out streamFunc
}

// streamFunc is an endpoint that answers with JSON lines: it calls emit with each value as
// it has it. An error before the first emit is answered like any handler's; after it, the
// answer ends with a line {"error": "..."}.
type streamFunc func(ctx context.Context, c Caller, r *http.Request, emit func(any) error) error

// Server serves the control API on a Unix socket.
type Server struct {
	routes map[string]route
	log    *slog.Logger
	http   *http.Server
	guard  *guard
}

// NewServer returns a server that hands requests to d, within the per-uid bounds of opts.
func NewServer(d Daemon, log *slog.Logger, opts ServerOptions) *Server {
	s := &Server{routes: map[string]route{}, log: log, guard: newGuard(opts)}
	s.handle(http.MethodGet, PathStatus, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		return d.Status(ctx, c)
	})
	s.handle(http.MethodPost, PathUnseal, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		var req UnsealRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		pass := []byte(req.Passphrase)
		defer clear(pass)
		return nil, d.Unseal(ctx, c, pass)
	})
	s.handle(http.MethodPost, PathRekey, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		var req RekeyRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		old, next := []byte(req.Passphrase), []byte(req.NewPassphrase)
		defer clear(old)
		defer clear(next)
		return nil, d.Rekey(ctx, c, old, next)
	})
	s.handle(http.MethodPost, PathSeal, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		if err := decode(r, nil); err != nil {
			return nil, err
		}
		return nil, d.Seal(ctx, c)
	})
	s.handle(http.MethodGet, PathAuditVerify, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		return d.AuditVerify(ctx, c)
	})
	s.handleOut(http.MethodGet, PathAuditShow, func(ctx context.Context, c Caller, r *http.Request, emit func(any) error) error {
		q, err := parseAuditQuery(r.URL.Query())
		if err != nil {
			return err
		}
		return d.AuditShow(ctx, c, q, func(rec AuditRecord) error { return emit(AuditLine{AuditRecord: rec}) })
	})
	s.accountRoutes(d)
	s.tokenRoutes(d)
	s.arrivalsRoutes(d)
	s.smbRoutes(d)
	s.airlockRoutes(d)
	s.hardwareRoutes(d)
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ConnContext:       withPeerCred,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

func (s *Server) handle(method, path string, h handlerFunc) {
	s.routes[path] = route{method: method, h: h}
}

func (s *Server) handleOut(method, path string, h streamFunc) {
	s.routes[path] = route{method: method, out: h}
}

// serveLines answers a streamFunc endpoint.
func (s *Server) serveLines(w http.ResponseWriter, r *http.Request, c Caller, h streamFunc) {
	started := false
	enc := json.NewEncoder(w)
	emit := func(v any) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		return enc.Encode(v)
	}
	err := h(r.Context(), c, r, emit)
	switch {
	case err != nil && !started:
		status := StatusFor(err)
		if status == http.StatusInternalServerError {
			s.log.Error("control request failed", "path", r.URL.Path, "uid", c.UID, "err", err)
		}
		writeError(w, status, err.Error())
	case err != nil:
		if r.Context().Err() == nil {
			_ = enc.Encode(ErrorResponse{Error: err.Error()})
		}
	case !started:
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
}

// parseAuditQuery reads an AuditQuery from its query parameters.
func parseAuditQuery(v url.Values) (AuditQuery, error) {
	var q AuditQuery
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(b.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, fmt.Errorf("%w: %s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", ErrInvalid, b.name)
			}
			*b.t = t
		}
	}
	q.User, q.Action = v.Get("user"), v.Get("action")
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, fmt.Errorf("%w: limit must be a number of records", ErrInvalid)
		}
		q.Limit = n
	}
	return q, nil
}

// ServeHTTP routes a request, checks its method and writes the JSON answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := s.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s", r.URL.Path))
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", r.URL.Path, rt.method, r.Method))
		return
	}
	c, ok := r.Context().Value(callerKey{}).(Caller)
	if !ok {
		writeError(w, http.StatusForbidden, "the caller's identity could not be read from the socket")
		return
	}
	done, err := s.guard.admit(r.Context(), c, rt.stream)
	if err != nil {
		writeError(w, StatusFor(err), err.Error())
		return
	}
	defer done()
	if rt.stream {
		// No overall deadline (a large upload takes as long as it takes), but the body must
		// keep moving: a stalled one is cut off after StreamIdle.
		r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: s.guard.opts.StreamIdle,
			onStall: func() { s.guard.refused(r.Context(), c, metrics.LimitStreamIdle) }}
	}
	if rt.out != nil {
		s.serveLines(w, r, c, rt.out)
		return
	}
	v, err := rt.h(r.Context(), c, r)
	if err != nil {
		status := StatusFor(err)
		if status == http.StatusInternalServerError {
			s.log.Error("control request failed", "path", r.URL.Path, "uid", c.UID, "err", err)
		}
		writeError(w, status, err.Error())
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if st, ok := v.(*Stream); ok {
		writeStream(w, st)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Warn("control answer not sent", "path", r.URL.Path, "err", err)
	}
}

// StatusFor is the one place where error kinds become HTTP statuses.
func StatusFor(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.kind) {
			return k.status
		}
	}
	return http.StatusInternalServerError
}

// errorKinds are the kinds callers give errors (WithKind), with the status of each.
var errorKinds = []struct {
	kind   error
	status int
}{
	{ErrInvalid, http.StatusBadRequest},
	{ErrUnauthorized, http.StatusUnauthorized},
	{ErrForbidden, http.StatusForbidden},
	{ErrNotFound, http.StatusNotFound},
	{ErrConflict, http.StatusConflict},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrLocked, http.StatusLocked},
	{ErrTooMany, http.StatusTooManyRequests},
	{ErrTimeout, http.StatusRequestTimeout},
}

// UserMessage is err's message without the kind it starts with ("forbidden: ..."): what a
// person reading a page needs.
func UserMessage(err error) string {
	msg := err.Error()
	for _, k := range errorKinds {
		msg = strings.TrimPrefix(msg, k.kind.Error()+": ")
	}
	return msg
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorResponse{Error: msg})
}

// decode reads a JSON body into v, strictly: bounded size, no unknown fields, one value. A nil
// v means the endpoint takes no body, and any non-empty body is refused.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("request body is larger than %d bytes: %w", MaxBodyBytes, err)
		}
		return fmt.Errorf("%w: reading request body: %v", ErrInvalid, err)
	}
	defer clear(body)
	return DecodeJSON(body, v)
}

// DecodeJSON decodes one JSON value from body into v, refusing unknown fields and trailing
// data. It is exported for the fuzz target and for other strict decoders of the same wire.
func DecodeJSON(body []byte, v any) error {
	if v == nil {
		if len(bytes.TrimSpace(body)) > 0 {
			return fmt.Errorf("%w: this endpoint takes no request body", ErrInvalid)
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the request body is empty; expected a JSON object", ErrInvalid)
		}
		return fmt.Errorf("%w: malformed JSON body: %s", ErrInvalid, jsonProblem(err))
	}
	if dec.More() {
		return fmt.Errorf("%w: unexpected data after the JSON object", ErrInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: unexpected data after the JSON object", ErrInvalid)
	}
	return nil
}

// jsonProblem describes a decoding error without quoting the body, which may hold a secret.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	default:
		return "not a JSON object of the expected shape"
	}
}

// withPeerCred puts the kernel's record of the connecting process into the request context.
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*countedConn); ok {
		return context.WithValue(ctx, callerKey{}, cc.caller)
	}
	caller, err := peerCred(c)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, caller)
}

// peerCred asks the kernel (SO_PEERCRED) which process is on the other end of a Unix socket.
func peerCred(c net.Conn) (Caller, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Caller{}, errors.New("not a Unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Caller{}, err
	}
	if credErr != nil {
		return Caller{}, fmt.Errorf("read peer credentials: %w", credErr)
	}
	return Caller{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}, nil
}

// Listen creates the socket at path, mode 0666 so every local user can reach it (the daemon
// decides per caller), creating its folder if needed. A socket file left by a daemon that is
// gone is replaced; one that a live daemon answers on is an error.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create socket folder: %w", err)
	}
	// In a folder others may write to, another user could replace the socket with their own
	// and collect the passphrases clients send.
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("socket folder: %w", err)
	} else if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("control socket folder %s is writable by other users (mode %v); use a folder only its owner can write, such as /run/dsh", dir, fi.Mode().Perm())
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("control socket %s: another dsh daemon is listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod control socket: %w", err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	return l, nil
}

// Serve answers requests on l until Shutdown. It returns nil after a clean shutdown.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(&limitListener{Listener: l, g: s.guard}); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in flight, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

// Paths lists the endpoints, sorted; for tests and documentation.
func (s *Server) Paths() []string {
	out := make([]string, 0, len(s.routes))
	for p, r := range s.routes {
		out = append(out, r.method+" "+p)
	}
	sort.Strings(out)
	return out
}
