package control

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/http"
	"net/url"
)

// ImportTokens sends a seed file to the pool (operator only). key is the pre-shared key
// of an encrypted PSKC file (nil for none); it travels in a header over the local socket.
func (c *Client) ImportTokens(ctx context.Context, format, name string, data, key []byte) (ImportResponse, error) {
	var out ImportResponse
	q := url.Values{ImportFormatParam: {format}, ImportNameParam: {name}}
	hdr := http.Header{}
	if len(key) > 0 {
		k := hex.EncodeToString(key)
		hdr.Set(ImportKeyHeader, k)
	}
	err := c.send(ctx, c.http, http.MethodPost, PathTokenImport, q, hdr, bytes.NewReader(data), int64(len(data)), "application/octet-stream", &out)
	return out, err
}

// ListHardware lists the pool of hardware tokens (operator only).
func (c *Client) ListHardware(ctx context.Context) ([]HardwareView, error) {
	var out PoolResponse
	err := c.do(ctx, http.MethodGet, PathTokenPool, nil, nil, &out)
	return out.Tokens, err
}

// AssignHardware gives a device of the pool to a user (operator only).
func (c *Client) AssignHardware(ctx context.Context, serial, user string) error {
	return c.do(ctx, http.MethodPost, PathTokenAssign, nil, AssignRequest{Serial: serial, User: user}, nil)
}

// UnassignHardware takes a device back into the pool (operator only).
func (c *Client) UnassignHardware(ctx context.Context, serial string) error {
	return c.do(ctx, http.MethodPost, PathTokenUnassign, nil, SerialRef{Serial: serial}, nil)
}

// ResyncToken resynchronises a hardware token from two consecutive codes.
func (c *Client) ResyncToken(ctx context.Context, req ResyncRequest) error {
	return c.do(ctx, http.MethodPost, PathTokenResync, nil, req, nil)
}

// SendTokenLink mails a user a one-time link to a new soft token (operator only).
func (c *Client) SendTokenLink(ctx context.Context, user string) (TokenLinkSent, error) {
	var out TokenLinkSent
	err := c.do(ctx, http.MethodPost, PathTokenSend, nil, UserRef{ID: user}, &out)
	return out, err
}

// ClaimTokenLink makes the soft token of a one-time link.
func (c *Client) ClaimTokenLink(ctx context.Context, req ClaimRequest) (TokenCreated, error) {
	var out TokenCreated
	err := c.do(ctx, http.MethodPost, PathTokenClaim, nil, req, &out)
	return out, err
}

// MailStatus describes the mail relay and outbox (operator only).
func (c *Client) MailStatus(ctx context.Context) (MailStatus, error) {
	var out MailStatus
	err := c.do(ctx, http.MethodGet, PathMailStatus, nil, nil, &out)
	return out, err
}

// MailTest queues a test message (operator only).
func (c *Client) MailTest(ctx context.Context, to string) error {
	return c.do(ctx, http.MethodPost, PathMailTest, nil, MailTestRequest{To: to}, nil)
}
