package control

import (
	"context"
	"net/http"
	"net/url"
)

// CreateUser creates an account (operator only).
func (c *Client) CreateUser(ctx context.Context, req UserCreateRequest) (UserCreateResponse, error) {
	var out UserCreateResponse
	err := c.do(ctx, http.MethodPost, PathUserCreate, nil, req, &out)
	return out, err
}

// SetUserEnabled disables or enables an account (operator only).
func (c *Client) SetUserEnabled(ctx context.Context, id string, enabled bool) error {
	path := PathUserDisable
	if enabled {
		path = PathUserEnable
	}
	return c.do(ctx, http.MethodPost, path, nil, UserRef{ID: id}, nil)
}

// ListUsers lists every account (operator only).
func (c *Client) ListUsers(ctx context.Context) ([]UserView, error) {
	var out UsersResponse
	err := c.do(ctx, http.MethodGet, PathUsers, nil, nil, &out)
	return out.Users, err
}

// CreateProject creates a project with its IAO (operator only).
func (c *Client) CreateProject(ctx context.Context, req ProjectCreateRequest) (ProjectView, error) {
	var out ProjectView
	err := c.do(ctx, http.MethodPost, PathProjectCreate, nil, req, &out)
	return out, err
}

// ListProjects lists projects (operator only).
func (c *Client) ListProjects(ctx context.Context) ([]ProjectView, error) {
	var out ProjectsResponse
	err := c.do(ctx, http.MethodGet, PathProjects, nil, nil, &out)
	return out.Projects, err
}

// SetIAA nominates (add) or removes an IAA of a project (its IAO).
func (c *Client) SetIAA(ctx context.Context, req IAARequest, add bool) error {
	path := PathIAARemove
	if add {
		path = PathIAAAdd
	}
	return c.do(ctx, http.MethodPost, path, nil, req, nil)
}

// CreateShare creates a share against a project (its IAO or an IAA).
func (c *Client) CreateShare(ctx context.Context, req ShareCreateRequest) (ShareView, error) {
	var out ShareView
	err := c.do(ctx, http.MethodPost, PathShareCreate, nil, req, &out)
	return out, err
}

// AddMember adds a user to a share, read-write unless req.ReadOnly (IAO or IAA).
func (c *Client) AddMember(ctx context.Context, req MemberRequest) error {
	return c.do(ctx, http.MethodPost, PathShareAdd, nil, req, nil)
}

// RemoveMember removes a user from a share (IAO or IAA).
func (c *Client) RemoveMember(ctx context.Context, req MemberRequest) error {
	return c.do(ctx, http.MethodPost, PathShareRemove, nil, req, nil)
}

// ListShares lists the shares the caller belongs to or manages.
func (c *Client) ListShares(ctx context.Context) ([]ShareAccessView, error) {
	var out SharesResponse
	err := c.do(ctx, http.MethodGet, PathShares, nil, nil, &out)
	return out.Shares, err
}

// ShareMembers lists the members of a share (IAO or IAA of its project).
func (c *Client) ShareMembers(ctx context.Context, share string) (MembersResponse, error) {
	var out MembersResponse
	err := c.do(ctx, http.MethodGet, PathShareMembers, url.Values{ShareMembersParam: {share}}, nil, &out)
	return out, err
}
