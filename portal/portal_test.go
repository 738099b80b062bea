package portal

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dsh/control"
	"dsh/kv"
)

// syncBuffer collects the portal's log lines; handlers log from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a portal over a fake service, served over TLS.
type env struct {
	t     *testing.T
	clock *fakeClock
	fake  *fakeService
	srv   *Server
	ts    *httptest.Server
	logs  *syncBuffer
	cert  tls.Certificate
}

// newEnv starts a portal; unsealed gives it a certificate of its own, as the daemon does
// once the store is unsealed.
func newEnv(t *testing.T, unsealed bool) *env {
	t.Helper()
	e := &env{t: t, clock: newFakeClock(), logs: &syncBuffer{}}
	e.fake = newFakeService(e.clock)
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(e.fake, Options{Log: log, Now: e.clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	if unsealed {
		certPEM, keyPEM, err := NewSelfSigned([]string{"localhost", "127.0.0.1"}, time.Now())
		if err != nil {
			t.Fatalf("NewSelfSigned: %v", err)
		}
		e.cert, err = tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatalf("X509KeyPair: %v", err)
		}
		srv.SetCertificate(&e.cert)
		srv.SetSealed(false)
	}
	e.ts = httptest.NewUnstartedServer(srv)
	e.ts.TLS = srv.TLSConfig()
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)
	return e
}

// browser is one web browser: its own cookie jar, and redirects are not followed.
type browser struct {
	t   *testing.T
	e   *env
	c   *http.Client
	jar *cookiejar.Jar
}

func (e *env) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: e.t, e: e, jar: jar, c: &http.Client{
		Jar:           jar,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

// result is an answer with its body read.
type result struct {
	status int
	header http.Header
	body   string
	resp   *http.Response
}

func (r result) location() string { return r.header.Get("Location") }

// cookie returns the Set-Cookie of name in the answer, if any.
func (r result) cookie(name string) *http.Cookie {
	for _, c := range r.resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// url makes a path absolute on the test server; an absolute URL is kept.
func (b *browser) url(path string) string {
	if strings.HasPrefix(path, "https://") {
		return path
	}
	return b.e.ts.URL + path
}

func (b *browser) do(method, path string, body io.Reader, hdr http.Header) result {
	b.t.Helper()
	req, err := http.NewRequest(method, b.url(path), body)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(data), resp: resp}
}

func (b *browser) get(path string) result {
	b.t.Helper()
	return b.do(http.MethodGet, path, nil, nil)
}

// post sends a form; hdr adds headers (Origin, Sec-Fetch-Site).
func (b *browser) post(path string, form url.Values, hdr http.Header) result {
	b.t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	for k, vs := range hdr {
		h[k] = vs
	}
	return b.do(http.MethodPost, path, strings.NewReader(form.Encode()), h)
}

// sessionCookie returns the browser's sign-in cookie value, or "".
func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.e.ts.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// csrfOf pulls the CSRF token out of a page.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil || m[1] == "" {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

var flashRE = regexp.MustCompile(`id="flash"[^>]*>([^<]*)</p>`)

// flashOf returns the page's one-shot message, or "".
func flashOf(body string) string {
	m := flashRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// signinForm is the sign-in form filled in with the fake's good credentials.
func signinForm(csrf, user, code string) url.Values {
	return url.Values{"csrf": {csrf}, "user": {user}, "password": {fakePassword}, "pin": {fakePIN}, "code": {code}}
}

// signIn signs the browser in as user with a token code and returns the sign-in's CSRF
// token, taken from the files page.
func (b *browser) signIn(user, code string) string {
	b.t.Helper()
	r := b.get("/signin")
	if r.status != http.StatusOK {
		b.t.Fatalf("GET /signin: status %d", r.status)
	}
	r = b.post("/signin", signinForm(csrfOf(b.t, r.body), user, code), nil)
	if r.status != http.StatusSeeOther || r.location() != "/files" {
		b.t.Fatalf("sign-in of %s: status %d, Location %q, body:\n%s", user, r.status, r.location(), r.body)
	}
	r = b.get("/files")
	if r.status != http.StatusOK {
		b.t.Fatalf("GET /files after sign-in: status %d", r.status)
	}
	return csrfOf(b.t, r.body)
}

// wantStatus fails unless r has status.
func wantStatus(t *testing.T, what string, r result, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, r.status, status, r.body)
	}
}

// wantRedirect fails unless r is a 303 to to.
func wantRedirect(t *testing.T, what string, r result, to string) {
	t.Helper()
	if r.status != http.StatusSeeOther || r.location() != to {
		t.Fatalf("%s: status %d Location %q, want 303 to %s; body:\n%s", what, r.status, r.location(), to, r.body)
	}
}

// wantOnly fails if the service got any call since n other than the allowed methods
// (checking the sign-in itself calls Session).
func wantOnly(t *testing.T, f *fakeService, n int, allowed ...string) {
	t.Helper()
	for _, m := range f.callsSince(n) {
		if !slices.Contains(allowed, m) {
			t.Fatalf("service got %s, want only %v (calls since: %v)", m, allowed, f.callsSince(n))
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	anon := e.browser()
	answers := map[string]result{
		"GET /signin":             anon.get("/signin"),
		"GET / (redirect)":        anon.get("/"),
		"GET /files (redirect)":   anon.get("/files"),
		"GET /nowhere (404)":      anon.get("/nowhere"),
		"GET /static/style.css":   anon.get("/static/style.css"),
		"POST /signin (403)":      anon.post("/signin", url.Values{"user": {"alice"}}, nil),
		"HEAD /files/tus/x (401)": anon.do(http.MethodHead, "/files/tus/x", nil, http.Header{"Tus-Resumable": {"1.0.0"}}),
		"GET /files":              b.get("/files"),
		"GET /security":           b.get("/security"),
		"POST cross-site (403)": b.post("/security/tokens/revoke", url.Values{"csrf": {csrf}, "token": {"t"}},
			http.Header{"Origin": {"https://evil.example"}}),
		"POST /files/tus/ no CSRF (403)": b.do(http.MethodPost, "/files/tus/", nil,
			http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {"1"}}),
	}
	for what, r := range answers {
		h := r.header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", what, csp)
		}
		for k, want := range map[string]string{
			"X-Frame-Options":           "DENY",
			"X-Content-Type-Options":    "nosniff",
			"Cache-Control":             "no-store",
			"Strict-Transport-Security": "max-age=31536000",
			"Referrer-Policy":           "no-referrer",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s is %q, want %q", what, k, got, want)
			}
		}
	}
	if r := answers["GET /static/style.css"]; r.status != http.StatusOK || r.body == "" {
		t.Errorf("GET /static/style.css: status %d, %d bytes", r.status, len(r.body))
	}
}

func TestSealed(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	r := b.get("/signin")
	wantStatus(t, "GET /signin while sealed", r, http.StatusServiceUnavailable)
	if !strings.Contains(r.body, "dsh is sealed") {
		t.Errorf("the sealed page does not say so:\n%s", r.body)
	}
	if strings.Contains(r.body, `id="signin-token"`) {
		t.Error("the sign-in form is shown while sealed")
	}
	r = b.post("/signin", url.Values{"user": {"alice"}, "password": {fakePassword}, "pin": {fakePIN}, "code": {fakeCode}}, nil)
	wantStatus(t, "POST /signin while sealed", r, http.StatusServiceUnavailable)
	r = b.post("/ice", url.Values{"user": {"alice"}, "password": {fakePassword}}, nil)
	wantStatus(t, "POST /ice while sealed", r, http.StatusServiceUnavailable)
	r = b.get("/files")
	wantStatus(t, "GET /files while sealed", r, http.StatusServiceUnavailable)
	r = b.do(http.MethodPost, "/files/tus/", nil, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {"1"}})
	wantStatus(t, "tus POST while sealed", r, http.StatusServiceUnavailable)
	for _, m := range []string{"Login", "UIDOf", "RequestICE", "BeginUpload"} {
		if n := e.fake.count(m); n != 0 {
			t.Errorf("%s called %d times while sealed", m, n)
		}
	}

	// Unsealing opens the sign-in.
	e.srv.SetSealed(false)
	r = b.get("/signin")
	wantStatus(t, "GET /signin once unsealed", r, http.StatusOK)
	if !strings.Contains(r.body, `id="signin-token"`) {
		t.Errorf("no sign-in form once unsealed:\n%s", r.body)
	}
	// And sealing closes it again.
	e.srv.SetSealed(true)
	wantStatus(t, "GET /signin sealed again", b.get("/signin"), http.StatusServiceUnavailable)
}

// TestCertificate checks which certificate a client asking for the portal by name gets:
// the fallback while sealed, the store's once set.
func TestCertificate(t *testing.T) {
	e := newEnv(t, false)
	leaf := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", e.ts.Listener.Addr().String(), &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	fallback := leaf()
	certPEM, keyPEM, err := NewSelfSigned([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(fallback, cert.Certificate[0]) {
		t.Fatal("the fallback is the new certificate")
	}
	e.srv.SetCertificate(&cert)
	if got := leaf(); !bytes.Equal(got, cert.Certificate[0]) {
		t.Error("the portal does not serve the certificate it was given")
	}
	e.srv.SetCertificate(nil)
	if got := leaf(); !bytes.Equal(got, fallback) {
		t.Error("SetCertificate(nil) does not go back to the fallback")
	}
	if v := e.srv.TLSConfig().MinVersion; v < tls.VersionTLS12 {
		t.Errorf("MinVersion %x", v)
	}
}

func TestSignedOutRedirects(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	for _, p := range []string{"/files", "/security", "/shares", "/"} {
		wantRedirect(t, "GET "+p+" signed out", b.get(p), "/signin")
	}
	// A cookie the portal never issued is no sign-in.
	u, _ := url.Parse(e.ts.URL)
	b.jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: randomToken(), Path: "/", Secure: true}})
	wantRedirect(t, "GET /files with a made-up cookie", b.get("/files"), "/signin")
	// A form posted without a sign-in is refused, and reaches nothing.
	n := e.fake.total()
	r := b.post("/security/tokens/revoke", url.Values{"csrf": {"x"}, "token": {"tok-1"}}, nil)
	wantStatus(t, "POST without sign-in", r, http.StatusUnauthorized)
	wantOnly(t, e.fake, n, "TouchSession")

	b.signIn("alice", fakeCode)
	wantRedirect(t, "GET / signed in", b.get("/"), "/files")
	wantRedirect(t, "GET /signin signed in", b.get("/signin"), "/files")
}

func TestSigninCSRF(t *testing.T) {
	e := newEnv(t, true)
	good := func(csrf string) url.Values { return signinForm(csrf, "alice", fakeCode) }

	// No pre-sign-in cookie and no field.
	b := e.browser()
	r := b.post("/signin", good(""), nil)
	wantStatus(t, "sign-in without CSRF cookie or field", r, http.StatusForbidden)
	if !strings.Contains(r.body, "This form has expired") {
		t.Errorf("no explanation on the page:\n%s", r.body)
	}

	// A field but no cookie: a token from another browser's page.
	other := e.browser()
	tok := csrfOf(t, other.get("/signin").body)
	wantStatus(t, "sign-in with a field but no cookie", b.post("/signin", good(tok), nil), http.StatusForbidden)

	// The cookie but no field.
	tok = csrfOf(t, b.get("/signin").body)
	wantStatus(t, "sign-in without the field", b.post("/signin", good(""), nil), http.StatusForbidden)

	// The cookie and a wrong field (another browser's token).
	otherTok := csrfOf(t, other.get("/signin").body)
	if otherTok == tok {
		t.Fatal("two browsers got the same pre-sign-in token")
	}
	wantStatus(t, "sign-in with a wrong field", b.post("/signin", good(otherTok), nil), http.StatusForbidden)

	if n := e.fake.total(); n != 0 {
		t.Fatalf("refused sign-ins reached the service: %v", e.fake.callsSince(0))
	}
	// The code was not spent by the refused attempts: the right token signs in with it.
	wantRedirect(t, "sign-in with the right token", b.post("/signin", good(tok), nil), "/files")
	if n := e.fake.count("Login"); n != 1 {
		t.Errorf("Login called %d times, want 1", n)
	}
}

func TestSignin(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	r := b.get("/signin")
	wantStatus(t, "GET /signin", r, http.StatusOK)
	pre := r.cookie(preCookie)
	if pre == nil || !pre.Secure || !pre.HttpOnly || pre.SameSite != http.SameSiteStrictMode || pre.Path != "/" {
		t.Fatalf("pre-sign-in cookie %+v", pre)
	}
	r = b.post("/signin", signinForm(csrfOf(t, r.body), " alice ", fakeCode), nil)
	wantRedirect(t, "sign-in", r, "/files")
	c := r.cookie(sessionCookie)
	if c == nil {
		t.Fatalf("no %s cookie set; Set-Cookie %q", sessionCookie, r.header.Values("Set-Cookie"))
	}
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("session cookie %+v: want Secure, HttpOnly, SameSite=Strict, Path=/, no Domain", c)
	}
	if len(c.Value) < 43 {
		t.Errorf("session cookie value %q is short", c.Value)
	}
	calls := e.fake.callsOf("Login")
	if len(calls) != 1 {
		t.Fatalf("Login called %d times", len(calls))
	}
	lc := calls[0]
	if lc.Caller.UID != 1001 || lc.Args[0] != "alice" || lc.Args[1] != fakePassword || lc.Args[2] != fakePIN || lc.Args[3] != fakeCode || lc.Args[4] != "" {
		t.Errorf("Login got caller %+v args %q", lc.Caller, lc.Args)
	}
	// The secrets are nowhere but in the form body: not in a URL, a header or the log.
	for _, sec := range []string{fakePassword, fakePIN, fakeCode} {
		if strings.Contains(r.location(), sec) || strings.Contains(r.resp.Request.URL.String(), sec) {
			t.Errorf("secret %q in a URL", sec)
		}
		for k, vs := range r.header {
			for _, v := range vs {
				if strings.Contains(v, sec) {
					t.Errorf("secret %q in header %s", sec, k)
				}
			}
		}
		if strings.Contains(e.logs.String(), sec) {
			t.Errorf("secret %q in the log", sec)
		}
	}
	// The portal wiped the byte slices it handed to the daemon.
	e.fake.mu.Lock()
	for i, s := range e.fake.secrets {
		if strings.Trim(string(s), "\x00") != "" {
			t.Errorf("secret %d was not wiped: %q", i, s)
		}
	}
	e.fake.mu.Unlock()

	r = b.get("/files")
	wantStatus(t, "GET /files signed in", r, http.StatusOK)
	if !strings.Contains(r.body, "Signed in as <strong>alice</strong>") {
		t.Errorf("the page does not say who is signed in:\n%s", r.body)
	}
	if !strings.Contains(r.body, `data-csrf="`+csrfOf(t, r.body)+`"`) {
		t.Error("the upload input does not carry the sign-in's CSRF token")
	}
	if sv := e.fake.callsOf("TouchSession"); len(sv) == 0 || sv[len(sv)-1].Caller.UID != 1001 {
		t.Errorf("the sign-in was not checked against alice's dsh session: %+v", sv)
	}
}

func TestSigninRefused(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.signIn("alice", fakeCode)
	b.post("/signout", url.Values{"csrf": {csrfOf(t, b.get("/files").body)}}, nil)

	const msg = "Wrong user ID, password, PIN or code"
	try := func(what string, form url.Values) result {
		t.Helper()
		form.Set("csrf", csrfOf(t, b.get("/signin").body))
		r := b.post("/signin", form, nil)
		wantStatus(t, what, r, http.StatusUnauthorized)
		if flashOf(r.body) != msg {
			t.Errorf("%s: message %q, want %q", what, flashOf(r.body), msg)
		}
		if r.cookie(sessionCookie) != nil {
			t.Errorf("%s: a session cookie was set", what)
		}
		if strings.Contains(r.body, fakePassword) || strings.Contains(r.body, "value=\""+fakePIN) {
			t.Errorf("%s: the page repeats a secret", what)
		}
		if !strings.Contains(r.body, `id="signin-token"`) {
			t.Errorf("%s: the form is not shown again", what)
		}
		return r
	}

	// A replayed code.
	r := try("replayed code", signinForm("", "alice", fakeCode))
	if !strings.Contains(r.body, `value="alice"`) {
		t.Error("the form does not keep the user ID")
	}
	// A wrong password.
	f := signinForm("", "alice", "345678")
	f.Set("password", "hunter2")
	try("wrong password", f)
	// An unknown user: the same answer, and the daemon still gets to refuse (and audit) it.
	n := e.fake.count("Login")
	try("unknown user", signinForm("", "mallory", "456789"))
	calls := e.fake.callsOf("Login")
	if len(calls) != n+1 || calls[n].Caller.UID != -1 || calls[n].Args[0] != "mallory" {
		t.Errorf("the unknown user's sign-in reached Login as %+v", calls[len(calls)-1])
	}
	if u := e.fake.callsOf("UIDOf"); u[len(u)-1].Args[0] != "mallory" {
		t.Errorf("UIDOf got %v", u[len(u)-1].Args)
	}
	wantRedirect(t, "files after refusals", b.get("/files"), "/signin")
}

func TestICE(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	r := b.get("/ice")
	wantStatus(t, "GET /ice", r, http.StatusOK)
	tok := csrfOf(t, r.body)
	form := url.Values{"csrf": {tok}, "user": {"alice"}, "password": {fakePassword},
		"answer1": {fakeAnswers[0]}, "answer2": {fakeAnswers[1]}, "answer3": {fakeAnswers[2]}}

	noCSRF := url.Values{}
	for k, v := range form {
		noCSRF[k] = v
	}
	noCSRF.Del("csrf")
	wantStatus(t, "POST /ice without CSRF", b.post("/ice", noCSRF, nil), http.StatusForbidden)
	if n := e.fake.count("RequestICE"); n != 0 {
		t.Fatalf("RequestICE called %d times without CSRF", n)
	}

	wrong := url.Values{}
	for k, v := range form {
		wrong[k] = v
	}
	wrong.Set("answer3", "green")
	r = b.post("/ice", wrong, nil)
	wantStatus(t, "POST /ice with a wrong answer", r, http.StatusUnauthorized)
	if strings.Contains(r.body, fakeICECode) || strings.Contains(r.body, `id="ice-code"`) {
		t.Error("a code is shown after a wrong answer")
	}

	r = b.post("/ice", form, nil)
	wantStatus(t, "POST /ice", r, http.StatusOK)
	if n := strings.Count(r.body, fakeICECode); n != 1 {
		t.Errorf("the code appears %d times on the page, want once:\n%s", n, r.body)
	}
	if !strings.Contains(r.body, `<p class="code" id="ice-code">`+fakeICECode+`</p>`) {
		t.Errorf("the code is not shown:\n%s", r.body)
	}
	calls := e.fake.callsOf("RequestICE")
	last := calls[len(calls)-1]
	if last.Caller.UID != 1001 || last.Args[0] != "alice" || last.Args[1] != fakePassword || last.Args[2] != fakeAnswers {
		t.Errorf("RequestICE got %+v %q", last.Caller, last.Args)
	}
	if strings.Contains(r.body, fakeAnswers[0]) || strings.Contains(r.body, fakePassword) {
		t.Error("the ICE page repeats a secret")
	}
	// It is shown once: the page again has no code.
	if r := b.get("/ice"); strings.Contains(r.body, fakeICECode) {
		t.Error("the code is shown again")
	}

	// Sign in with it.
	r = b.get("/signin?with=ice")
	if !strings.Contains(r.body, `id="signin-ice"`) {
		t.Fatalf("no emergency sign-in form:\n%s", r.body)
	}
	r = b.post("/signin", url.Values{"csrf": {csrfOf(t, r.body)}, "method": {"ice"}, "user": {"alice"},
		"password": {fakePassword}, "emergency": {fakeICECode}}, nil)
	wantRedirect(t, "sign-in with the emergency code", r, "/files")
	lc := e.fake.callsOf("Login")
	if a := lc[len(lc)-1].Args; a[3] != "" || a[4] != fakeICECode {
		t.Errorf("Login got code %q emergency %q", a[3], a[4])
	}
	wantStatus(t, "GET /files", b.get("/files"), http.StatusOK)
}

// signedInForms are the forms of a signed-in user, with valid fields but no csrf.
var signedInForms = map[string]url.Values{
	"/security/tokens/revoke": {"token": {"tok-1"}},
	"/security/tokens/pin":    {"token": {"tok-1"}, "pin": {"1357"}, "pin2": {"1357"}},
	"/security/tokens/create": {"pin": {"1357"}, "pin2": {"1357"}},
	"/security/tokens/resync": {"token": {"OATH0001"}, "code1": {"12345678"}, "code2": {"23456789"}},
	"/security/password": {"password": {fakePassword}, "pin": {fakePIN}, "code": {fakeCode},
		"new": {"a new long password"}, "new2": {"a new long password"}},
	"/security/questions": {"password": {fakePassword}, "pin": {fakePIN}, "code": {fakeCode},
		"question1": {"q1"}, "answer1": {"a1"}, "question2": {"q2"}, "answer2": {"a2"}, "question3": {"q3"}, "answer3": {"a3"}},
	"/shares/create": {"name": {"new"}, "project": {"genomics"}},
	"/shares/add":    {"share": {"gen-raw"}, "user": {"erin"}, "mode": {"ro"}},
	"/shares/remove": {"share": {"gen-raw"}, "user": {"dave"}},
	"/signout":       {},
}

func withCSRF(form url.Values, csrf string) url.Values {
	out := url.Values{"csrf": {csrf}}
	for k, v := range form {
		out[k] = v
	}
	return out
}

func TestFormsNeedCSRF(t *testing.T) {
	e := newEnv(t, true)
	alice := e.browser()
	aliceCSRF := alice.signIn("alice", fakeCode)
	bob := e.browser()
	bobCSRF := bob.signIn("bob", fakeCode)
	if aliceCSRF == bobCSRF {
		t.Fatal("two sign-ins have the same CSRF token")
	}
	for path, form := range signedInForms {
		for what, f := range map[string]url.Values{
			"no csrf":               form,
			"empty csrf":            withCSRF(form, ""),
			"another session's":     withCSRF(form, bobCSRF),
			"a pre-sign-in token":   withCSRF(form, csrfOf(t, e.browser().get("/signin").body)),
			"a truncated token":     withCSRF(form, aliceCSRF[:len(aliceCSRF)-1]),
			"csrf in the URL query": form,
		} {
			p := path
			if what == "csrf in the URL query" {
				p += "?csrf=" + url.QueryEscape(aliceCSRF)
			}
			n := e.fake.total()
			r := alice.post(p, f, nil)
			wantStatus(t, "POST "+path+" with "+what, r, http.StatusForbidden)
			if !strings.Contains(r.body, "This form has expired") {
				t.Errorf("POST %s with %s: no explanation", path, what)
			}
			wantOnly(t, e.fake, n, "TouchSession")
		}
		// Bob's token is no good for alice, and alice's none for bob.
		n := e.fake.total()
		wantStatus(t, "bob posts "+path+" with alice's token", bob.post(path, withCSRF(form, aliceCSRF), nil), http.StatusForbidden)
		wantOnly(t, e.fake, n, "TouchSession")
	}
	// Still signed in after all that.
	wantStatus(t, "GET /files", alice.get("/files"), http.StatusOK)
	wantStatus(t, "GET /files", bob.get("/files"), http.StatusOK)
}

func TestCrossOrigin(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	form := withCSRF(signedInForms["/security/tokens/revoke"], csrf)
	for what, h := range map[string]http.Header{
		"Origin of another site":        {"Origin": {"https://evil.example"}},
		"Origin over http":              {"Origin": {"http://" + strings.TrimPrefix(e.ts.URL, "https://")}},
		"Origin null from another site": {"Origin": {"null"}, "Sec-Fetch-Site": {"cross-site"}},
		"Sec-Fetch-Site cross-site":     {"Sec-Fetch-Site": {"cross-site"}},
		"Sec-Fetch-Site same-site":      {"Sec-Fetch-Site": {"same-site"}, "Origin": {e.ts.URL}},
		"same Origin but cross-site SF": {"Origin": {e.ts.URL}, "Sec-Fetch-Site": {"cross-site"}},
	} {
		n := e.fake.total()
		r := b.post("/security/tokens/revoke", form, h)
		wantStatus(t, what, r, http.StatusForbidden)
		if !strings.Contains(r.body, "came from another site") {
			t.Errorf("%s: no explanation:\n%s", what, r.body)
		}
		if got := e.fake.callsSince(n); len(got) != 0 {
			t.Errorf("%s: reached the service: %v", what, got)
		}
	}
	// A tus request from another site is refused as well.
	r := b.do(http.MethodPost, "/files/tus/", nil, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {"3"},
		"X-CSRF-Token": {csrf}, "Origin": {"https://evil.example"}})
	wantStatus(t, "cross-site tus POST", r, http.StatusForbidden)
	if n := e.fake.count("BeginUpload"); n != 0 {
		t.Errorf("BeginUpload called %d times", n)
	}
	// The portal's own origin, as a browser sends it, goes through; so does "null", which
	// a browser sends for a form of a no-referrer page, and a request with neither header.
	for what, h := range map[string]http.Header{
		"same origin":          {"Origin": {e.ts.URL}, "Sec-Fetch-Site": {"same-origin"}},
		"same origin, no SFS":  {"Origin": {e.ts.URL}},
		"Origin null, same SF": {"Origin": {"null"}, "Sec-Fetch-Site": {"same-origin"}},
		"Origin null":          {"Origin": {"null"}},
		"no Origin":            {},
	} {
		n := e.fake.count("RevokeToken")
		wantRedirect(t, what, b.post("/security/tokens/revoke", form, h), "/security")
		if got := e.fake.count("RevokeToken"); got != n+1 {
			t.Errorf("%s: RevokeToken not called", what)
		}
	}
}

func TestSecurityForms(t *testing.T) {
	e := newEnv(t, true)
	e.fake.tokens = []control.TokenView{{ID: "tok-1", Kind: "totp", Created: e.clock.Now()}, {ID: "tok-2", Kind: "totp", Created: e.clock.Now()}}
	e.fake.questions = [3]string{"First pet?", "City of birth?", "Favourite colour?"}
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)

	r := b.get("/security")
	wantStatus(t, "GET /security", r, http.StatusOK)
	for _, s := range []string{"<td>tok-1</td>", "<td>tok-2</td>", "<li>First pet?</li>", "<li>Favourite colour?</li>", `id="token-revoke"`} {
		if !strings.Contains(r.body, s) {
			t.Errorf("the security page lacks %q", s)
		}
	}
	if f := flashOf(r.body); f != "" {
		t.Errorf("a message before any form: %q", f)
	}

	// Revoke: reaches the service as alice, then a message on the next page, once.
	r = b.post("/security/tokens/revoke", withCSRF(url.Values{"token": {"tok-2"}}, csrf), nil)
	wantRedirect(t, "revoke", r, "/security")
	calls := e.fake.callsOf("RevokeToken")
	if len(calls) != 1 || calls[0].Caller.UID != 1001 || calls[0].Args[0] != "tok-2" {
		t.Fatalf("RevokeToken calls %+v", calls)
	}
	r = b.get("/security")
	if f := flashOf(r.body); f != "Token tok-2 has been revoked." {
		t.Errorf("message after revoke %q", f)
	}
	if !strings.Contains(r.body, `class="flash ok"`) {
		t.Error("the message is not marked as a success")
	}
	if f := flashOf(b.get("/security").body); f != "" {
		t.Errorf("the message is shown twice: %q", f)
	}

	// A refusal from the daemon is shown as its own message, without the kind.
	e.fake.setErr("SetPIN", control.WithKind(control.ErrNotFound, errors.New("no token tok-9")))
	r = b.post("/security/tokens/pin", withCSRF(url.Values{"token": {"tok-9"}, "pin": {"1357"}, "pin2": {"1357"}}, csrf), nil)
	wantRedirect(t, "set PIN", r, "/security")
	r = b.get("/security")
	if f := flashOf(r.body); f != "No token tok-9" || !strings.Contains(r.body, `class="flash error"`) {
		t.Errorf("message after a refused PIN change %q", f)
	}
	if c := e.fake.callsOf("SetPIN"); len(c) != 1 || c[0].Args[0] != "tok-9" || c[0].Args[1] != "1357" {
		t.Errorf("SetPIN calls %+v", c)
	}

	// An internal error is not shown, only logged.
	e.fake.setErr("ChangePassword", errors.New("badger: open /var/lib/dsh/kv/000123.vlog: input/output error"))
	f := withCSRF(signedInForms["/security/password"], csrf)
	wantRedirect(t, "change password", b.post("/security/password", f, nil), "/security")
	r = b.get("/security")
	if fl := flashOf(r.body); !strings.HasPrefix(fl, "Something went wrong on the server") || strings.Contains(r.body, "vlog") {
		t.Errorf("message after an internal error %q", fl)
	}
	if !strings.Contains(e.logs.String(), "000123.vlog") {
		t.Error("the internal error was not logged")
	}
	if c := e.fake.callsOf("ChangePassword"); len(c) != 1 || c[0].Args[0] != fakePassword || c[0].Args[2] != fakeCode || c[0].Args[3] != "a new long password" {
		t.Errorf("ChangePassword calls %+v", c)
	}
	if strings.Contains(e.logs.String(), fakePassword) || strings.Contains(e.logs.String(), "a new long password") {
		t.Error("a password is in the log")
	}

	// Mismatched new passwords never reach the daemon.
	f.Set("new2", "something else entirely")
	wantRedirect(t, "mismatched passwords", b.post("/security/password", f, nil), "/security")
	if fl := flashOf(b.get("/security").body); fl != "The two new passwords differ" {
		t.Errorf("message after mismatched passwords %q", fl)
	}
	if n := e.fake.count("ChangePassword"); n != 1 {
		t.Errorf("ChangePassword called %d times, want 1", n)
	}

	// Security questions.
	wantRedirect(t, "questions", b.post("/security/questions", withCSRF(signedInForms["/security/questions"], csrf), nil), "/security")
	if c := e.fake.callsOf("SetQuestions"); len(c) != 1 || c[0].Args[3] != [3]string{"q1", "q2", "q3"} || c[0].Args[0] != fakePassword {
		t.Errorf("SetQuestions calls %+v", c)
	}
	if fl := flashOf(b.get("/security").body); fl != "Your security questions have been changed." {
		t.Errorf("message after questions %q", fl)
	}
}

func TestCreateToken(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)

	r := b.post("/security/tokens/create", withCSRF(url.Values{"pin": {"1357"}, "pin2": {"7531"}}, csrf), nil)
	wantRedirect(t, "mismatched PINs", r, "/security")
	if n := e.fake.count("CreateToken"); n != 0 {
		t.Errorf("CreateToken called with mismatched PINs")
	}
	if f := flashOf(b.get("/security").body); f != "The two PINs differ" {
		t.Errorf("message %q", f)
	}

	r = b.post("/security/tokens/create", withCSRF(url.Values{"pin": {"1357"}, "pin2": {"1357"}}, csrf), nil)
	wantStatus(t, "create token", r, http.StatusOK)
	if c := e.fake.callsOf("CreateToken"); len(c) != 1 || c[0].Caller.UID != 1001 || c[0].Args[0] != "1357" {
		t.Errorf("CreateToken calls %+v", c)
	}
	for _, s := range []string{"Token tok-new is ready", `src="data:image/png;base64,iVBORw0KGgo`, "secret=JBSWY3DPEHPK3PXP"} {
		if !strings.Contains(r.body, s) {
			t.Errorf("the new token page lacks %q:\n%s", s, r.body)
		}
	}
	if strings.Contains(e.logs.String(), "JBSWY3DPEHPK3PXP") {
		t.Error("the token secret is in the log")
	}
}

func TestSessionBinding(t *testing.T) {
	e := newEnv(t, true)

	t.Run("beside dsh login", func(t *testing.T) {
		b := e.browser()
		b.signIn("alice", "234567")
		s, ok := e.fake.session(1001)
		if !ok || !s.portal {
			t.Fatalf("no portal session after sign-in: %+v", s)
		}
		// A dsh login on the command line starts its own session; the sign-in goes on.
		e.fake.cliLogin(1001)
		wantStatus(t, "GET /files after a dsh login", b.get("/files"), http.StatusOK)
		if c := e.fake.callsOf("TouchSession"); c[len(c)-1].Args[0] != s.id {
			t.Fatalf("the sign-in checked session %v, want its own %d", c[len(c)-1].Args[0], s.id)
		}
		// Ended, the sign-in is gone for good, even if the session came back.
		s.active = false
		e.fake.setSession(s)
		wantRedirect(t, "GET /files after the session ended", b.get("/files"), "/signin")
		s.active = true
		e.fake.setSession(s)
		wantRedirect(t, "GET /files with the old session back", b.get("/files"), "/signin")
	})

	t.Run("inactive", func(t *testing.T) {
		b := e.browser()
		b.signIn("alice", "345678")
		s, _ := e.fake.session(1001)
		s.active = false
		e.fake.setSession(s)
		wantRedirect(t, "GET /files after the session ended", b.get("/files"), "/signin")
		n := e.fake.total()
		r := b.post("/security/tokens/revoke", url.Values{"csrf": {"whatever"}, "token": {"tok-1"}}, nil)
		wantStatus(t, "POST after the session ended", r, http.StatusUnauthorized)
		wantOnly(t, e.fake, n, "TouchSession")
	})

	t.Run("signed in elsewhere", func(t *testing.T) {
		first := e.browser()
		first.signIn("alice", "456789")
		second := e.browser()
		second.signIn("bob", fakeCode) // another user's sign-in changes nothing for alice
		wantStatus(t, "alice's first browser after bob signed in", first.get("/files"), http.StatusOK)
		e.fake.mu.Lock()
		delete(e.fake.used, "alice/"+fakeCode)
		e.fake.mu.Unlock()
		third := e.browser()
		third.signIn("alice", fakeCode)
		// Each browser's sign-in has its own dsh session: a second one ends nothing.
		wantStatus(t, "alice's first browser after she signed in again", first.get("/files"), http.StatusOK)
		wantStatus(t, "alice's new browser", third.get("/files"), http.StatusOK)
		wantStatus(t, "bob", second.get("/files"), http.StatusOK)
	})
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.signIn("alice", fakeCode)
	e.clock.Advance(IdleTimeout - time.Second)
	wantStatus(t, "GET /files just before the idle timeout", b.get("/files"), http.StatusOK)
	e.clock.Advance(IdleTimeout - time.Second) // the last request counts from then
	wantStatus(t, "GET /files after another idle period", b.get("/files"), http.StatusOK)
	e.clock.Advance(IdleTimeout + time.Second)
	wantRedirect(t, "GET /files after the idle timeout", b.get("/files"), "/signin")
	// The sign-in is forgotten, not just refused this once.
	e.clock.Advance(-IdleTimeout)
	wantRedirect(t, "GET /files with the clock back", b.get("/files"), "/signin")
}

func TestMaxLifetime(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.signIn("alice", fakeCode)
	for elapsed := 10 * time.Minute; elapsed <= MaxLifetime; elapsed += 10 * time.Minute {
		e.clock.Advance(10 * time.Minute)
		wantStatus(t, fmt.Sprintf("GET /files after %v", elapsed), b.get("/files"), http.StatusOK)
	}
	e.clock.Advance(time.Minute)
	wantRedirect(t, "GET /files past the lifetime", b.get("/files"), "/signin")
}

func TestSweepSessions(t *testing.T) {
	e := newEnv(t, true)
	e.browser().signIn("alice", fakeCode)
	e.browser().signIn("bob", fakeCode)
	count := func() int {
		e.srv.sessions.mu.Lock()
		defer e.srv.sessions.mu.Unlock()
		return len(e.srv.sessions.m)
	}
	e.srv.sessions.sweep()
	if n := count(); n != 2 {
		t.Fatalf("%d sign-ins after a sweep, want 2", n)
	}
	// Timed out, they are kept (dead) for their sign-out until the dsh session is over.
	e.clock.Advance(IdleTimeout + time.Second)
	e.srv.sessions.sweep()
	if n := count(); n != 2 {
		t.Errorf("%d sign-ins after the idle timeout and a sweep, want 2 kept for sign-out", n)
	}
	e.clock.Advance(9 * time.Hour)
	e.srv.sessions.sweep()
	if n := count(); n != 0 {
		t.Errorf("%d sign-ins after their dsh sessions ended and a sweep, want 0", n)
	}
}

// A sign-in that timed out can still be signed out of, and that ends the dsh session it
// started (the page was left open; the drives must not stay open for hours).
func TestSignoutAfterTimeout(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.signIn("alice", fakeCode)
	csrf := csrfOf(t, b.get("/files").body)
	e.clock.Advance(IdleTimeout + time.Second)
	wantRedirect(t, "GET /files after the idle timeout", b.get("/files"), "/signin")
	r := b.post("/signout", url.Values{"csrf": {"wrong"}}, nil)
	wantStatus(t, "sign-out with a wrong token", r, http.StatusForbidden)
	if n := e.fake.count("Logout"); n != 0 {
		t.Fatalf("Logout called %d times for a forged sign-out", n)
	}
	r = b.post("/signout", url.Values{"csrf": {csrf}}, nil)
	wantRedirect(t, "sign-out after the timeout", r, "/signin")
	if n := e.fake.count("Logout"); n != 1 {
		t.Fatalf("Logout called %d times, want 1", n)
	}
}

func TestSignout(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	old := b.sessionCookie()
	if old == "" {
		t.Fatal("no session cookie in the jar")
	}
	dsh, _ := e.fake.session(1001)
	// An upload in progress goes with the sign-out.
	loc := tusCreate(t, b, csrf, "draft.txt", 10)

	wantStatus(t, "sign-out without CSRF", b.post("/signout", url.Values{}, nil), http.StatusForbidden)
	if n := e.fake.count("Logout"); n != 0 {
		t.Fatalf("Logout called without CSRF")
	}

	r := b.post("/signout", url.Values{"csrf": {csrf}}, nil)
	wantRedirect(t, "sign-out", r, "/signin")
	if c := e.fake.callsOf("Logout"); len(c) != 1 || c[0].Caller.UID != 1001 {
		t.Errorf("Logout calls %+v", c)
	}
	if c := r.cookie(sessionCookie); c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("the session cookie is not deleted: %+v", c)
	}
	if b.sessionCookie() != "" {
		t.Error("the jar still has the session cookie")
	}
	if ups := e.fake.allUploads(); len(ups) != 1 {
		t.Fatalf("%d uploads", len(ups))
	} else if _, _, aborted := ups[0].state(); !aborted {
		t.Error("the upload in progress was not aborted at sign-out")
	}

	// The old cookie no longer works, even with the dsh session back as it was.
	e.fake.setSession(dsh)
	u, _ := url.Parse(e.ts.URL)
	b.jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: old, Path: "/", Secure: true}})
	wantRedirect(t, "GET /files with the old cookie", b.get("/files"), "/signin")
	r = b.do(http.MethodHead, loc, nil, http.Header{"Tus-Resumable": {"1.0.0"}})
	wantStatus(t, "HEAD of the upload with the old cookie", r, http.StatusUnauthorized)

	// A Logout error other than "no session" is reported.
	b2 := e.browser()
	e.fake.mu.Lock()
	delete(e.fake.used, "alice/"+fakeCode)
	e.fake.mu.Unlock()
	csrf = b2.signIn("alice", fakeCode)
	e.fake.setErr("Logout", control.WithKind(control.ErrUnavailable, errors.New("the store is sealed")))
	r = b2.post("/signout", url.Values{"csrf": {csrf}}, nil)
	wantStatus(t, "sign-out with a failing Logout", r, http.StatusInternalServerError)
	if !strings.Contains(r.body, "dsh session may still be open: The store is sealed") {
		t.Errorf("the page does not say the dsh session may be open:\n%s", r.body)
	}
	wantRedirect(t, "GET /files after that sign-out", b2.get("/files"), "/signin")
}

// tusHeaders are the headers of a tus request with the sign-in's CSRF token.
func tusHeaders(csrf string, kv ...string) http.Header {
	h := http.Header{"Tus-Resumable": {"1.0.0"}}
	if csrf != "" {
		h.Set("X-CSRF-Token", csrf)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func tusMeta(name string) string {
	return "filename " + base64.StdEncoding.EncodeToString([]byte(name))
}

// tusCreate starts an upload and returns its URL.
func tusCreate(t *testing.T, b *browser, csrf, name string, size int) string {
	t.Helper()
	r := b.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Length", fmt.Sprint(size), "Upload-Metadata", tusMeta(name)))
	wantStatus(t, "tus POST", r, http.StatusCreated)
	loc := r.location()
	if !strings.HasPrefix(loc, b.e.ts.URL+tusBase) || len(loc) <= len(b.e.ts.URL+tusBase) {
		t.Fatalf("tus Location %q", loc)
	}
	return loc
}

func tusPatch(b *browser, loc, csrf string, off int, data string) result {
	b.t.Helper()
	return b.do(http.MethodPatch, loc, strings.NewReader(data), tusHeaders(csrf,
		"Content-Type", "application/offset+octet-stream", "Upload-Offset", fmt.Sprint(off)))
}

func TestTus(t *testing.T) {
	e := newEnv(t, true)
	alice := e.browser()
	csrf := alice.signIn("alice", fakeCode)
	const content = "hello, dsh world"

	// Creating needs the CSRF token.
	r := alice.do(http.MethodPost, "/files/tus/", nil, tusHeaders("", "Upload-Length", fmt.Sprint(len(content)), "Upload-Metadata", tusMeta("report.csv")))
	wantStatus(t, "tus POST without X-CSRF-Token", r, http.StatusForbidden)
	r = alice.do(http.MethodPost, "/files/tus/", nil, tusHeaders("nope", "Upload-Length", "3"))
	wantStatus(t, "tus POST with a wrong X-CSRF-Token", r, http.StatusForbidden)
	if n := e.fake.count("BeginUpload"); n != 0 {
		t.Fatalf("BeginUpload called %d times without the token", n)
	}

	loc := tusCreate(t, alice, csrf, "report.csv", len(content))
	bu := e.fake.callsOf("BeginUpload")
	if len(bu) != 1 || bu[0].Caller.UID != 1001 || bu[0].Args[0] != "report.csv" || bu[0].Args[1] != int64(len(content)) {
		t.Fatalf("BeginUpload calls %+v", bu)
	}
	up := e.fake.allUploads()[0]

	// PATCH needs the token too.
	wantStatus(t, "PATCH without X-CSRF-Token", tusPatch(alice, loc, "", 0, "hello"), http.StatusForbidden)

	r = tusPatch(alice, loc, csrf, 0, content[:7])
	wantStatus(t, "first PATCH", r, http.StatusNoContent)
	if got := r.header.Get("Upload-Offset"); got != "7" {
		t.Errorf("Upload-Offset after the first PATCH %q, want 7", got)
	}
	r = alice.do(http.MethodHead, loc, nil, tusHeaders(""))
	wantStatus(t, "HEAD", r, http.StatusOK)
	if r.header.Get("Upload-Offset") != "7" || r.header.Get("Upload-Length") != fmt.Sprint(len(content)) {
		t.Errorf("HEAD: Upload-Offset %q Upload-Length %q", r.header.Get("Upload-Offset"), r.header.Get("Upload-Length"))
	}
	// A PATCH at the wrong offset is refused and changes nothing.
	wantStatus(t, "PATCH at a wrong offset", tusPatch(alice, loc, csrf, 3, "zzz"), http.StatusConflict)

	// Another user cannot see or touch alice's upload: it does not exist for them.
	bob := e.browser()
	bobCSRF := bob.signIn("bob", fakeCode)
	wantStatus(t, "bob's HEAD of alice's upload", bob.do(http.MethodHead, loc, nil, tusHeaders("")), http.StatusNotFound)
	wantStatus(t, "bob's PATCH of alice's upload", tusPatch(bob, loc, bobCSRF, 7, "EVIL!!!!!"), http.StatusNotFound)
	wantStatus(t, "bob's DELETE of alice's upload", bob.do(http.MethodDelete, loc, nil, tusHeaders(bobCSRF)), http.StatusNotFound)
	wantStatus(t, "alice's PATCH with bob's token", tusPatch(alice, loc, bobCSRF, 7, "EVIL!!!!!"), http.StatusForbidden)
	if got, _, aborted := up.state(); got != content[:7] || aborted {
		t.Fatalf("after the refused requests the upload has %q (aborted %v)", got, aborted)
	}

	// Without a sign-in: 401.
	anon := e.browser()
	wantStatus(t, "HEAD without a cookie", anon.do(http.MethodHead, loc, nil, tusHeaders("")), http.StatusUnauthorized)
	wantStatus(t, "PATCH without a cookie", tusPatch(anon, loc, csrf, 7, content[7:]), http.StatusUnauthorized)
	wantStatus(t, "POST without a cookie", anon.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Length", "3")), http.StatusUnauthorized)

	if n := e.fake.count("Upload.Finish"); n != 0 {
		t.Fatalf("Finish called before the last byte")
	}
	r = tusPatch(alice, loc, csrf, 7, content[7:])
	wantStatus(t, "last PATCH", r, http.StatusNoContent)
	if got := r.header.Get("Upload-Offset"); got != fmt.Sprint(len(content)) {
		t.Errorf("Upload-Offset after the last PATCH %q", got)
	}
	fin := e.fake.callsOf("Upload.Finish")
	if len(fin) != 1 || fin[0].Caller.UID != 1001 || fin[0].Args[0] != "report.csv" || fin[0].Args[1] != content {
		t.Fatalf("Finish calls %+v", fin)
	}
	if got, ok := e.fake.finished("report.csv"); !ok || string(got) != content {
		t.Errorf("the finished file has %q", got)
	}
	// A finished upload is gone from the tus endpoint.
	wantStatus(t, "HEAD after finishing", alice.do(http.MethodHead, loc, nil, tusHeaders("")), http.StatusNotFound)
	// And it is listed on the files page.
	r = alice.get("/files")
	if !strings.Contains(r.body, "<td>report.csv</td><td>16 B</td>") {
		t.Errorf("the files page does not list the upload:\n%s", r.body)
	}
	if strings.Contains(bob.get("/files").body, "report.csv") {
		t.Error("bob sees alice's arrival")
	}
}

func TestTusRefusals(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)

	// An upload without a length is refused before it reaches the daemon. (The portal's
	// own ERR_SIZE would answer 400; tusd refuses first, with 501, since the store has no
	// length deferrer. Either way it is no upload.)
	r := b.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Defer-Length", "1", "Upload-Metadata", tusMeta("x")))
	if r.status != http.StatusBadRequest && r.status != http.StatusNotImplemented {
		t.Errorf("tus POST with Upload-Defer-Length: status %d, want 400 (or tusd's 501)", r.status)
	}
	r = b.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Metadata", tusMeta("x")))
	wantStatus(t, "tus POST with no length at all", r, http.StatusBadRequest)
	r = b.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Length", "-5"))
	wantStatus(t, "tus POST with a negative length", r, http.StatusBadRequest)
	if n := e.fake.count("BeginUpload"); n != 0 {
		t.Errorf("BeginUpload called %d times for refused creations", n)
	}

	// The daemon's refusal comes back with its status and message.
	e.fake.setErr("BeginUpload", control.WithKind(control.ErrConflict, errors.New("report.csv already exists in your Arrivals")))
	r = b.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Length", "3", "Upload-Metadata", tusMeta("report.csv")))
	wantStatus(t, "tus POST the daemon refuses", r, http.StatusConflict)
	if !strings.Contains(r.body, "already exists") {
		t.Errorf("the refusal's message is not passed on: %q", r.body)
	}
	e.fake.setErr("BeginUpload", nil)

	// Giving up: DELETE needs the token, then aborts the staged file.
	loc := tusCreate(t, b, csrf, "gone.bin", 4)
	wantStatus(t, "DELETE without the token", b.do(http.MethodDelete, loc, nil, tusHeaders("")), http.StatusForbidden)
	wantStatus(t, "DELETE", b.do(http.MethodDelete, loc, nil, tusHeaders(csrf)), http.StatusNoContent)
	if c := e.fake.callsOf("Upload.Abort"); len(c) != 1 || c[0].Args[0] != "gone.bin" {
		t.Errorf("Abort calls %+v", c)
	}
	wantStatus(t, "HEAD after DELETE", b.do(http.MethodHead, loc, nil, tusHeaders("")), http.StatusNotFound)

	// No downloads.
	loc = tusCreate(t, b, csrf, "secret.bin", 4)
	wantStatus(t, "PATCH", tusPatch(b, loc, csrf, 0, "abc"), http.StatusNoContent)
	if r := b.do(http.MethodGet, loc, nil, tusHeaders("")); r.status < 400 || strings.Contains(r.body, "abc") {
		t.Errorf("GET of an upload: status %d body %q", r.status, r.body)
	}

	// At most maxUploadsPerUser unfinished uploads (one is open already).
	for i := 1; i < maxUploadsPerUser; i++ {
		tusCreate(t, b, csrf, fmt.Sprintf("f%d", i), 1)
	}
	r = b.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Length", "1", "Upload-Metadata", tusMeta("one-too-many")))
	wantStatus(t, "one upload too many", r, http.StatusTooManyRequests)

	// A failed publication aborts the staged file and tells the client.
	e.fake.setErr("Upload.Finish", control.WithKind(control.ErrConflict, errors.New("secret.bin already exists")))
	r = tusPatch(b, loc, csrf, 3, "d")
	wantStatus(t, "last PATCH when Finish fails", r, http.StatusConflict)
	ups := e.fake.allUploads()
	for _, u := range ups {
		if u.Name() == "secret.bin" {
			if _, _, aborted := u.state(); !aborted {
				t.Error("the upload whose Finish failed was not aborted")
			}
		}
	}
}

// TestTusInternalErrorHidden checks that an internal error of the daemon reaches the
// browser as a generic message, as it does on the pages.
func TestTusInternalErrorHidden(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	e.fake.setErr("BeginUpload", errors.New("open /var/lib/dsh/staging/1001/abc: no space left on device"))
	r := b.do(http.MethodPost, "/files/tus/", nil, tusHeaders(csrf, "Upload-Length", "3", "Upload-Metadata", tusMeta("x")))
	wantStatus(t, "tus POST with an internal error", r, http.StatusInternalServerError)
	if strings.Contains(r.body, "/var/lib/dsh") {
		t.Errorf("the internal error reaches the browser: %q", r.body)
	}
}

func TestSweepUploads(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	tusCreate(t, b, csrf, "abandoned.bin", 10)
	ctx := context.Background()
	e.srv.uploads.sweep(ctx)
	if n := e.fake.count("Upload.Abort"); n != 0 {
		t.Fatalf("a fresh upload was swept")
	}
	e.clock.Advance(uploadIdle + time.Minute)
	e.srv.uploads.sweep(ctx)
	if c := e.fake.callsOf("Upload.Abort"); len(c) != 1 || c[0].Args[0] != "abandoned.bin" {
		t.Errorf("Abort calls after uploadIdle %+v", c)
	}
}

// TestSweepUploadsAfterPatch is TestSweepUploads for an upload that received bytes.
func TestSweepUploadsAfterPatch(t *testing.T) {
	e := newEnv(t, true)
	e.clock.Advance(-20 * 365 * 24 * time.Hour) // a clock well away from the wall clock
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	loc := tusCreate(t, b, csrf, "abandoned.bin", 10)
	wantStatus(t, "PATCH", tusPatch(b, loc, csrf, 0, "abc"), http.StatusNoContent)
	e.clock.Advance(uploadIdle + time.Minute)
	e.srv.uploads.sweep(context.Background())
	if n := e.fake.count("Upload.Abort"); n != 1 {
		t.Errorf("Abort called %d times after uploadIdle, want 1", n)
	}
}

func TestShares(t *testing.T) {
	e := newEnv(t, true)
	e.fake.projects = []control.ProjectView{
		{Name: "genomics", IAO: "alice", IAAs: []string{"carol"}},
		{Name: "imaging", IAO: "zed"},
	}
	e.fake.shares = []control.ShareAccessView{
		{Share: "gen-raw", Project: "genomics", Mode: "rw", Manager: true},
		{Share: "gen-alpha", Project: "genomics", Manager: true},
		{Share: "gen-public", Project: "genomics", Mode: "ro", Manager: false},
		{Share: "img-raw", Project: "imaging", Mode: "rw"},
	}
	e.fake.members["gen-raw"] = []control.MemberView{
		{User: "alice", Mode: "rw", Status: "active"},
		{User: "dave", Mode: "ro", Status: "disabled"},
	}
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)

	r := b.get("/shares")
	wantStatus(t, "GET /shares", r, http.StatusOK)
	for _, s := range []string{
		"Project genomics", "IAO: alice", "IAAs: carol",
		`id="share-gen-raw"`, `id="share-gen-alpha"`,
		"<td>dave</td><td>read-only</td><td>disabled</td>",
		"<td>alice</td><td>read-write</td><td>active</td>",
		`aria-label="Remove dave from gen-raw"`,
		`<input type="hidden" name="project" value="genomics">`,
	} {
		if !strings.Contains(r.body, s) {
			t.Errorf("the shares page lacks %q", s)
		}
	}
	for _, s := range []string{"imaging", "gen-public", "img-raw", `id="no-projects"`} {
		if strings.Contains(r.body, s) {
			t.Errorf("the shares page shows %q", s)
		}
	}
	if strings.Index(r.body, "share-gen-alpha") > strings.Index(r.body, "share-gen-raw") {
		t.Error("the shares are not sorted by name")
	}
	if got := csrfOf(t, r.body); got != csrf {
		t.Errorf("the share forms carry %q, not the sign-in's token", got)
	}
	if c := e.fake.callsOf("ShareMembers"); len(c) != 2 {
		t.Errorf("ShareMembers calls %+v, want one per managed share", c)
	}

	r = b.post("/shares/add", withCSRF(url.Values{"share": {"gen-raw"}, "user": {" erin "}, "mode": {"ro"}}, csrf), nil)
	wantRedirect(t, "add member", r, "/shares")
	if c := e.fake.callsOf("AddMember"); len(c) != 1 || c[0].Caller.UID != 1001 ||
		c[0].Args[0] != (control.MemberRequest{Share: "gen-raw", User: "erin", ReadOnly: true}) {
		t.Errorf("AddMember calls %+v", c)
	}
	if f := flashOf(b.get("/shares").body); f != "erin is now a read-only member of gen-raw." {
		t.Errorf("message after add %q", f)
	}
	b.post("/shares/add", withCSRF(url.Values{"share": {"gen-raw"}, "user": {"frank"}, "mode": {"rw"}}, csrf), nil)
	if c := e.fake.callsOf("AddMember"); len(c) != 2 || c[1].Args[0] != (control.MemberRequest{Share: "gen-raw", User: "frank"}) {
		t.Errorf("AddMember calls %+v", c)
	}

	r = b.post("/shares/remove", withCSRF(url.Values{"share": {"gen-raw"}, "user": {"dave"}}, csrf), nil)
	wantRedirect(t, "remove member", r, "/shares")
	if c := e.fake.callsOf("RemoveMember"); len(c) != 1 || c[0].Caller.UID != 1001 ||
		c[0].Args[0] != (control.MemberRequest{Share: "gen-raw", User: "dave"}) {
		t.Errorf("RemoveMember calls %+v", c)
	}
	if f := flashOf(b.get("/shares").body); !strings.HasPrefix(f, "dave has been removed from gen-raw") {
		t.Errorf("message after remove %q", f)
	}

	e.fake.setErr("CreateShare", control.WithKind(control.ErrForbidden, errors.New("only the IAO or an IAA of imaging may create shares in it")))
	r = b.post("/shares/create", withCSRF(url.Values{"name": {" new-share "}, "project": {"imaging"}}, csrf), nil)
	wantRedirect(t, "create share", r, "/shares")
	if c := e.fake.callsOf("CreateShare"); len(c) != 1 || c[0].Args[0] != (control.ShareCreateRequest{Name: "new-share", Project: "imaging"}) {
		t.Errorf("CreateShare calls %+v", c)
	}
	if f := flashOf(b.get("/shares").body); f != "Only the IAO or an IAA of imaging may create shares in it" {
		t.Errorf("message after a refused create %q", f)
	}

	// bob manages nothing.
	bob := e.browser()
	bob.signIn("bob", fakeCode)
	if r := bob.get("/shares"); !strings.Contains(r.body, `id="no-projects"`) || strings.Contains(r.body, "genomics") {
		t.Errorf("bob's shares page:\n%s", r.body)
	}
}

func TestFilesPageError(t *testing.T) {
	e := newEnv(t, true)
	e.fake.setErr("ListArrivals", control.WithKind(control.ErrUnavailable, errors.New("arrivals are not mounted")))
	b := e.browser()
	b.signIn("alice", fakeCode)
	r := b.get("/files")
	wantStatus(t, "GET /files", r, http.StatusOK)
	if !strings.Contains(r.body, "Arrivals are not mounted") {
		t.Errorf("the error is not shown:\n%s", r.body)
	}
}

func TestMessage(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	for _, tc := range []struct {
		err    error
		status int
		msg    string
	}{
		{errWrongCredentials, 401, "Wrong user ID, password, PIN or code"},
		{fmt.Errorf("%w: account is locked until 10:00", control.ErrLocked), 423, "Account is locked until 10:00"},
		{fmt.Errorf("%w: no such share", control.ErrNotFound), 404, "No such share"},
		{control.WithKind(control.ErrInvalid, errors.New("bad name")), 400, "Bad name"},
		{errors.New("disk on fire"), 500, "Something went wrong on the server; nothing was changed that you were not told about. The operator can find the details in the daemon's log."},
	} {
		status, msg := s.message(r, tc.err)
		if status != tc.status || msg != tc.msg {
			t.Errorf("message(%v) = %d %q, want %d %q", tc.err, status, msg, tc.status, tc.msg)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		origin, site string
		want         bool
	}{
		{"", "", true},
		{"https://portal.example:8443", "", true},
		{"https://portal.example:8443", "same-origin", true},
		{"", "none", true},
		{"http://portal.example:8443", "", false},
		{"https://portal.example", "", false},
		{"https://evil.example", "", false},
		{"https://portal.example:8443", "same-site", false},
		{"", "cross-site", false},
		{"null", "cross-site", false},
		{"https://evil.example", "cross-site", false},
		{"https://portal.example:8443", "cross-site", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "https://portal.example:8443/signin", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		if got := sameOrigin(r); got != tc.want {
			t.Errorf("sameOrigin(Origin %q, Sec-Fetch-Site %q) = %v, want %v", tc.origin, tc.site, got, tc.want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1 << 20, "1.0 MiB"},
		{5 << 30, "5.0 GiB"},
		{3 << 40, "3.0 TiB"},
		{1 << 50, "1.0 PiB"},
		{1 << 60, "1.0 EiB"},
		{1<<63 - 1, "8.0 EiB"},
	} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestStoredCert(t *testing.T) {
	ctx := context.Background()
	st := kv.NewMem()
	defer st.Close()
	hosts := []string{"localhost", "127.0.0.1", "portal.example"}

	cert, certPEM, created, err := StoredCert(ctx, st, hosts)
	if err != nil {
		t.Fatalf("first StoredCert: %v", err)
	}
	if !created {
		t.Error("first StoredCert: created = false")
	}
	if cert.PrivateKey == nil || len(cert.Certificate) == 0 {
		t.Fatal("first StoredCert: no key or certificate")
	}
	if bytes.Contains(certPEM, []byte("PRIVATE KEY")) {
		t.Error("the public PEM holds the private key")
	}
	if !bytes.HasPrefix(certPEM, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Errorf("certPEM %q", certPEM)
	}
	var stored []byte
	if err := st.View(ctx, func(tx kv.Txn) error {
		var err error
		stored, err = tx.Get(certKey)
		return err
	}); err != nil {
		t.Fatalf("the certificate is not in the store: %v", err)
	}
	if !bytes.Contains(stored, []byte("PRIVATE KEY")) || !bytes.Contains(stored, certPEM) {
		t.Error("the store does not hold the certificate and its key")
	}

	cert2, certPEM2, created2, err := StoredCert(ctx, st, hosts)
	if err != nil {
		t.Fatalf("second StoredCert: %v", err)
	}
	if created2 {
		t.Error("second StoredCert: created = true")
	}
	if !bytes.Equal(cert2.Certificate[0], cert.Certificate[0]) || !bytes.Equal(certPEM2, certPEM) {
		t.Error("the second StoredCert gives another certificate")
	}
	leaf, err := x509.ParseCertificate(cert2.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(leaf.DNSNames, "portal.example") || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("certificate names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	// The pair works for TLS: the key matches the certificate.
	if _, err := tls.X509KeyPair(certPEM2, pemKey(t, stored)); err != nil {
		t.Errorf("stored key does not match: %v", err)
	}
}

// pemKey returns the key block of a stored pair.
func pemKey(t *testing.T, stored []byte) []byte {
	t.Helper()
	_, key := splitPEM(stored)
	if len(key) == 0 {
		t.Fatal("no key in the stored pair")
	}
	return key
}

func TestNewSelfSigned(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	certPEM, keyPEM, err := NewSelfSigned([]string{"localhost", "::1", "", "10.0.0.7", "dsh.internal"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(certPEM, []byte("PRIVATE")) || !bytes.Contains(keyPEM, []byte("PRIVATE KEY")) {
		t.Fatal("certificate and key PEM mixed up")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost", "dsh.internal"}) || len(leaf.IPAddresses) != 2 {
		t.Errorf("names %v, addresses %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if !leaf.NotBefore.Before(now) || !leaf.NotAfter.After(now.Add(4*365*24*time.Hour)) {
		t.Errorf("validity %v to %v", leaf.NotBefore, leaf.NotAfter)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("ExtKeyUsage %v", leaf.ExtKeyUsage)
	}
	// Trusting the certificate itself verifies it for its names.
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{"localhost", "dsh.internal", "10.0.0.7"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "evil.example", Roots: pool, CurrentTime: now}); err == nil {
		t.Error("the certificate verifies for a name it was not made for")
	}
	c2, _, err := NewSelfSigned([]string{"localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c2, certPEM) {
		t.Error("two certificates are the same")
	}
}

func TestWriteCertFile(t *testing.T) {
	path := t.TempDir() + "/" + CertFile
	for _, content := range []string{"first\n", "second\n"} {
		if err := WriteCertFile(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v", got, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}

// A sign-out does not wait for an upload whose client stalls mid-chunk: the dsh session
// ends and the transfer is cut off at once.
func TestSignoutDuringStalledUpload(t *testing.T) {
	e := newEnv(t, true)
	alice := e.browser()
	csrf := alice.signIn("alice", fakeCode)
	loc := tusCreate(t, alice, csrf, "big.bin", 1<<20)
	pr, pw := io.Pipe()
	defer pw.Close()
	patched := make(chan result, 1)
	go func() {
		patched <- alice.do(http.MethodPatch, loc, pr, tusHeaders(csrf, "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream"))
	}()
	if _, err := pw.Write([]byte("the first bytes")); err != nil {
		t.Fatal(err)
	}
	// The PATCH is now inside Write, waiting for more bytes that never come.
	done := make(chan result, 1)
	go func() { done <- alice.post("/signout", url.Values{"csrf": {csrf}}, nil) }()
	select {
	case r := <-done:
		wantRedirect(t, "sign-out during a stalled upload", r, "/signin")
	case <-time.After(15 * time.Second):
		t.Fatal("sign-out waited for a stalled upload")
	}
	if n := e.fake.count("Logout"); n != 1 {
		t.Fatalf("Logout called %d times, want 1", n)
	}
	if _, _, aborted := e.fake.allUploads()[0].state(); !aborted {
		t.Fatal("the stalled upload was not aborted")
	}
	select {
	case <-patched:
	case <-time.After(15 * time.Second):
		t.Fatal("the stalled PATCH was not cut off")
	}
}

// The generated certificate is a server certificate, not a CA that could sign others.
func TestSelfSignedIsNoCA(t *testing.T) {
	certPEM, _, err := NewSelfSigned([]string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.IsCA || c.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatalf("IsCA %v, key usage %b: the portal's certificate could sign others", c.IsCA, c.KeyUsage)
	}
	if err := c.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}
