package portal

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"dsh/control"
)

// page is what every template gets.
type page struct {
	Title string
	// Nav names the current section for the menu: "files", "security", "shares" or "".
	Nav   string
	User  string
	CSRF  string
	Flash *flash
	// Status is the HTTP status of the answer (an error page says what went wrong).
	Status int
	Data   any
}

// pageNames are the templates, each rendered inside layout.html.
var pageNames = []string{"signin", "ice", "files", "security", "token", "shares", "error", "claim"}

var funcs = template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2 Jan 2006 15:04")
	},
	"size": humanSize,
	"kind": tokenKind,
}

func (s *Server) parseTemplates() error {
	s.pages = make(map[string]*template.Template, len(pageNames))
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return fmt.Errorf("portal: template %s: %w", n, err)
		}
		s.pages[n] = t
	}
	return nil
}

// render writes a page; a template failure is the portal's bug and is logged.
func (s *Server) render(w http.ResponseWriter, name string, p page) {
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		s.log.Error("portal: render page", "page", name, "err", err)
		http.Error(w, "the page could not be shown", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if p.Status != 0 {
		w.WriteHeader(p.Status)
	}
	_, _ = w.Write(buf.Bytes())
}

// base fills in what every page of a signed-in user shows.
func base(ws *websession, title, nav string) page {
	return page{Title: title, Nav: nav, User: ws.user, CSRF: ws.csrf, Flash: ws.takeFlash()}
}

// fail shows an error page with status.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ws *websession, status int, msg string) {
	p := page{Title: "Error", Status: status, Flash: &flash{Msg: msg}}
	if ws != nil {
		p.User, p.CSRF = ws.user, ws.csrf
	}
	s.render(w, "error", p)
}

// done answers a handled form: a message for the next page, and a redirect to it, so that
// reloading the page does not send the form again.
func (s *Server) done(w http.ResponseWriter, r *http.Request, ws *websession, to string, err error, okMsg string) {
	if err != nil {
		_, msg := s.message(r, err)
		ws.setFlash(false, msg)
	} else {
		ws.setFlash(true, okMsg)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.current(r); ok {
		http.Redirect(w, r, "/files", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// preToken returns the CSRF token of the forms shown before sign-in, setting its cookie
// when the browser has none yet.
func preToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(preCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	t := randomToken()
	setCookie(w, preCookie, t, 0)
	return t
}

// checkPre checks a pre-sign-in form's token against its cookie (double submit).
func checkPre(r *http.Request) bool {
	c, err := r.Cookie(preCookie)
	return err == nil && sameToken(r.PostFormValue("csrf"), c.Value)
}

type signinData struct {
	User string
	// ICE selects the emergency-code form.
	ICE bool
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.current(r); ok {
		http.Redirect(w, r, "/files", http.StatusSeeOther)
		return
	}
	s.render(w, "signin", page{Title: "Sign in", CSRF: preToken(w, r), Data: signinData{ICE: r.URL.Query().Get("with") == "ice"}})
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	user := strings.TrimSpace(r.PostFormValue("user"))
	data := signinData{User: user, ICE: r.PostFormValue("emergency") != "" || r.PostFormValue("method") == "ice"}
	again := func(status int, msg string) {
		s.render(w, "signin", page{Title: "Sign in", Status: status, CSRF: preToken(w, r), Flash: &flash{Msg: msg}, Data: data})
	}
	if !checkPre(r) {
		again(http.StatusForbidden, "This form has expired or did not come from this site. Try again.")
		return
	}
	sec := formSecrets(r, "password", "pin")
	defer sec.wipe()
	uid, ok := s.svc.UIDOf(user)
	if !ok {
		// The daemon refuses and audits it with the same message as a wrong password.
		uid = -1
	}
	c := control.Caller{UID: uid, GID: -1, Remote: clientOf(r)}
	var sv control.SessionView
	err := s.checkCredentials(r, func() (err error) {
		sv, err = s.svc.Login(r.Context(), c, user, sec["password"], sec["pin"],
			strings.TrimSpace(r.PostFormValue("code")), strings.TrimSpace(r.PostFormValue("emergency")))
		return err
	})
	if err != nil {
		status, msg := s.message(r, err)
		again(status, msg)
		return
	}
	if sv.Current == 0 {
		again(http.StatusInternalServerError, "The sign-in started no session; try again.")
		return
	}
	tok := s.sessions.start(sv.User, uid, sv.Current)
	setCookie(w, sessionCookie, tok, 0)
	http.Redirect(w, r, "/files", http.StatusSeeOther)
}

// signout ends the sign-in and the dsh session it started. It works for a sign-in that
// has timed out too (the page was left open): the dsh session it started may still be
// open, and the user asked for it to end.
func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	c, err := r.Cookie(sessionCookie)
	var ws *websession
	if err == nil {
		ws, _ = s.sessions.peek(c.Value)
	}
	if ws == nil {
		setCookie(w, sessionCookie, "", -1)
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	if !sameToken(r.PostFormValue("csrf"), ws.csrf) {
		s.fail(w, r, nil, http.StatusForbidden, "This form has expired or did not come from this site. Reload the page and try again.")
		return
	}
	s.sessions.endUser(ws.user) // this sign-in and any other of the user
	setCookie(w, sessionCookie, "", -1)
	// The portal's dsh sessions go first, so what they opened closes at once even while an
	// upload is being cut off. Logout on the portal channel ends only the sessions of
	// portal sign-ins: one started with dsh login is left alone.
	lerr := s.svc.Logout(r.Context(), caller(ws, r))
	s.uploads.abortUser(r.Context(), ws.uid)
	if lerr != nil && control.StatusFor(lerr) != http.StatusNotFound {
		_, msg := s.message(r, lerr)
		s.fail(w, r, nil, http.StatusInternalServerError, "Signed out of the portal, but the dsh session may still be open: "+msg)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

type iceData struct {
	User string
	// Code is the new emergency code, shown once.
	Code    string
	Expires time.Time
}

func (s *Server) icePage(w http.ResponseWriter, r *http.Request) {
	s.render(w, "ice", page{Title: "Emergency code (ICE)", CSRF: preToken(w, r), Data: iceData{}})
}

func (s *Server) ice(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	user := strings.TrimSpace(r.PostFormValue("user"))
	again := func(status int, msg string) {
		s.render(w, "ice", page{Title: "Emergency code (ICE)", Status: status, CSRF: preToken(w, r), Flash: &flash{Msg: msg}, Data: iceData{User: user}})
	}
	if !checkPre(r) {
		again(http.StatusForbidden, "This form has expired or did not come from this site. Try again.")
		return
	}
	sec := formSecrets(r, "password", "answer1", "answer2", "answer3")
	defer sec.wipe()
	uid, ok := s.svc.UIDOf(user)
	if !ok {
		uid = -1
	}
	var res control.ICEResponse
	err := s.checkCredentials(r, func() (err error) {
		res, err = s.svc.RequestICE(r.Context(), control.Caller{UID: uid, GID: -1, Remote: clientOf(r)}, user, sec["password"],
			[3][]byte{sec["answer1"], sec["answer2"], sec["answer3"]})
		return err
	})
	if err != nil {
		status, msg := s.message(r, err)
		again(status, msg)
		return
	}
	s.render(w, "ice", page{Title: "Emergency code (ICE)", CSRF: preToken(w, r), Data: iceData{User: user, Code: res.Code, Expires: res.Expires}})
}

type filesData struct {
	Arrivals []control.ArrivalView
	Error    string
}

func (s *Server) filesPage(w http.ResponseWriter, r *http.Request, ws *websession) {
	as, err := s.svc.ListArrivals(r.Context(), caller(ws, r))
	d := filesData{Arrivals: as}
	if err != nil {
		_, d.Error = s.message(r, err)
	}
	sort.Slice(d.Arrivals, func(i, j int) bool { return d.Arrivals[i].Arrived.After(d.Arrivals[j].Arrived) })
	p := base(ws, "File Transfer", "files")
	p.Data = d
	s.render(w, "files", p)
}

type securityData struct {
	Tokens []control.TokenView
	// Hardware are the hardware tokens among Tokens (for the resync form); NeedsPIN is set
	// when one of them waits for its PIN.
	Hardware  []control.TokenView
	NeedsPIN  bool
	Questions [3]string
	Error     string
}

func (s *Server) securityPage(w http.ResponseWriter, r *http.Request, ws *websession) {
	toks, err := s.svc.ListTokens(r.Context(), caller(ws, r))
	d := securityData{Tokens: toks}
	for _, t := range toks {
		if t.Hardware {
			d.Hardware = append(d.Hardware, t)
			d.NeedsPIN = d.NeedsPIN || !t.PINSet
		}
	}
	if err == nil {
		d.Questions, err = s.svc.Questions(r.Context(), caller(ws, r))
	}
	if err != nil {
		_, d.Error = s.message(r, err)
	}
	p := base(ws, "Security & Tokens", "security")
	p.Data = d
	s.render(w, "security", p)
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, ws *websession) {
	sec := formSecrets(r, "password", "pin", "new", "new2")
	defer sec.wipe()
	err := sec.confirmed("new", "new2", "new passwords")
	if err == nil {
		err = s.checkCredentials(r, func() error {
			return s.svc.ChangePassword(r.Context(), caller(ws, r), sec["password"], sec["pin"], strings.TrimSpace(r.PostFormValue("code")), sec["new"])
		})
	}
	s.done(w, r, ws, "/security", err, "Your password has been changed.")
}

func (s *Server) setQuestions(w http.ResponseWriter, r *http.Request, ws *websession) {
	sec := formSecrets(r, "password", "pin", "answer1", "answer2", "answer3")
	defer sec.wipe()
	var qs [3]control.Question
	for i := range qs {
		qs[i] = control.Question{Question: strings.TrimSpace(r.PostFormValue(fmt.Sprintf("question%d", i+1))), Answer: sec[fmt.Sprintf("answer%d", i+1)]}
	}
	err := s.checkCredentials(r, func() error {
		return s.svc.SetQuestions(r.Context(), caller(ws, r), sec["password"], sec["pin"], strings.TrimSpace(r.PostFormValue("code")), qs)
	})
	s.done(w, r, ws, "/security", err, "Your security questions have been changed.")
}

type tokenData struct {
	ID  string
	URL string
	// QR is the otpauth URL as a PNG data URL (an image, not a link: nothing is fetched).
	QR template.URL
	// Claimed is set when the token came from an e-mailed link (no sign-in behind it).
	Claimed bool
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, ws *websession) {
	sec := formSecrets(r, "pin", "pin2")
	defer sec.wipe()
	if err := sec.confirmed("pin", "pin2", "PINs"); err != nil {
		s.done(w, r, ws, "/security", err, "")
		return
	}
	var tc control.TokenCreated
	err := s.checkCredentials(r, func() (err error) {
		tc, err = s.svc.CreateToken(r.Context(), caller(ws, r), sec["pin"])
		return err
	})
	if err != nil {
		s.done(w, r, ws, "/security", err, "")
		return
	}
	p := base(ws, "New soft token", "security")
	p.Data = s.tokenPage(tc, false)
	s.render(w, "token", p)
}

// tokenPage is what the page that shows a new token once gets: its QR code as an image.
func (s *Server) tokenPage(tc control.TokenCreated, claimed bool) tokenData {
	png, err := qrcode.Encode(tc.URL, qrcode.Medium, 256)
	if err != nil {
		s.log.Error("portal: QR code", "err", err)
	}
	return tokenData{ID: tc.ID, URL: tc.URL, QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png)), Claimed: claimed}
}

func (s *Server) setPIN(w http.ResponseWriter, r *http.Request, ws *websession) {
	sec := formSecrets(r, "pin", "pin2")
	defer sec.wipe()
	id := r.PostFormValue("token")
	err := sec.confirmed("pin", "pin2", "PINs")
	if err == nil {
		err = s.checkCredentials(r, func() error { return s.svc.SetPIN(r.Context(), caller(ws, r), id, sec["pin"]) })
	}
	s.done(w, r, ws, "/security", err, fmt.Sprintf("Token %s has a new PIN.", id))
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, ws *websession) {
	id := r.PostFormValue("token")
	err := s.svc.RevokeToken(r.Context(), caller(ws, r), id)
	s.done(w, r, ws, "/security", err, fmt.Sprintf("Token %s has been revoked.", id))
}

type shareRow struct {
	control.ShareAccessView
	Members []control.MemberView
	Error   string
}

type projectRow struct {
	control.ProjectView
	Shares []shareRow
}

type sharesData struct {
	Projects []projectRow
	Error    string
}

func (s *Server) sharesPage(w http.ResponseWriter, r *http.Request, ws *websession) {
	p := base(ws, "Share Manager", "shares")
	var d sharesData
	projects, err := s.svc.ListProjects(r.Context(), caller(ws, r))
	var shares []control.ShareAccessView
	if err == nil {
		shares, err = s.svc.ListShares(r.Context(), caller(ws, r))
	}
	if err != nil {
		_, d.Error = s.message(r, err)
	}
	for _, pr := range projects {
		row := projectRow{ProjectView: pr}
		for _, sh := range shares {
			if sh.Project != pr.Name || !sh.Manager {
				continue
			}
			sr := shareRow{ShareAccessView: sh}
			m, err := s.svc.ShareMembers(r.Context(), caller(ws, r), sh.Share)
			if err != nil {
				_, sr.Error = s.message(r, err)
			}
			sr.Members = m.Members
			row.Shares = append(row.Shares, sr)
		}
		sort.Slice(row.Shares, func(i, j int) bool { return row.Shares[i].Share < row.Shares[j].Share })
		d.Projects = append(d.Projects, row)
	}
	p.Data = d
	s.render(w, "shares", p)
}

func (s *Server) createShare(w http.ResponseWriter, r *http.Request, ws *websession) {
	req := control.ShareCreateRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Project: r.PostFormValue("project")}
	_, err := s.svc.CreateShare(r.Context(), caller(ws, r), req)
	s.done(w, r, ws, "/shares", err, fmt.Sprintf("Share %s created in project %s.", req.Name, req.Project))
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request, ws *websession) {
	req := control.MemberRequest{Share: r.PostFormValue("share"), User: strings.TrimSpace(r.PostFormValue("user")), ReadOnly: r.PostFormValue("mode") == "ro"}
	err := s.svc.AddMember(r.Context(), caller(ws, r), req)
	mode := "read-write"
	if req.ReadOnly {
		mode = "read-only"
	}
	s.done(w, r, ws, "/shares", err, fmt.Sprintf("%s is now a %s member of %s.", req.User, mode, req.Share))
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request, ws *websession) {
	req := control.MemberRequest{Share: r.PostFormValue("share"), User: r.PostFormValue("user")}
	err := s.svc.RemoveMember(r.Context(), caller(ws, r), req)
	s.done(w, r, ws, "/shares", err, fmt.Sprintf("%s has been removed from %s; their access ended at once.", req.User, req.Share))
}

// secretFields are a form's secret values as byte slices the handler wipes when done.
// The form's own copies (Go strings) cannot be wiped; the ones passed on can.
type secretFields map[string][]byte

func formSecrets(r *http.Request, names ...string) secretFields {
	out := make(secretFields, len(names))
	for _, n := range names {
		out[n] = []byte(r.PostFormValue(n))
	}
	return out
}

// confirmed refuses a form whose field a and its confirmation b differ; what names them.
func (f secretFields) confirmed(a, b, what string) error {
	if !bytes.Equal(f[a], f[b]) {
		return control.WithKind(control.ErrInvalid, fmt.Errorf("the two %s differ", what))
	}
	return nil
}

func (f secretFields) wipe() {
	for _, v := range f {
		clear(v)
	}
}

// humanSize writes a byte count as people read it.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, exp := float64(n)/1024, 0
	// 1023.95 and up would print as "1024.0": move on to the next unit instead.
	for f >= 1023.95 && exp < 5 {
		f /= 1024
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[exp])
}
