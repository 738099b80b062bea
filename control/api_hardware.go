package control

import "time"

// Paths of the hardware-token and mail endpoints.
const (
	// PathTokenImport takes a vendor's seed file as the body (operator only); the format
	// and a name for the audit log go in the query, the pre-shared key of an encrypted
	// PSKC file in the ImportKeyHeader (hex).
	PathTokenImport   = "/v1/tokens/import"
	PathTokenPool     = "/v1/tokens/pool"
	PathTokenAssign   = "/v1/tokens/assign"
	PathTokenUnassign = "/v1/tokens/unassign"
	PathTokenResync   = "/v1/tokens/resync"
	PathTokenSend     = "/v1/tokens/send"
	PathTokenClaim    = "/v1/tokens/claim"
	PathMailStatus    = "/v1/mail/status"
	PathMailTest      = "/v1/mail/test"

	// ImportFormatParam ("pskc", "csv" or empty to guess) and ImportNameParam (the
	// file's name, for the audit log) are query parameters of PathTokenImport.
	ImportFormatParam = "format"
	ImportNameParam   = "name"
	// ImportKeyHeader carries the pre-shared key of an encrypted PSKC file, in hex. It is
	// a header rather than a query parameter so that it never shows up in a URL.
	ImportKeyHeader = "Dsh-Import-Key"
	// MaxImportBytes bounds an imported file (the request body of PathTokenImport).
	MaxImportBytes = 8 << 20
)

// ImportResponse answers an import: serials added to the pool, and those the pool knew.
type ImportResponse struct {
	Imported []string `json:"imported"`
	Skipped  []string `json:"skipped"`
}

// HardwareView is a device of the pool, without its secret.
type HardwareView struct {
	Serial       string    `json:"serial"`
	Kind         string    `json:"kind"`
	Digits       int       `json:"digits"`
	Period       int       `json:"period,omitempty"`
	Algorithm    string    `json:"algorithm"`
	Manufacturer string    `json:"manufacturer,omitempty"`
	State        string    `json:"state"`
	User         string    `json:"user,omitempty"`
	PINSet       bool      `json:"pin_set"`
	Imported     time.Time `json:"imported"`
	Changed      time.Time `json:"changed,omitzero"`
	LastUsed     time.Time `json:"last_used,omitzero"`
}

// PoolResponse answers GET /v1/tokens/pool.
type PoolResponse struct {
	Tokens []HardwareView `json:"tokens"`
}

// AssignRequest assigns the device with Serial to User.
type AssignRequest struct {
	Serial string `json:"serial"`
	User   string `json:"user"`
}

// SerialRef names a device of the pool.
type SerialRef struct {
	Serial string `json:"serial"`
}

// ResyncRequest resynchronises a hardware token from two consecutive codes. ID is the
// token's ID (its serial); the operator may name any assigned device.
type ResyncRequest struct {
	ID    string `json:"id"`
	Code1 string `json:"code1"`
	Code2 string `json:"code2"`
}

// TokenLinkSent answers PathTokenSend: the one-time link to a soft token was queued for
// the user's address.
type TokenLinkSent struct {
	User    string    `json:"user"`
	To      string    `json:"to"`
	Expires time.Time `json:"expires"`
}

// ClaimRequest makes the soft token a one-time link promised: the link's code, the
// user's password and the PIN of the new token.
type ClaimRequest struct {
	User     string `json:"user,omitempty"`
	Code     string `json:"code"`
	Password string `json:"password"`
	PIN      string `json:"pin"`
}

// MailStatus answers GET /v1/mail/status (operator only).
type MailStatus struct {
	Configured  bool      `json:"configured"`
	Relay       string    `json:"relay,omitempty"`
	Waiting     int       `json:"waiting"`
	Oldest      time.Time `json:"oldest,omitzero"`
	NextTry     time.Time `json:"next_try,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// MailTestRequest asks for a test message to To.
type MailTestRequest struct {
	To string `json:"to"`
}
