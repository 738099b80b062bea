package control

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
)

// Airlock is the part of the daemon behind the airlock's endpoints.
type Airlock interface {
	ListQuarantine(ctx context.Context, c Caller) ([]QuarantineView, error)
	ReleaseQuarantine(ctx context.Context, c Caller, id string) (QuarantineReleaseResponse, error)
	DeleteQuarantine(ctx context.Context, c Caller, id string) error
	CreateEgress(ctx context.Context, c Caller, req EgressCreateRequest) (EgressView, error)
	ListEgress(ctx context.Context, c Caller) ([]EgressView, error)
	ShowEgress(ctx context.Context, c Caller, id string) (EgressShowResponse, error)
	// EgressAction does action (submit, approve, reject, revoke, cancel) to a request.
	EgressAction(ctx context.Context, c Caller, action string, req EgressAction) (EgressView, error)
	DownloadEgress(ctx context.Context, c Caller, id string, file int) (*Stream, error)
	ViewEgress(ctx context.Context, c Caller, id string, file int) (*Stream, error)
	EgressPolicy(ctx context.Context, c Caller, project string) (EgressPolicyView, error)
	SetEgressPolicy(ctx context.Context, c Caller, req EgressPolicyRequest) (EgressPolicyView, error)
}

func (s *Server) airlockRoutes(d Airlock) {
	get(s, PathQuarantine, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		qs, err := d.ListQuarantine(ctx, c)
		return QuarantineResponse{Files: nonNil(qs)}, err
	})
	post(s, PathQuarantineRelease, func(ctx context.Context, c Caller, req QuarantineRef) (any, error) {
		return d.ReleaseQuarantine(ctx, c, req.ID)
	})
	post(s, PathQuarantineDelete, func(ctx context.Context, c Caller, req QuarantineRef) (any, error) {
		return nil, d.DeleteQuarantine(ctx, c, req.ID)
	})
	post(s, PathEgressCreate, func(ctx context.Context, c Caller, req EgressCreateRequest) (any, error) {
		return d.CreateEgress(ctx, c, req)
	})
	get(s, PathEgress, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		rs, err := d.ListEgress(ctx, c)
		return EgressListResponse{Requests: nonNil(rs)}, err
	})
	get(s, PathEgressShow, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		return d.ShowEgress(ctx, c, r.URL.Query().Get("id"))
	})
	for path, action := range map[string]string{PathEgressSubmit: "submit", PathEgressApprove: "approve",
		PathEgressReject: "reject", PathEgressRevoke: "revoke", PathEgressCancel: "cancel"} {
		post(s, path, func(ctx context.Context, c Caller, req EgressAction) (any, error) {
			return d.EgressAction(ctx, c, action, req)
		})
	}
	for path, view := range map[string]bool{PathEgressDownload: false, PathEgressView: true} {
		s.routes[path] = route{method: http.MethodGet, stream: true, h: func(ctx context.Context, c Caller, r *http.Request) (any, error) {
			n, err := strconv.Atoi(r.URL.Query().Get("file"))
			if err != nil {
				return nil, fmt.Errorf("%w: file must be the number of a file of the request", ErrInvalid)
			}
			if view {
				return d.ViewEgress(ctx, c, r.URL.Query().Get("id"), n)
			}
			return d.DownloadEgress(ctx, c, r.URL.Query().Get("id"), n)
		}}
	}
	get(s, PathEgressPolicy, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		return d.EgressPolicy(ctx, c, r.URL.Query().Get("project"))
	})
	post(s, PathEgressPolicy+"/set", func(ctx context.Context, c Caller, req EgressPolicyRequest) (any, error) {
		return d.SetEgressPolicy(ctx, c, req)
	})
}

// writeStream sends a Stream as the raw body. If its bytes fail their check half-way, the
// answer stops short of its Content-Length and the connection is closed: the client sees a
// cut transfer, never a complete one.
func writeStream(w http.ResponseWriter, st *Stream) {
	defer st.Body.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size, 10))
	w.Header().Set(HeaderSHA256, st.SHA256)
	w.Header().Set(HeaderName, st.Name)
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 1<<20)
	for {
		n, err := st.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
