package control

import "time"

// Paths of the account, project and share endpoints.
const (
	PathUsers         = "/v1/users"
	PathUserCreate    = "/v1/users/create"
	PathUserDisable   = "/v1/users/disable"
	PathUserEnable    = "/v1/users/enable"
	PathProjects      = "/v1/projects"
	PathProjectCreate = "/v1/projects/create"
	PathIAAAdd        = "/v1/projects/iaa/add"
	PathIAARemove     = "/v1/projects/iaa/remove"
	PathShares        = "/v1/shares"
	PathShareCreate   = "/v1/shares/create"
	PathShareAdd      = "/v1/shares/add"
	PathShareRemove   = "/v1/shares/remove"
	PathShareMembers  = "/v1/shares/members"

	// ShareMembersParam is the query parameter of PathShareMembers naming the share.
	ShareMembersParam = "share"
)

// UserCreateRequest is the body of POST /v1/users/create. Shares are shares to add the new
// user to at once, read-write.
type UserCreateRequest struct {
	ID     string   `json:"id"`
	UID    int      `json:"uid"`
	Email  string   `json:"email"`
	Shares []string `json:"shares,omitempty"`
}

// UserView is an account as the operator sees it.
type UserView struct {
	ID      string    `json:"id"`
	UID     int       `json:"uid"`
	Email   string    `json:"email"`
	Status  string    `json:"status"`
	Created time.Time `json:"created"`
}

// UserCreateResponse answers POST /v1/users/create.
type UserCreateResponse struct {
	User      UserView      `json:"user"`
	Shares    []string      `json:"shares,omitempty"`
	Enrolment EnrolmentCode `json:"enrolment"`
}

// UserRef names one account, for disable and enable.
type UserRef struct {
	ID string `json:"id"`
}

// UsersResponse answers GET /v1/users.
type UsersResponse struct {
	Users []UserView `json:"users"`
}

// ProjectCreateRequest is the body of POST /v1/projects/create.
type ProjectCreateRequest struct {
	Name string `json:"name"`
	IAO  string `json:"iao"`
}

// ProjectView is a project with who manages it.
type ProjectView struct {
	Name    string    `json:"name"`
	IAO     string    `json:"iao"`
	IAAs    []string  `json:"iaas"`
	Created time.Time `json:"created"`
}

// ProjectsResponse answers GET /v1/projects.
type ProjectsResponse struct {
	Projects []ProjectView `json:"projects"`
}

// IAARequest is the body of POST /v1/projects/iaa/add and /remove.
type IAARequest struct {
	Project string `json:"project"`
	User    string `json:"user"`
}

// ShareCreateRequest is the body of POST /v1/shares/create.
type ShareCreateRequest struct {
	Name    string `json:"name"`
	Project string `json:"project"`
}

// ShareView is a share and its project.
type ShareView struct {
	Name    string    `json:"name"`
	Project string    `json:"project"`
	Created time.Time `json:"created"`
}

// MemberRequest is the body of POST /v1/shares/add and /remove (ReadOnly only for add).
type MemberRequest struct {
	Share    string `json:"share"`
	User     string `json:"user"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ShareAccessView is one share in `dsh share list`: the caller's membership ("rw", "ro" or
// "") and whether they manage it.
type ShareAccessView struct {
	Share   string `json:"share"`
	Project string `json:"project"`
	Mode    string `json:"mode,omitempty"`
	Manager bool   `json:"manager"`
}

// SharesResponse answers GET /v1/shares.
type SharesResponse struct {
	Shares []ShareAccessView `json:"shares"`
}

// MemberView is one member of a share.
type MemberView struct {
	User   string `json:"user"`
	Mode   string `json:"mode"`
	Status string `json:"status"`
}

// MembersResponse answers GET /v1/shares/members?share=NAME.
type MembersResponse struct {
	Share   string       `json:"share"`
	Members []MemberView `json:"members"`
}
