package control

import (
	"context"
	"net/http"
)

// SMBCheck asks whether a Samba tree connect may go ahead (root only).
func (c *Client) SMBCheck(ctx context.Context, req SMBCheckRequest) (SMBCheckResponse, error) {
	var out SMBCheckResponse
	err := c.do(ctx, http.MethodPost, PathSMBCheck, nil, req, &out)
	return out, err
}

// SMBPassword sets a new random SMB password for the caller and returns it, once.
func (c *Client) SMBPassword(ctx context.Context) (SMBPasswordResponse, error) {
	var out SMBPasswordResponse
	err := c.do(ctx, http.MethodPost, PathSMBPassword, nil, nil, &out)
	return out, err
}
