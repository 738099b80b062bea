// Package control is the control socket of dsh: HTTP with JSON bodies over a Unix socket.
// It holds the wire types (this file), the client that the command line uses (client.go) and
// the server that hands each request to the daemon through a narrow interface (server.go).
// The caller's identity comes only from the socket's peer credentials, never from a request
// body; the package must never log or echo a request body, since bodies carry secrets.
package control

import (
	"errors"
	"time"
)

// DefaultSocket is where the daemon listens and the client connects unless told otherwise.
const DefaultSocket = "/run/dsh/control.sock"

// MaxBodyBytes bounds every request body; nothing legitimate comes near it.
const MaxBodyBytes = 64 << 10

// Error kinds that the daemon wraps its errors in. The server maps them to HTTP statuses in
// one place (statusFor); the client maps statuses back, so errors.Is works on both sides.
var (
	// ErrInvalid: the request is malformed or names something invalid (400).
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthorized: a credential (passphrase, password, code) was wrong (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the caller may not do this (403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the named thing does not exist, or the caller may not know it does (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request clashes with the current state, e.g. a duplicate name (409).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the store is sealed or a part the request needs is down (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrLocked: the account is locked after too many failed logins (423).
	ErrLocked = errors.New("locked")
	// ErrTooMany: the caller already has too much in progress, or must wait after failed
	// attempts (429).
	ErrTooMany = errors.New("too many requests")
	// ErrTimeout: the request's body stopped arriving and was cut off (408).
	ErrTimeout = errors.New("timed out")
)

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// StatusResponse answers GET /v1/operator/status.
type StatusResponse struct {
	Sealed        bool    `json:"sealed"`
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	DataDir       string  `json:"data_dir"`
}

// RekeyRequest is the body of POST /v1/operator/rekey: the current unseal passphrase and
// the new one.
type RekeyRequest struct {
	Passphrase    string `json:"passphrase"`
	NewPassphrase string `json:"new_passphrase"`
}

// UnsealRequest is the body of POST /v1/operator/unseal.
type UnsealRequest struct {
	Passphrase string `json:"passphrase"`
}

// AuditVerifyResponse answers GET /v1/audit/verify. OK is false when the chain is broken;
// Problem then names the first bad record.
type AuditVerifyResponse struct {
	OK      bool   `json:"ok"`
	Records uint64 `json:"records"`
	Problem string `json:"problem,omitempty"`
	Warning string `json:"warning,omitempty"`
}

// AuditRecord is one audit record as shown to an operator.
type AuditRecord struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	UID    int64     `json:"uid"`
	User   string    `json:"user,omitempty"`
	Action string    `json:"action"`
	Object string    `json:"object,omitempty"`
	Result string    `json:"result"`
	Detail string    `json:"detail,omitempty"`
}

// AuditQuery selects the records of GET /v1/audit/show; the zero value selects all. Its
// query parameters: since and until (RFC 3339), user, action (exact, or a prefix ending
// in '*') and limit.
type AuditQuery struct {
	Since, Until time.Time
	User, Action string
	Limit        int
}

// AuditLine is one line of the answer to GET /v1/audit/show, which is JSON lines
// (application/x-ndjson) sent as the daemon reads the log: a record per line, and, should
// the reading fail after the first line, a last line holding only Error.
type AuditLine struct {
	AuditRecord
	Error string `json:"error,omitempty"`
}

// Paths of the endpoints, shared by client and server.
const (
	PathStatus      = "/v1/operator/status"
	PathUnseal      = "/v1/operator/unseal"
	PathRekey       = "/v1/operator/rekey"
	PathSeal        = "/v1/operator/seal"
	PathAuditVerify = "/v1/audit/verify"
	PathAuditShow   = "/v1/audit/show"
)
