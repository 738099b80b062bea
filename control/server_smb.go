package control

import (
	"context"
	"net/http"
)

// SMB is the part of the daemon behind the Samba endpoints.
type SMB interface {
	// SMBCheck decides a tree connect (root only): allowed when the uid holds a live
	// session.
	SMBCheck(ctx context.Context, c Caller, req SMBCheckRequest) (SMBCheckResponse, error)
	// SMBPassword sets a new random SMB password for the caller and returns it.
	SMBPassword(ctx context.Context, c Caller) (SMBPasswordResponse, error)
}

func (s *Server) smbRoutes(d SMB) {
	post(s, PathSMBCheck, func(ctx context.Context, c Caller, req SMBCheckRequest) (any, error) {
		return d.SMBCheck(ctx, c, req)
	})
	s.handle(http.MethodPost, PathSMBPassword, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		if err := decode(r, nil); err != nil {
			return nil, err
		}
		return d.SMBPassword(ctx, c)
	})
}
