package control

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
)

// Hardware is the part of the daemon behind the hardware-token and mail endpoints.
type Hardware interface {
	// ImportTokens reads a seed file from body into the pool (operator only); key is the
	// pre-shared key of an encrypted PSKC file, which the server wipes after the call.
	ImportTokens(ctx context.Context, c Caller, format, name string, key []byte, body io.Reader) (ImportResponse, error)
	ListHardware(ctx context.Context, c Caller) ([]HardwareView, error)
	AssignHardware(ctx context.Context, c Caller, req AssignRequest) error
	UnassignHardware(ctx context.Context, c Caller, serial string) error
	ResyncToken(ctx context.Context, c Caller, req ResyncRequest) error
	SendTokenLink(ctx context.Context, c Caller, user string) (TokenLinkSent, error)
	ClaimTokenLink(ctx context.Context, c Caller, user, code string, password, pin []byte) (TokenCreated, error)
	MailStatus(ctx context.Context, c Caller) (MailStatus, error)
	MailTest(ctx context.Context, c Caller, to string) error
}

func (s *Server) hardwareRoutes(d Hardware) {
	s.handle(http.MethodPost, PathTokenImport, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		var key []byte
		if h := r.Header.Get(ImportKeyHeader); h != "" {
			var err error
			if key, err = hex.DecodeString(h); err != nil {
				return nil, fmt.Errorf("%w: the key must be hex", ErrInvalid)
			}
			defer clear(key)
		}
		q := r.URL.Query()
		return d.ImportTokens(ctx, c, q.Get(ImportFormatParam), q.Get(ImportNameParam), key, http.MaxBytesReader(nil, r.Body, MaxImportBytes))
	})
	get(s, PathTokenPool, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		hs, err := d.ListHardware(ctx, c)
		return PoolResponse{Tokens: nonNil(hs)}, err
	})
	post(s, PathTokenAssign, func(ctx context.Context, c Caller, req AssignRequest) (any, error) {
		return nil, d.AssignHardware(ctx, c, req)
	})
	post(s, PathTokenUnassign, func(ctx context.Context, c Caller, req SerialRef) (any, error) {
		return nil, d.UnassignHardware(ctx, c, req.Serial)
	})
	post(s, PathTokenResync, func(ctx context.Context, c Caller, req ResyncRequest) (any, error) {
		return nil, d.ResyncToken(ctx, c, req)
	})
	post(s, PathTokenSend, func(ctx context.Context, c Caller, req UserRef) (any, error) {
		return d.SendTokenLink(ctx, c, req.ID)
	})
	post(s, PathTokenClaim, func(ctx context.Context, c Caller, req ClaimRequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		return d.ClaimTokenLink(ctx, c, req.User, req.Code, sec.b(req.Password), sec.b(req.PIN))
	})
	get(s, PathMailStatus, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		return d.MailStatus(ctx, c)
	})
	post(s, PathMailTest, func(ctx context.Context, c Caller, req MailTestRequest) (any, error) {
		return nil, d.MailTest(ctx, c, req.To)
	})
}
