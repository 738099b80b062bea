package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// DefaultTimeout bounds one call; unsealing runs Argon2id, which takes well under a second.
const DefaultTimeout = time.Minute

// APIError is an error answer from the daemon. It unwraps to the matching Err* kind, so
// callers can use errors.Is(err, control.ErrForbidden).
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Unwrap maps the HTTP status back to the error kind the server started from.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed:
		return ErrInvalid
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	case http.StatusLocked:
		return ErrLocked
	case http.StatusTooManyRequests:
		return ErrTooMany
	case http.StatusRequestTimeout:
		return ErrTimeout
	}
	return nil
}

// ErrImpostor is returned when the process behind the socket is neither root nor the caller:
// the CLI sends passphrases and passwords over the socket, so it talks only to a daemon run
// by root (or by the caller itself, for tests and development).
var ErrImpostor = errors.New("the process listening on the control socket is not run by root")

// checkServer asks the kernel who listens on the other end of conn.
func checkServer(conn net.Conn) error {
	c, err := peerCred(conn)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if c.UID != 0 && c.UID != os.Geteuid() {
		return fmt.Errorf("%w (uid %d); refusing to talk to it", ErrImpostor, c.UID)
	}
	return nil
}

// ErrNoDaemon is returned when nothing answers on the socket.
var ErrNoDaemon = errors.New("cannot reach the dsh daemon")

// Client talks to a daemon over its control socket.
type Client struct {
	socket string
	http   *http.Client
	// stream has no overall timeout, for uploads that take as long as they take.
	stream *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, err
			}
			if err := checkServer(conn); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
		MaxIdleConns: 1,
	}
	return &Client{socket: path, http: &http.Client{Transport: tr, Timeout: DefaultTimeout}, stream: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client uses.
func (c *Client) Socket() string { return c.socket }

// do sends one request; in (may be nil) is the JSON body, out (may be nil) receives the answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		defer clear(b)
		body = bytes.NewReader(b)
	}
	ct := ""
	if in != nil {
		ct = "application/json"
	}
	return c.send(ctx, c.http, method, path, query, nil, body, -1, ct, out)
}

// send sends one request with headers hdr (may be nil) and body (may be nil, of length
// size when size ≥ 0) of content type ct through hc.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, query url.Values, hdr http.Header, body io.Reader, size int64, ct string, out any) error {
	u := "http://dsh" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if size >= 0 && body != nil {
		req.ContentLength = size
	}
	resp, err := hc.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from the dsh daemon: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("the dsh daemon answered %s", resp.Status)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer from the dsh daemon: %w", err)
		}
	}
	return nil
}

// transportError explains a request that got no answer.
func (c *Client) transportError(err error) error {
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.Is(err, ErrImpostor):
		return fmt.Errorf("%s: %w", c.socket, ErrImpostor)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("the dsh daemon at %s did not answer in time; the action may or may not have happened (see dsh audit show)", c.socket)
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Errorf("%w at %s (is dsh serve running?): %v", ErrNoDaemon, c.socket, op.Err)
	default:
		return fmt.Errorf("the connection to the dsh daemon at %s broke; the action may or may not have happened (see dsh audit show)", c.socket)
	}
}

// Status returns whether the store is sealed, the version and the uptime (operator only).
func (c *Client) Status(ctx context.Context) (StatusResponse, error) {
	var out StatusResponse
	err := c.do(ctx, http.MethodGet, PathStatus, nil, nil, &out)
	return out, err
}

// Unseal unlocks the store with the operator's passphrase (operator only).
func (c *Client) Unseal(ctx context.Context, passphrase []byte) error {
	return c.do(ctx, http.MethodPost, PathUnseal, nil, UnsealRequest{Passphrase: string(passphrase)}, nil)
}

// Rekey seals the root key under a new unseal passphrase (operator only).
func (c *Client) Rekey(ctx context.Context, passphrase, newPassphrase []byte) error {
	return c.do(ctx, http.MethodPost, PathRekey, nil, RekeyRequest{Passphrase: string(passphrase), NewPassphrase: string(newPassphrase)}, nil)
}

// Seal locks the store and wipes every key from the daemon's memory (operator only).
func (c *Client) Seal(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathSeal, nil, nil, nil)
}

// AuditVerify walks the audit chain in the daemon (operator only). A long log takes a
// while: the call has no time limit but ctx.
func (c *Client) AuditVerify(ctx context.Context) (AuditVerifyResponse, error) {
	var out AuditVerifyResponse
	err := c.send(ctx, c.stream, http.MethodGet, PathAuditVerify, nil, nil, nil, -1, "", &out)
	return out, err
}

// AuditShow calls fn with each audit record q selects (operator only), as the daemon sends
// them, until the end, fn's first error, or ctx ends. Nothing is held in memory but the
// record at hand.
func (c *Client) AuditShow(ctx context.Context, q AuditQuery, fn func(AuditRecord) error) error {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.User != "" {
		v.Set("user", q.User)
	}
	if q.Action != "" {
		v.Set("action", q.Action)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return c.lines(ctx, PathAuditShow, v, func(dec *json.Decoder) error {
		var line AuditLine
		if err := dec.Decode(&line); err != nil {
			return err
		}
		if line.Error != "" {
			return fmt.Errorf("the dsh daemon stopped reading the audit log: %s", line.Error)
		}
		return fn(line.AuditRecord)
	})
}

// lines sends a GET whose answer is JSON lines and calls next for each, with a decoder
// positioned at it, until the answer ends.
func (c *Client) lines(ctx context.Context, path string, query url.Values, next func(*json.Decoder) error) error {
	u := "http://dsh" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("the dsh daemon answered %s", resp.Status)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		if err := next(dec); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// Upload streams body into the caller's Arrivals folder as name. size, when known (≥ 0),
// is sent as the Content-Length.
func (c *Client) Upload(ctx context.Context, name string, body io.Reader, size int64) (ArrivalView, error) {
	var out ArrivalView
	q := url.Values{UploadNameParam: {name}}
	err := c.send(ctx, c.stream, http.MethodPost, PathUpload, q, nil, body, size, "application/octet-stream", &out)
	return out, err
}

// ListArrivals lists the caller's arrivals with their expiry.
func (c *Client) ListArrivals(ctx context.Context) ([]ArrivalView, error) {
	var out ArrivalsResponse
	err := c.do(ctx, http.MethodGet, PathArrivals, nil, nil, &out)
	return out.Arrivals, err
}
