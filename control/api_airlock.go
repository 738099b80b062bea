package control

import (
	"io"
	"time"
)

// Paths of the airlock's endpoints: the quarantine of the malware gate, and egress requests.
const (
	PathQuarantine        = "/v1/quarantine"         // GET: the quarantined files
	PathQuarantineRelease = "/v1/quarantine/release" // POST QuarantineRef
	PathQuarantineDelete  = "/v1/quarantine/delete"  // POST QuarantineRef
	PathEgress            = "/v1/egress"             // GET: the requests the caller may see
	PathEgressCreate      = "/v1/egress/create"      // POST EgressCreateRequest
	PathEgressShow        = "/v1/egress/show"        // GET ?id=
	PathEgressSubmit      = "/v1/egress/submit"      // POST EgressAction
	PathEgressApprove     = "/v1/egress/approve"     // POST EgressAction
	PathEgressReject      = "/v1/egress/reject"      // POST EgressAction (with a reason)
	PathEgressRevoke      = "/v1/egress/revoke"      // POST EgressAction (with a reason)
	PathEgressCancel      = "/v1/egress/cancel"      // POST EgressAction
	PathEgressDownload    = "/v1/egress/download"    // GET ?id=&file=N: the file's bytes
	PathEgressView        = "/v1/egress/view"        // GET ?id=&file=N: the review view
	PathEgressPolicy      = "/v1/egress/policy"      // GET ?project=; POST EgressPolicyRequest
)

// Headers of a streamed file (download and review view).
const (
	HeaderSHA256 = "X-Dsh-Sha256"
	HeaderName   = "X-Dsh-Name"
)

// QuarantineView is one file the malware gate stopped.
type QuarantineView struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	Result    string    `json:"result"` // infected or held
	Signature string    `json:"signature,omitempty"`
	Verdict   string    `json:"verdict"` // in words
	Held      time.Time `json:"held"`
	Release   []string  `json:"release,omitempty"` // who asked for its release so far
}

// QuarantineResponse answers GET /v1/quarantine.
type QuarantineResponse struct {
	Files []QuarantineView `json:"files"`
}

// QuarantineRef names a quarantined file.
type QuarantineRef struct {
	ID string `json:"id"`
}

// QuarantineReleaseResponse answers a release request: the file as it stands, and its
// arrival once the second person released it.
type QuarantineReleaseResponse struct {
	File     QuarantineView `json:"file"`
	Released *ArrivalView   `json:"released,omitempty"`
	Needed   int            `json:"needed"`
}

// EgressCreateRequest asks to release files of a share.
type EgressCreateRequest struct {
	Share  string   `json:"share"`
	Paths  []string `json:"paths"`
	Reason string   `json:"reason"`
	// Draft keeps the request as a draft (nothing frozen) to submit later.
	Draft bool `json:"draft,omitempty"`
}

// EgressAction names a request, with a reason where the action needs one.
type EgressAction struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// EgressFileView is one file of a request.
type EgressFileView struct {
	Path    string   `json:"path"`
	Size    int64    `json:"size"`
	SHA256  string   `json:"sha256,omitempty"`
	Objects []string `json:"objects,omitempty"`
	Verdict string   `json:"verdict,omitempty"`
}

// EgressApprovalView is one approval.
type EgressApprovalView struct {
	User string    `json:"user"`
	At   time.Time `json:"at"`
}

// EgressEventView is one transition of a request.
type EgressEventView struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Action string    `json:"action"`
	State  string    `json:"state"`
	Why    string    `json:"why,omitempty"`
}

// EgressView is one egress request.
type EgressView struct {
	ID        string               `json:"id"`
	Project   string               `json:"project"`
	Share     string               `json:"share"`
	Requester string               `json:"requester"`
	Reason    string               `json:"reason"`
	State     string               `json:"state"`
	Files     []EgressFileView     `json:"files"`
	Manifest  string               `json:"manifest,omitempty"`
	K         int                  `json:"k,omitempty"`
	Approvals []EgressApprovalView `json:"approvals,omitempty"`
	Created   time.Time            `json:"created"`
	Submitted time.Time            `json:"submitted,omitzero"`
	Expires   time.Time            `json:"expires,omitzero"`
	Downloads int                  `json:"downloads,omitempty"`
	History   []EgressEventView    `json:"history,omitempty"`
}

// EgressListResponse answers GET /v1/egress.
type EgressListResponse struct {
	Requests []EgressView `json:"requests"`
}

// EgressShowResponse answers GET /v1/egress/show: the request, the project's earlier
// requests (what left before, for spotting differencing), its reviewers, and what the
// caller may do.
type EgressShowResponse struct {
	Request   EgressView   `json:"request"`
	Earlier   []EgressView `json:"earlier"`
	Reviewers []string     `json:"reviewers"`
	// Reviewer says that the caller reviews this project's requests.
	Reviewer bool `json:"reviewer"`
}

// EgressPolicyRequest changes a project's review rule (its IAO or the operator).
type EgressPolicyRequest struct {
	Project string   `json:"project"`
	K       int      `json:"k,omitempty"`
	Add     []string `json:"add,omitempty"`
	Remove  []string `json:"remove,omitempty"`
}

// EgressPolicyView is a project's review rule.
type EgressPolicyView struct {
	Project string `json:"project"`
	K       int    `json:"k"`
	// Reviewers are all who review: the IAO, the IAAs and the extra ones.
	Reviewers []string `json:"reviewers"`
	// Extra are the reviewers named in the policy besides the IAO and IAAs.
	Extra []string `json:"extra,omitempty"`
}

// Stream is a file an endpoint sends as its raw body (not JSON), with its name, size and
// SHA-256 in headers. Body's Read fails (and the answer is cut short, which the client
// sees) if the bytes turn out not to be the expected ones.
type Stream struct {
	Name   string
	Size   int64
	SHA256 string
	Body   io.ReadCloser
}
