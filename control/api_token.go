package control

import "time"

// Paths of the token-service endpoints: enrolment, login sessions, soft tokens, ICE and
// passwords. Every one acts for the caller's uid (from the socket's peer credentials).
const (
	PathEnrolmentCode = "/v1/users/enrolment-code"
	PathEnrol         = "/v1/enrol"
	PathLogin         = "/v1/login"
	PathLogout        = "/v1/logout"
	PathSession       = "/v1/session"
	PathTokens        = "/v1/tokens"
	PathTokenCreate   = "/v1/tokens/create"
	PathTokenRevoke   = "/v1/tokens/revoke"
	PathTokenSetPIN   = "/v1/tokens/set-pin"
	PathICE           = "/v1/ice"
	PathPasswd        = "/v1/passwd"
	PathQuestions     = "/v1/questions"
)

// Secrets travel in these request bodies as JSON strings over the local socket only; the
// server copies them into byte slices that it wipes, and never logs a body.

// EnrolmentCode is a one-time enrolment code as the operator receives it, to hand to the
// user out of band.
type EnrolmentCode struct {
	User    string    `json:"user"`
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
	// MailedTo is the address the code was also queued to, when the daemon has a relay.
	MailedTo string `json:"mailed_to,omitempty"`
}

// SecurityQuestion is one of the three ICE questions with its answer (case-sensitive).
type SecurityQuestion struct {
	Question string `json:"question"`
	Answer   string `json:"answer"`
}

// EnrolRequest is the body of POST /v1/enrol, sent from the enrolling user's own uid.
type EnrolRequest struct {
	Code      string              `json:"code"`
	Password  string              `json:"password"`
	PIN       string              `json:"pin"`
	Questions [3]SecurityQuestion `json:"questions"`
	// TokenCode, when set, is a code of a hardware token assigned to the user: the PIN is
	// set on that token instead of a soft token being created.
	TokenCode string `json:"token_code,omitempty"`
}

// TokenCreated answers enrolment and token creation: the token's ID and the otpauth URL
// holding its secret, shown to the user once.
type TokenCreated struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// LoginRequest is the body of POST /v1/login: password with PIN and TOTP code, or password
// with an ICE emergency code. User, when set, must be the user of the caller's uid.
type LoginRequest struct {
	User          string `json:"user,omitempty"`
	Password      string `json:"password"`
	PIN           string `json:"pin,omitempty"`
	Code          string `json:"code,omitempty"`
	EmergencyCode string `json:"emergency_code,omitempty"`
}

// SessionView answers GET /v1/session and a login: the caller's sessions, if any, with the
// shares they hold keys for. A uid may hold one session started with dsh login and, beside
// it, sessions of portal sign-ins; Expires is the latest time one of them ends.
type SessionView struct {
	Active   bool              `json:"active"`
	UID      int               `json:"uid"`
	User     string            `json:"user,omitempty"`
	Expires  time.Time         `json:"expires,omitzero"`
	Shares   []ShareAccessView `json:"shares"`
	Sessions []SessionEntry    `json:"sessions,omitempty"`
	// Current is the session a login just started (0 otherwise).
	Current uint64 `json:"current,omitempty"`
}

// Channels of a SessionEntry.
const (
	ChannelCommandLine = "command line"
	ChannelPortal      = "portal"
)

// SessionEntry is one of a uid's sessions.
type SessionEntry struct {
	ID      uint64    `json:"id"`
	Channel string    `json:"channel"` // ChannelCommandLine or ChannelPortal
	Method  string    `json:"method"`  // "token" or "ice"
	Started time.Time `json:"started"`
	// Expires is when the session ends unless used again (a portal session's idle
	// timeout), or in any case.
	Expires time.Time `json:"expires"`
}

// TokenView describes a token without its secret.
type TokenView struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// Hardware marks a device from the pool (ID is its serial); Digits and Period say how
	// it makes codes; PINSet is false until its owner has set its PIN.
	Hardware bool `json:"hardware,omitempty"`
	Digits   int  `json:"digits,omitempty"`
	Period   int  `json:"period,omitempty"`
	PINSet   bool `json:"pin_set"`
}

// TokensResponse answers GET /v1/tokens.
type TokensResponse struct {
	Tokens []TokenView `json:"tokens"`
}

// PINRequest is the body of POST /v1/tokens/create (ID empty) and /v1/tokens/set-pin.
type PINRequest struct {
	ID  string `json:"id,omitempty"`
	PIN string `json:"pin"`
}

// TokenRef names one of the caller's tokens, for revoke.
type TokenRef struct {
	ID string `json:"id"`
}

// ICERequest is the body of POST /v1/ice: the password and the three answers, in the order
// the questions were set.
type ICERequest struct {
	User     string    `json:"user"`
	Password string    `json:"password"`
	Answers  [3]string `json:"answers"`
}

// ICEResponse carries an emergency code, shown once.
type ICEResponse struct {
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// PasswdRequest is the body of POST /v1/passwd.
type PasswdRequest struct {
	Current string `json:"current"`
	PIN     string `json:"pin"`
	Code    string `json:"code"`
	New     string `json:"new"`
}

// QuestionsRequest is the body of POST /v1/questions: new security questions, confirmed
// with password, PIN and a code.
type QuestionsRequest struct {
	Password  string              `json:"password"`
	PIN       string              `json:"pin"`
	Code      string              `json:"code"`
	Questions [3]SecurityQuestion `json:"questions"`
}
