package control

import "time"

// Paths of the endpoints Samba and its users need.
const (
	// PathSMBCheck is asked by Samba (as root) on every tree connect: may this account's
	// uid connect now? Root only.
	PathSMBCheck = "/v1/smb/check"
	// PathSMBPassword gives the caller a new random SMB password (needs a live session).
	PathSMBPassword = "/v1/smb/password"
)

// SMBCheckRequest is the body of POST /v1/smb/check, from Samba's root preexec: the Unix
// account smbd connected (its uid looked up on this host), the share and the client.
type SMBCheckRequest struct {
	Account string `json:"account"`
	UID     int    `json:"uid"`
	Share   string `json:"share"`
	Client  string `json:"client"`
}

// SMBCheckResponse answers an allowed check: whose session the connection rides on.
type SMBCheckResponse struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

// SMBPasswordResponse carries a new SMB password, shown to its user once.
type SMBPasswordResponse struct {
	Account  string `json:"account"`
	Password string `json:"password"`
}
