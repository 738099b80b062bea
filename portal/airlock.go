package portal

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"dsh/control"
)

// Airlock is what the Applications & Data pages need from the daemon: the egress calls of
// the control socket (control.Airlock), made as the signed-in user.
type Airlock interface {
	CreateEgress(ctx context.Context, c control.Caller, req control.EgressCreateRequest) (control.EgressView, error)
	ListEgress(ctx context.Context, c control.Caller) ([]control.EgressView, error)
	ShowEgress(ctx context.Context, c control.Caller, id string) (control.EgressShowResponse, error)
	EgressAction(ctx context.Context, c control.Caller, action string, req control.EgressAction) (control.EgressView, error)
	DownloadEgress(ctx context.Context, c control.Caller, id string, file int) (*control.Stream, error)
	ViewEgress(ctx context.Context, c control.Caller, id string, file int) (*control.Stream, error)
}

// airlockPages are the templates of the Applications & Data pages.
var airlockPages = []string{"egress", "egress_request", "egress_view"}

// airlockRoutes adds the Applications & Data pages: requests to release files from a
// share, their review, and the download of approved files by their requester.
func (s *Server) airlockRoutes() error {
	for _, n := range airlockPages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return fmt.Errorf("portal: template %s: %w", n, err)
		}
		s.pages[n] = t
	}
	m := s.mux
	m.HandleFunc("GET /egress", s.signedIn(s.egressPage))
	m.HandleFunc("POST /egress/create", s.signedIn(s.egressCreate))
	m.HandleFunc("GET /egress/request", s.signedIn(s.egressRequestPage))
	m.HandleFunc("POST /egress/action", s.signedIn(s.egressAction))
	m.HandleFunc("GET /egress/view", s.signedIn(s.egressViewPage))
	m.HandleFunc("GET /egress/download", s.signedIn(s.egressDownload))
	return nil
}

// stateLabel shows a request's state as people read it.
func stateLabel(s string) string { return strings.ReplaceAll(s, "_", " ") }

type egressData struct {
	Shares   []string
	Mine     []control.EgressView
	ToReview []control.EgressView
	Others   []control.EgressView
	Error    string
}

func (s *Server) egressPage(w http.ResponseWriter, r *http.Request, ws *websession) {
	var d egressData
	shares, err := s.svc.ListShares(r.Context(), caller(ws, r))
	for _, sh := range shares {
		if sh.Mode != "" {
			d.Shares = append(d.Shares, sh.Share)
		}
	}
	var all []control.EgressView
	if err == nil {
		all, err = s.airlock.ListEgress(r.Context(), caller(ws, r))
	}
	if err != nil {
		_, d.Error = s.message(r, err)
	}
	for _, e := range all {
		switch {
		case e.Requester == ws.user:
			d.Mine = append(d.Mine, e)
		case e.State == "submitted" || e.State == "in_review":
			if !slices.ContainsFunc(e.Approvals, func(a control.EgressApprovalView) bool { return a.User == ws.user }) {
				d.ToReview = append(d.ToReview, e)
				continue
			}
			d.Others = append(d.Others, e)
		default:
			d.Others = append(d.Others, e)
		}
	}
	p := base(ws, "Applications & Data", "egress")
	p.Data = d
	s.render(w, "egress", p)
}

func (s *Server) egressCreate(w http.ResponseWriter, r *http.Request, ws *websession) {
	var paths []string
	for _, l := range strings.Split(r.PostFormValue("paths"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			paths = append(paths, l)
		}
	}
	req := control.EgressCreateRequest{Share: r.PostFormValue("share"), Paths: paths, Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	v, err := s.airlock.CreateEgress(r.Context(), caller(ws, r), req)
	if err != nil {
		s.done(w, r, ws, "/egress", err, "")
		return
	}
	s.done(w, r, ws, "/egress/request?id="+v.ID, nil, fmt.Sprintf("Request %s submitted: its files are frozen as they are now and wait for %d approvals.", v.ID, v.K))
}

type egressRequestData struct {
	control.EgressShowResponse
	Requester bool
	// CanDownload: the requester, with the request approved or released.
	CanDownload bool
	// CanDecide: a reviewer who is not the requester and has not approved yet.
	CanDecide bool
	CanRevoke bool
	CanCancel bool
	// CanView: a reviewer who is not the requester (the review view).
	CanView bool
}

func (s *Server) egressRequestPage(w http.ResponseWriter, r *http.Request, ws *websession) {
	sh, err := s.airlock.ShowEgress(r.Context(), caller(ws, r), r.URL.Query().Get("id"))
	if err != nil {
		status, msg := s.message(r, err)
		s.fail(w, r, ws, status, msg)
		return
	}
	q := sh.Request
	d := egressRequestData{EgressShowResponse: sh, Requester: q.Requester == ws.user}
	approved := slices.ContainsFunc(q.Approvals, func(a control.EgressApprovalView) bool { return a.User == ws.user })
	d.CanDownload = d.Requester && (q.State == "approved" || q.State == "released")
	d.CanDecide = sh.Reviewer && !d.Requester && !approved && (q.State == "submitted" || q.State == "in_review")
	d.CanRevoke = sh.Reviewer && !d.Requester && q.State == "approved"
	d.CanCancel = d.Requester && (q.State == "draft" || q.State == "submitted" || q.State == "in_review")
	d.CanView = sh.Reviewer && !d.Requester
	p := base(ws, "Request "+q.ID, "egress")
	p.Data = d
	s.render(w, "egress_request", p)
}

func (s *Server) egressAction(w http.ResponseWriter, r *http.Request, ws *websession) {
	id, action := r.PostFormValue("id"), r.PostFormValue("action")
	switch action {
	case "approve", "reject", "revoke", "cancel":
	default:
		s.fail(w, r, ws, http.StatusBadRequest, "Unknown action.")
		return
	}
	v, err := s.airlock.EgressAction(r.Context(), caller(ws, r), action, control.EgressAction{ID: id, Reason: strings.TrimSpace(r.PostFormValue("reason"))})
	msg := fmt.Sprintf("Request %s is now %s.", id, stateLabel(v.State))
	if action == "approve" && err == nil {
		msg = fmt.Sprintf("You approved request %s: %d of %d approvals; it is %s.", id, len(v.Approvals), v.K, stateLabel(v.State))
	}
	s.done(w, r, ws, "/egress/request?id="+id, err, msg)
}

// fileArg reads the file number of a view or download.
func fileArg(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("file"))
	if err != nil {
		return 0
	}
	return n
}

// previewBytes is how much of a file the review page shows.
const previewBytes = 64 << 10

type egressViewData struct {
	ID, Name, SHA256 string
	N                int
	Size             int64
	Text             string
	Hex              string
	Cut              bool
}

func (s *Server) egressViewPage(w http.ResponseWriter, r *http.Request, ws *websession) {
	id, n := r.URL.Query().Get("id"), fileArg(r)
	st, err := s.airlock.ViewEgress(r.Context(), caller(ws, r), id, n)
	if err != nil {
		status, msg := s.message(r, err)
		s.fail(w, r, ws, status, msg)
		return
	}
	defer st.Body.Close()
	buf := make([]byte, previewBytes)
	k, err := io.ReadFull(st.Body, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		status, msg := s.message(r, err)
		s.fail(w, r, ws, status, msg)
		return
	}
	buf = buf[:k]
	d := egressViewData{ID: id, N: n, Name: st.Name, SHA256: st.SHA256, Size: st.Size, Cut: int64(k) < st.Size}
	if utf8.Valid(buf) && !strings.ContainsRune(string(buf), 0) {
		d.Text = string(buf)
	} else {
		d.Hex = hexDump(buf[:min(len(buf), 1024)])
	}
	p := base(ws, "Review: "+st.Name, "egress")
	p.Data = d
	s.render(w, "egress_view", p)
}

// hexDump shows bytes as a reviewer reads a binary file: offset, hex, text.
func hexDump(b []byte) string {
	var sb strings.Builder
	for off := 0; off < len(b); off += 16 {
		line := b[off:min(off+16, len(b))]
		fmt.Fprintf(&sb, "%08x  ", off)
		for i := range 16 {
			if i < len(line) {
				fmt.Fprintf(&sb, "%02x ", line[i])
			} else {
				sb.WriteString("   ")
			}
		}
		sb.WriteString(" ")
		for _, c := range line {
			if c < 32 || c > 126 {
				c = '.'
			}
			sb.WriteByte(c)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// egressDownload sends an approved file to its requester. The daemon has hashed and scanned
// it before this call returns; the bytes are hashed again as they stream, and a difference
// cuts the answer short of its length, so the browser reports a failed download.
func (s *Server) egressDownload(w http.ResponseWriter, r *http.Request, ws *websession) {
	if r.Method != http.MethodGet {
		// A HEAD would count (and audit) as a download without a byte sent.
		w.Header().Set("Allow", http.MethodGet)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	st, err := s.airlock.DownloadEgress(r.Context(), caller(ws, r), r.URL.Query().Get("id"), fileArg(r))
	if err != nil {
		status, msg := s.message(r, err)
		s.fail(w, r, ws, status, msg)
		return
	}
	defer st.Body.Close()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": st.Name}))
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size, 10))
	w.Header().Set("Digest", "sha-256="+st.SHA256)
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 1<<20)
	for {
		k, err := st.Body.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			s.log.Error("portal: download cut off", "err", err)
			return
		}
	}
}

func init() {
	funcs["state"] = stateLabel
	funcs["short"] = func(h string) string {
		if len(h) > 16 {
			return h[:16] + "…"
		}
		return h
	}
	funcs["inc"] = func(i int) int { return i + 1 }
}
