package control

import (
	"context"
	"fmt"
	"net/http"
)

// Accounts is the part of the daemon behind the user, project and share endpoints. The
// daemon (through package acl) decides what each caller may do.
type Accounts interface {
	CreateUser(ctx context.Context, c Caller, req UserCreateRequest) (UserCreateResponse, error)
	SetUserEnabled(ctx context.Context, c Caller, id string, enabled bool) error
	ListUsers(ctx context.Context, c Caller) ([]UserView, error)
	CreateProject(ctx context.Context, c Caller, req ProjectCreateRequest) (ProjectView, error)
	ListProjects(ctx context.Context, c Caller) ([]ProjectView, error)
	SetIAA(ctx context.Context, c Caller, req IAARequest, add bool) error
	CreateShare(ctx context.Context, c Caller, req ShareCreateRequest) (ShareView, error)
	AddMember(ctx context.Context, c Caller, req MemberRequest) error
	RemoveMember(ctx context.Context, c Caller, req MemberRequest) error
	ListShares(ctx context.Context, c Caller) ([]ShareAccessView, error)
	ShareMembers(ctx context.Context, c Caller, share string) (MembersResponse, error)
}

// post registers a POST endpoint whose body decodes strictly into a Req.
func post[Req any](s *Server, path string, h func(ctx context.Context, c Caller, req Req) (any, error)) {
	s.handle(http.MethodPost, path, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		var req Req
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h(ctx, c, req)
	})
}

// get registers a GET endpoint.
func get(s *Server, path string, h func(ctx context.Context, c Caller, r *http.Request) (any, error)) {
	s.handle(http.MethodGet, path, h)
}

func (s *Server) accountRoutes(d Accounts) {
	post(s, PathUserCreate, func(ctx context.Context, c Caller, req UserCreateRequest) (any, error) {
		return d.CreateUser(ctx, c, req)
	})
	post(s, PathUserDisable, func(ctx context.Context, c Caller, req UserRef) (any, error) {
		return nil, d.SetUserEnabled(ctx, c, req.ID, false)
	})
	post(s, PathUserEnable, func(ctx context.Context, c Caller, req UserRef) (any, error) {
		return nil, d.SetUserEnabled(ctx, c, req.ID, true)
	})
	get(s, PathUsers, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		users, err := d.ListUsers(ctx, c)
		return UsersResponse{Users: nonNil(users)}, err
	})
	post(s, PathProjectCreate, func(ctx context.Context, c Caller, req ProjectCreateRequest) (any, error) {
		return d.CreateProject(ctx, c, req)
	})
	get(s, PathProjects, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		ps, err := d.ListProjects(ctx, c)
		return ProjectsResponse{Projects: nonNil(ps)}, err
	})
	post(s, PathIAAAdd, func(ctx context.Context, c Caller, req IAARequest) (any, error) {
		return nil, d.SetIAA(ctx, c, req, true)
	})
	post(s, PathIAARemove, func(ctx context.Context, c Caller, req IAARequest) (any, error) {
		return nil, d.SetIAA(ctx, c, req, false)
	})
	post(s, PathShareCreate, func(ctx context.Context, c Caller, req ShareCreateRequest) (any, error) {
		return d.CreateShare(ctx, c, req)
	})
	post(s, PathShareAdd, func(ctx context.Context, c Caller, req MemberRequest) (any, error) {
		return nil, d.AddMember(ctx, c, req)
	})
	post(s, PathShareRemove, func(ctx context.Context, c Caller, req MemberRequest) (any, error) {
		if req.ReadOnly {
			return nil, fmt.Errorf("%w: read_only has no meaning when removing a member", ErrInvalid)
		}
		return nil, d.RemoveMember(ctx, c, req)
	})
	get(s, PathShares, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		shares, err := d.ListShares(ctx, c)
		return SharesResponse{Shares: nonNil(shares)}, err
	})
	get(s, PathShareMembers, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		name := r.URL.Query().Get(ShareMembersParam)
		if name == "" {
			return nil, fmt.Errorf("%w: the share query parameter is missing", ErrInvalid)
		}
		return d.ShareMembers(ctx, c, name)
	})
}

// nonNil makes empty lists encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// kindError gives an error from another package one of this package's kinds while keeping
// its own message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// WithKind marks err as being of kind (one of the Err* values above), so the server answers
// with the matching status and the message stays err's own.
func WithKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}
