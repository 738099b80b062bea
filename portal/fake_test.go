package portal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"dsh/control"
)

// fakeClock is the portal's clock in tests; handlers run on server goroutines, so it locks.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Credentials the fake accepts.
const (
	fakePassword = "correct horse battery staple"
	fakePIN      = "2468"
	fakeCode     = "123456"
	fakeICECode  = "87654321"
)

// fakeCodes are the token codes the fake takes, each once per user.
var fakeCodes = []string{fakeCode, "234567", "345678", "456789"}

// fakeAnswers are the answers to the users' security questions.
var fakeAnswers = [3]string{"rex", "paris", "blue"}

// errWrongCredentials is what the daemon answers to any wrong factor or unknown user.
var errWrongCredentials = control.WithKind(control.ErrUnauthorized, errors.New("wrong user ID, password, PIN or code"))

// call is one call the portal made to the service.
type call struct {
	Method string
	Caller control.Caller
	Args   []any
}

type fakeUser struct {
	name string
	uid  int
}

// fakeSession is one dsh session as the daemon keeps it: from a portal sign-in, or from
// dsh login (portal false).
type fakeSession struct {
	id     uint64
	uid    int
	portal bool
	active bool
}

// fakeService implements Service over in-memory state, recording every call.
type fakeService struct {
	clock *fakeClock

	mu       sync.Mutex
	users    map[string]fakeUser
	sessions map[uint64]*fakeSession // by session ID
	used     map[string]bool         // user + "/" + code: codes spent
	ice      map[string]string       // user: an issued emergency code
	calls    []call
	// secrets are the byte slices the portal handed over, to check that it wipes them.
	secrets  [][]byte
	uploads  []*fakeUpload
	arrivals map[int][]control.ArrivalView
	files    map[string][]byte // name: content of finished uploads
	nlogin   int

	// Canned answers, set by tests.
	tokens    []control.TokenView
	questions [3]string
	projects  []control.ProjectView
	shares    []control.ShareAccessView
	members   map[string][]control.MemberView
	// errs makes a method fail with the given error.
	errs map[string]error
	// loginGate, when set, holds every Login until it is closed; each Login that waits
	// says so on loginEntered first.
	loginGate    chan struct{}
	loginEntered chan struct{}
}

var _ Service = (*fakeService)(nil)

func newFakeService(clock *fakeClock) *fakeService {
	return &fakeService{
		clock: clock,
		users: map[string]fakeUser{
			"alice": {name: "alice", uid: 1001},
			"bob":   {name: "bob", uid: 1002},
		},
		sessions: map[uint64]*fakeSession{},
		used:     map[string]bool{},
		ice:      map[string]string{},
		arrivals: map[int][]control.ArrivalView{},
		files:    map[string][]byte{},
		members:  map[string][]control.MemberView{},
		errs:     map[string]error{},
	}
}

// record notes a call; the caller holds f.mu.
func (f *fakeService) record(method string, c control.Caller, args ...any) {
	f.calls = append(f.calls, call{Method: method, Caller: c, Args: args})
}

// keep records a secret slice handed over by the portal and returns a copy of it.
func (f *fakeService) keep(b []byte) string {
	f.secrets = append(f.secrets, b)
	return string(b)
}

// callsOf returns the recorded calls of method.
func (f *fakeService) callsOf(method string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeService) count(method string) int { return len(f.callsOf(method)) }

// total is the number of calls of any method.
func (f *fakeService) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// callsSince returns the method names called after the first n calls.
func (f *fakeService) callsSince(n int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls[n:] {
		out = append(out, c.Method)
	}
	return out
}

func (f *fakeService) setErr(method string, err error) {
	f.mu.Lock()
	f.errs[method] = err
	f.mu.Unlock()
}

// session returns a copy of uid's newest dsh session.
func (f *fakeService) session(uid int) (fakeSession, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last *fakeSession
	for _, s := range f.sessions {
		if s.uid == uid && (last == nil || s.id > last.id) {
			last = s
		}
	}
	if last == nil {
		return fakeSession{}, false
	}
	return *last, true
}

// setSession puts a dsh session as the daemon would see it (ended: active false).
func (f *fakeService) setSession(s fakeSession) {
	f.mu.Lock()
	f.sessions[s.id] = &s
	f.mu.Unlock()
}

// cliLogin starts a dsh login session of uid, as the command line would.
func (f *fakeService) cliLogin(uid int) fakeSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nlogin++
	s := &fakeSession{id: uint64(f.nlogin), uid: uid, active: true}
	f.sessions[s.id] = s
	return *s
}

func (f *fakeService) finished(name string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[name]
	return b, ok
}

func (f *fakeService) allUploads() []*fakeUpload {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeUpload(nil), f.uploads...)
}

func (f *fakeService) userOf(uid int) (fakeUser, bool) {
	for _, u := range f.users {
		if u.uid == uid {
			return u, true
		}
	}
	return fakeUser{}, false
}

// UIDOf implements Service.
func (f *fakeService) UIDOf(user string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("UIDOf", control.Caller{}, user)
	u, ok := f.users[user]
	return u.uid, ok
}

// Login implements control.Tokens: password, PIN and a code that works once, or password
// and the emergency code.
func (f *fakeService) Login(ctx context.Context, c control.Caller, user string, password, pin []byte, code, emergencyCode string) (control.SessionView, error) {
	if f.loginGate != nil {
		f.loginEntered <- struct{}{}
		<-f.loginGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pw, pn := f.keep(password), f.keep(pin)
	f.record("Login", c, user, pw, pn, code, emergencyCode)
	u, ok := f.users[user]
	if !ok || u.uid != c.UID || pw != fakePassword {
		return control.SessionView{}, errWrongCredentials
	}
	if emergencyCode != "" {
		if f.ice[user] == "" || f.ice[user] != emergencyCode {
			return control.SessionView{}, errWrongCredentials
		}
		delete(f.ice, user)
	} else {
		if pn != fakePIN || !slices.Contains(fakeCodes, code) || f.used[user+"/"+code] {
			return control.SessionView{}, errWrongCredentials
		}
		f.used[user+"/"+code] = true
	}
	// Every login starts a new session beside the uid's others.
	f.nlogin++
	s := &fakeSession{id: uint64(f.nlogin), uid: u.uid, portal: c.Portal(), active: true}
	f.sessions[s.id] = s
	return control.SessionView{Active: true, UID: u.uid, User: user, Expires: f.clock.Now().Add(time.Hour), Current: s.id}, nil
}

// Logout implements control.Tokens.
func (f *fakeService) Logout(ctx context.Context, c control.Caller) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("Logout", c)
	if err := f.errs["Logout"]; err != nil {
		return err
	}
	// On the portal channel only portal sessions end, as in the daemon.
	ended := false
	for id, s := range f.sessions {
		if s.uid == c.UID && s.active && (s.portal || !c.Portal()) {
			delete(f.sessions, id)
			ended = true
		}
	}
	if !ended {
		return control.WithKind(control.ErrNotFound, errors.New("no session"))
	}
	return nil
}

// TouchSession implements Service.
func (f *fakeService) TouchSession(uid int, id uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("TouchSession", control.Caller{UID: uid}, id)
	s, ok := f.sessions[id]
	return ok && s.active && s.uid == uid
}

// ListTokens implements control.Tokens.
func (f *fakeService) ListTokens(ctx context.Context, c control.Caller) ([]control.TokenView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListTokens", c)
	if err := f.errs["ListTokens"]; err != nil {
		return nil, err
	}
	return append([]control.TokenView(nil), f.tokens...), nil
}

// CreateToken implements control.Tokens.
func (f *fakeService) CreateToken(ctx context.Context, c control.Caller, pin []byte) (control.TokenCreated, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateToken", c, f.keep(pin))
	if err := f.errs["CreateToken"]; err != nil {
		return control.TokenCreated{}, err
	}
	u, _ := f.userOf(c.UID)
	return control.TokenCreated{ID: "tok-new", URL: "otpauth://totp/dsh:" + u.name + "?secret=JBSWY3DPEHPK3PXP&issuer=dsh"}, nil
}

// RevokeToken implements control.Tokens.
func (f *fakeService) RevokeToken(ctx context.Context, c control.Caller, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RevokeToken", c, id)
	return f.errs["RevokeToken"]
}

// SetPIN implements control.Tokens.
func (f *fakeService) SetPIN(ctx context.Context, c control.Caller, id string, pin []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("SetPIN", c, id, f.keep(pin))
	return f.errs["SetPIN"]
}

// RequestICE implements control.Tokens: the password and the three answers give a code.
func (f *fakeService) RequestICE(ctx context.Context, c control.Caller, user string, password []byte, answers [3][]byte) (control.ICEResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	as := [3]string{f.keep(answers[0]), f.keep(answers[1]), f.keep(answers[2])}
	pw := f.keep(password)
	f.record("RequestICE", c, user, pw, as)
	u, ok := f.users[user]
	if !ok || u.uid != c.UID || pw != fakePassword || as != fakeAnswers {
		return control.ICEResponse{}, control.WithKind(control.ErrUnauthorized, errors.New("wrong user ID, password or answers"))
	}
	f.ice[user] = fakeICECode
	return control.ICEResponse{Code: fakeICECode, Expires: f.clock.Now().Add(24 * time.Hour)}, nil
}

// ChangePassword implements control.Tokens.
func (f *fakeService) ChangePassword(ctx context.Context, c control.Caller, current, pin []byte, code string, newPassword []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ChangePassword", c, f.keep(current), f.keep(pin), code, f.keep(newPassword))
	return f.errs["ChangePassword"]
}

// ListProjects implements control.Accounts: the projects the caller manages.
func (f *fakeService) ListProjects(ctx context.Context, c control.Caller) ([]control.ProjectView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListProjects", c)
	if err := f.errs["ListProjects"]; err != nil {
		return nil, err
	}
	u, _ := f.userOf(c.UID)
	var out []control.ProjectView
	for _, p := range f.projects {
		if p.IAO == u.name {
			out = append(out, p)
		}
	}
	return out, nil
}

// CreateShare implements control.Accounts.
func (f *fakeService) CreateShare(ctx context.Context, c control.Caller, req control.ShareCreateRequest) (control.ShareView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateShare", c, req)
	if err := f.errs["CreateShare"]; err != nil {
		return control.ShareView{}, err
	}
	return control.ShareView{Name: req.Name, Project: req.Project, Created: f.clock.Now()}, nil
}

// AddMember implements control.Accounts.
func (f *fakeService) AddMember(ctx context.Context, c control.Caller, req control.MemberRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("AddMember", c, req)
	return f.errs["AddMember"]
}

// RemoveMember implements control.Accounts.
func (f *fakeService) RemoveMember(ctx context.Context, c control.Caller, req control.MemberRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveMember", c, req)
	return f.errs["RemoveMember"]
}

// ListShares implements control.Accounts.
func (f *fakeService) ListShares(ctx context.Context, c control.Caller) ([]control.ShareAccessView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListShares", c)
	return append([]control.ShareAccessView(nil), f.shares...), nil
}

// ShareMembers implements control.Accounts.
func (f *fakeService) ShareMembers(ctx context.Context, c control.Caller, share string) (control.MembersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ShareMembers", c, share)
	return control.MembersResponse{Share: share, Members: append([]control.MemberView(nil), f.members[share]...)}, nil
}

// ListArrivals implements control.Arrivals.
func (f *fakeService) ListArrivals(ctx context.Context, c control.Caller) ([]control.ArrivalView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListArrivals", c)
	if err := f.errs["ListArrivals"]; err != nil {
		return nil, err
	}
	return append([]control.ArrivalView(nil), f.arrivals[c.UID]...), nil
}

// SetQuestions implements Service.
func (f *fakeService) SetQuestions(ctx context.Context, c control.Caller, password, pin []byte, code string, qs [3]control.Question) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var texts [3]string
	for i, q := range qs {
		texts[i] = q.Question
		f.keep(q.Answer)
	}
	f.record("SetQuestions", c, f.keep(password), f.keep(pin), code, texts)
	return f.errs["SetQuestions"]
}

// Questions implements Service.
func (f *fakeService) Questions(ctx context.Context, c control.Caller) ([3]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("Questions", c)
	return f.questions, nil
}

// BeginUpload implements Service: an upload staged in memory.
func (f *fakeService) BeginUpload(ctx context.Context, c control.Caller, name string, size int64) (Upload, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("BeginUpload", c, name, size)
	if err := f.errs["BeginUpload"]; err != nil {
		return nil, err
	}
	u := &fakeUpload{f: f, uid: c.UID, name: name, size: size}
	f.uploads = append(f.uploads, u)
	return u, nil
}

// fakeUpload is an upload staged in a buffer.
type fakeUpload struct {
	f    *fakeService
	uid  int
	name string
	size int64

	mu       sync.Mutex
	buf      bytes.Buffer
	finished bool
	aborted  bool
}

func (u *fakeUpload) Offset() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return int64(u.buf.Len())
}

func (u *fakeUpload) Size() int64  { return u.size }
func (u *fakeUpload) Name() string { return u.name }

func (u *fakeUpload) Write(ctx context.Context, off int64, r io.Reader) (int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.finished || u.aborted {
		return 0, control.WithKind(control.ErrNotFound, errors.New("upload has ended"))
	}
	if off != int64(u.buf.Len()) {
		return 0, control.WithKind(control.ErrConflict, fmt.Errorf("offset %d, have %d", off, u.buf.Len()))
	}
	n, err := io.Copy(&u.buf, io.LimitReader(r, u.size-off))
	return n, err
}

func (u *fakeUpload) Finish(ctx context.Context) (control.ArrivalView, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if int64(u.buf.Len()) != u.size {
		return control.ArrivalView{}, control.WithKind(control.ErrConflict, errors.New("upload is not complete"))
	}
	u.finished = true
	content := bytes.Clone(u.buf.Bytes())
	u.f.mu.Lock()
	defer u.f.mu.Unlock()
	u.f.record("Upload.Finish", control.Caller{UID: u.uid}, u.name, string(content))
	if err := u.f.errs["Upload.Finish"]; err != nil {
		return control.ArrivalView{}, err
	}
	now := u.f.clock.Now()
	av := control.ArrivalView{Name: u.name, Size: u.size, Arrived: now, Expires: now.Add(30 * 24 * time.Hour)}
	u.f.files[u.name] = content
	u.f.arrivals[u.uid] = append(u.f.arrivals[u.uid], av)
	return av, nil
}

func (u *fakeUpload) Abort(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.aborted = true
	u.f.mu.Lock()
	defer u.f.mu.Unlock()
	u.f.record("Upload.Abort", control.Caller{UID: u.uid}, u.name)
	return nil
}

func (u *fakeUpload) state() (content string, finished, aborted bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.buf.String(), u.finished, u.aborted
}

// fakeLinkCode is the one-time link code the fake accepts, once.
const fakeLinkCode = "ABCDEFGHIJKLMNOPQRST"

// ResyncToken implements control.Hardware.
func (f *fakeService) ResyncToken(ctx context.Context, c control.Caller, req control.ResyncRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ResyncToken", c, req.ID, req.Code1, req.Code2)
	return f.errs["ResyncToken"]
}

// ClaimTokenLink implements control.Hardware: the link code and the password give a
// token, once.
func (f *fakeService) ClaimTokenLink(ctx context.Context, c control.Caller, user, code string, password, pin []byte) (control.TokenCreated, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pw := f.keep(password)
	f.record("ClaimTokenLink", c, user, code, pw, f.keep(pin))
	u, ok := f.users[user]
	if !ok || u.uid != c.UID || code != fakeLinkCode || pw != fakePassword || f.used[user+"/link"] {
		return control.TokenCreated{}, errWrongCredentials
	}
	f.used[user+"/link"] = true
	return control.TokenCreated{ID: "tok-mail", URL: "otpauth://totp/dsh:" + user + "?secret=JBSWY3DPEHPK3PXP&issuer=dsh"}, nil
}
