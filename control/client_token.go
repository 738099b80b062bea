package control

import (
	"context"
	"net/http"
)

// EnrolmentCode issues a new one-time enrolment code for a user (operator only), for a
// first enrolment whose code expired or a re-enrolment after a lost phone and answers.
func (c *Client) EnrolmentCode(ctx context.Context, user string) (EnrolmentCode, error) {
	var out EnrolmentCode
	err := c.do(ctx, http.MethodPost, PathEnrolmentCode, nil, UserRef{ID: user}, &out)
	return out, err
}

// Enrol sets the caller's password, security questions and first soft token.
func (c *Client) Enrol(ctx context.Context, req EnrolRequest) (TokenCreated, error) {
	var out TokenCreated
	err := c.do(ctx, http.MethodPost, PathEnrol, nil, req, &out)
	return out, err
}

// Login starts a session for the caller's uid.
func (c *Client) Login(ctx context.Context, req LoginRequest) (SessionView, error) {
	var out SessionView
	err := c.do(ctx, http.MethodPost, PathLogin, nil, req, &out)
	return out, err
}

// Logout ends the caller's session.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathLogout, nil, nil, nil)
}

// Session describes the caller's session, if any.
func (c *Client) Session(ctx context.Context) (SessionView, error) {
	var out SessionView
	err := c.do(ctx, http.MethodGet, PathSession, nil, nil, &out)
	return out, err
}

// ListTokens lists the caller's soft tokens (needs a session).
func (c *Client) ListTokens(ctx context.Context) ([]TokenView, error) {
	var out TokensResponse
	err := c.do(ctx, http.MethodGet, PathTokens, nil, nil, &out)
	return out.Tokens, err
}

// CreateToken adds a soft token with a PIN (needs a session).
func (c *Client) CreateToken(ctx context.Context, pin string) (TokenCreated, error) {
	var out TokenCreated
	err := c.do(ctx, http.MethodPost, PathTokenCreate, nil, PINRequest{PIN: pin}, &out)
	return out, err
}

// RevokeToken deletes one of the caller's tokens (needs a session).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, PathTokenRevoke, nil, TokenRef{ID: id}, nil)
}

// SetPIN gives one of the caller's tokens a new PIN (needs a session).
func (c *Client) SetPIN(ctx context.Context, id, pin string) error {
	return c.do(ctx, http.MethodPost, PathTokenSetPIN, nil, PINRequest{ID: id, PIN: pin}, nil)
}

// RequestICE asks for an emergency code with the password and the security answers.
func (c *Client) RequestICE(ctx context.Context, req ICERequest) (ICEResponse, error) {
	var out ICEResponse
	err := c.do(ctx, http.MethodPost, PathICE, nil, req, &out)
	return out, err
}

// ChangePassword changes the caller's password.
func (c *Client) ChangePassword(ctx context.Context, req PasswdRequest) error {
	return c.do(ctx, http.MethodPost, PathPasswd, nil, req, nil)
}

// SetQuestions replaces the caller's security questions.
func (c *Client) SetQuestions(ctx context.Context, req QuestionsRequest) error {
	return c.do(ctx, http.MethodPost, PathQuestions, nil, req, nil)
}
