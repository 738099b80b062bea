// Package portal is the web face of dsh: one HTTPS site with File Transfer (resumable tus
// uploads into the caller's Arrivals), Security & Tokens and the Share Manager. It owns the
// browser side only (sign-ins, cookies, CSRF, pages) and decides nothing itself: every
// action goes to the daemon as the signed-in user's uid, with the same checks and audit as
// the control socket. It must never put a secret in a URL, a log line or a page it was not
// asked to show, and never act on a form without its CSRF token.
package portal

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"dsh/audit"
	"dsh/control"
	"dsh/limit"
	"dsh/metrics"
)

// Service is what the portal needs from the daemon: the control socket's operations, for a
// caller the portal has signed in.
type Service interface {
	// Sign-in and the Security & Tokens page: the token service's calls, as on the control
	// socket (control.Tokens).
	Login(ctx context.Context, c control.Caller, user string, password, pin []byte, code, emergencyCode string) (control.SessionView, error)
	Logout(ctx context.Context, c control.Caller) error
	ListTokens(ctx context.Context, c control.Caller) ([]control.TokenView, error)
	CreateToken(ctx context.Context, c control.Caller, pin []byte) (control.TokenCreated, error)
	RevokeToken(ctx context.Context, c control.Caller, id string) error
	SetPIN(ctx context.Context, c control.Caller, id string, pin []byte) error
	RequestICE(ctx context.Context, c control.Caller, user string, password []byte, answers [3][]byte) (control.ICEResponse, error)
	ChangePassword(ctx context.Context, c control.Caller, current, pin []byte, code string, newPassword []byte) error
	SetQuestions(ctx context.Context, c control.Caller, password, pin []byte, code string, qs [3]control.Question) error
	// Hardware tokens and soft tokens by e-mail (control.Hardware).
	ResyncToken(ctx context.Context, c control.Caller, req control.ResyncRequest) error
	ClaimTokenLink(ctx context.Context, c control.Caller, user, code string, password, pin []byte) (control.TokenCreated, error)
	// The Share Manager (control.Accounts).
	ListProjects(ctx context.Context, c control.Caller) ([]control.ProjectView, error)
	ListShares(ctx context.Context, c control.Caller) ([]control.ShareAccessView, error)
	ShareMembers(ctx context.Context, c control.Caller, share string) (control.MembersResponse, error)
	CreateShare(ctx context.Context, c control.Caller, req control.ShareCreateRequest) (control.ShareView, error)
	AddMember(ctx context.Context, c control.Caller, req control.MemberRequest) error
	RemoveMember(ctx context.Context, c control.Caller, req control.MemberRequest) error
	// File Transfer (control.Arrivals).
	ListArrivals(ctx context.Context, c control.Caller) ([]control.ArrivalView, error)
	// UIDOf returns the uid of a user ID; ok is false for an unknown ID.
	UIDOf(user string) (uid int, ok bool)
	// TouchSession reports whether session id of uid (the dsh session a portal sign-in
	// started, SessionView.Current) is still live, and marks it used, which keeps it from
	// ending for being idle. It is cheap: the portal asks on every request of a sign-in.
	TouchSession(uid int, id uint64) bool
	// Questions returns the texts of the caller's security questions.
	Questions(ctx context.Context, c control.Caller) ([3]string, error)
	// BeginUpload starts a resumable upload of size bytes into the caller's Arrivals.
	BeginUpload(ctx context.Context, c control.Caller, name string, size int64) (Upload, error)
}

// Upload is a resumable transfer into Arrivals, staged until it is finished.
type Upload interface {
	// Offset is how many bytes are durably staged.
	Offset() int64
	// Size is the declared length.
	Size() int64
	// Name is the file name asked for.
	Name() string
	// Write appends r at off (which must be Offset()); bytes received before a failure
	// are kept, so a transfer can resume.
	Write(ctx context.Context, off int64, r io.Reader) (int64, error)
	// Finish publishes the complete file in Arrivals.
	Finish(ctx context.Context) (control.ArrivalView, error)
	// Abort removes the staged file.
	Abort(ctx context.Context) error
}

// Options configure a Server.
type Options struct {
	// Log receives the portal's errors; it never gets a secret.
	Log *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Limits counts requests refused by the portal's limits; nil counts nothing.
	Limits *metrics.Limits
	// Airlock, when set, adds the Applications & Data pages (airlock.go).
	Airlock Airlock
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server is the portal's HTTP handler and its TLS certificate.
type Server struct {
	svc      Service
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	uploads  *uploads
	pages    map[string]*template.Template
	mux      *http.ServeMux
	tus      http.Handler
	airlock  Airlock

	// cert is the certificate served; nil while none is loaded (a sealed store without
	// --tls-cert), when fallback is served.
	cert     atomic.Pointer[tls.Certificate]
	fallback *tls.Certificate
	// open is false while the store is sealed: every page then says so.
	open atomic.Bool
	// The memory of credential checks is bounded in the daemon, for the socket and the
	// portal together. These keep the web's share of that queue small: signins bounds the
	// checks of one client address at once (more are refused), checks those of the whole
	// portal (more wait their turn, up to checkWait).
	signins *limit.PerKey[string]
	checks  *limit.Budget
	lim     *metrics.Limits
}

// Bounds on the portal's credential checks (sign-in, ICE, password, questions, PINs).
const (
	// maxChecksPerAddress is how many checks one client address may have running.
	maxChecksPerAddress = 2
	// maxChecks is how many checks the whole portal may have running or queued in the
	// daemon; the daemon's budget runs one password check at a time.
	maxChecks = 4
	// checkWait is how long a check waits for its turn before the page says "busy".
	checkWait = 10 * time.Second
)

// New builds the portal over svc.
func New(svc Service, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{svc: svc, log: opts.Log, now: opts.Now, sessions: newSessions(opts.Now), mux: http.NewServeMux(),
		signins: limit.NewPerKey[string](maxChecksPerAddress), checks: limit.NewBudget(maxChecks, checkWait), lim: opts.Limits}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := NewSelfSigned(DefaultHosts(), opts.Now())
	if err != nil {
		return nil, err
	}
	fb, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("portal: fallback certificate: %w", err)
	}
	s.fallback = &fb
	s.uploads = newUploads(svc, opts.Log, opts.Now, s.touch)
	if s.tus, err = s.newTus(); err != nil {
		return nil, err
	}
	s.routes()
	if opts.Airlock != nil {
		s.airlock = opts.Airlock
		if err := s.airlockRoutes(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// SetCertificate sets the certificate the portal serves; nil goes back to the fallback.
func (s *Server) SetCertificate(c *tls.Certificate) { s.cert.Store(c) }

// SetSealed tells the portal whether the store is sealed. Sealing ends every sign-in (the
// dsh sessions end with it) and forgets the uploads in progress, whose staged files are
// removed at the next unseal: their clients are told to start again.
func (s *Server) SetSealed(sealed bool) {
	s.open.Store(!sealed)
	if sealed {
		s.sessions.endAll()
		s.uploads.forgetAll()
	}
}

// TLSConfig is the TLS configuration to serve the portal with.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.cert.Load(); c != nil {
				return c, nil
			}
			return s.fallback, nil
		},
	}
}

// Serve serves the portal over TLS on l until ctx ends, then stops taking requests and
// gives those in flight a few seconds.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go s.housekeeping(ctx)
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(l, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("portal: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := hs.Shutdown(sctx)
		// Shutdown does not wait for hijacked or stalled uploads to end; Close cuts them,
		// so the aborts below need not wait for a slow client.
		cerr := hs.Close()
		s.uploads.abortAll(context.WithoutCancel(ctx))
		if errors.Is(err, context.DeadlineExceeded) {
			return cerr
		}
		return err
	}
}

// housekeeping forgets expired sign-ins and abandoned uploads.
func (s *Server) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sessions.sweep()
			s.uploads.sweep(ctx)
		}
	}
}

// bodyTimeout is how long a request other than an upload may take to arrive.
const bodyTimeout = 30 * time.Second

// securityHeaders are sent with every answer. The policy allows scripts, styles and
// requests only from the portal itself, and images also as data: URLs (the QR code).
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"Strict-Transport-Security":  "max-age=31536000",
	"X-Content-Type-Options":     "nosniff",
	"X-Frame-Options":            "DENY",
	"Referrer-Policy":            "no-referrer",
	"Cross-Origin-Opener-Policy": "same-origin",
	"Cache-Control":              "no-store",
}

// ServeHTTP adds the security headers, refuses cross-site requests and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	if !strings.HasPrefix(r.URL.Path, tusBase) {
		// Only an upload's body may take long; tusd bounds each read of it. Any other
		// request that trickles in is cut off.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
	}
	// Every audit record this request leads to names the portal and the client address.
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		host = "unknown"
	}
	r = r.WithContext(context.WithValue(audit.WithVia(r.Context(), "portal "+host), clientKey{}, host))
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
		s.log.Warn("portal: cross-site request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "fetch_site", r.Header.Get("Sec-Fetch-Site"), "host", r.Host)
		s.fail(w, r, nil, http.StatusForbidden, "This request came from another site and was refused.")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// sameOrigin reports whether a state-changing request comes from a page of this site.
// Browsers send Sec-Fetch-Site, which a page cannot forge; without it, Origin decides when
// it names a site (Chromium sends "null" for some same-site form posts). A request that
// carries neither is not from a browser, and goes on to the CSRF token check.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return true
	}
	return o == "https://"+r.Host
}

func (s *Server) routes() {
	m := s.mux
	// The embedded tree's paths start with static/, as the URLs do.
	m.Handle("GET /static/", http.FileServerFS(staticFS))
	m.HandleFunc("GET /{$}", s.home)
	m.HandleFunc("GET /signin", s.unsealed(s.signinPage))
	m.HandleFunc("POST /signin", s.unsealed(s.signin))
	m.HandleFunc("GET /ice", s.unsealed(s.icePage))
	m.HandleFunc("POST /ice", s.unsealed(s.ice))
	m.HandleFunc("POST /signout", s.signout)
	m.HandleFunc("GET /files", s.signedIn(s.filesPage))
	m.Handle("/files/tus/", s.tusAuth(s.tus))
	m.HandleFunc("GET /security", s.signedIn(s.securityPage))
	m.HandleFunc("POST /security/password", s.signedIn(s.changePassword))
	m.HandleFunc("POST /security/questions", s.signedIn(s.setQuestions))
	m.HandleFunc("POST /security/tokens/create", s.signedIn(s.createToken))
	m.HandleFunc("POST /security/tokens/pin", s.signedIn(s.setPIN))
	m.HandleFunc("POST /security/tokens/revoke", s.signedIn(s.revokeToken))
	m.HandleFunc("POST /security/tokens/resync", s.signedIn(s.resyncToken))
	m.HandleFunc("GET /claim", s.unsealed(s.claimPage))
	m.HandleFunc("POST /claim", s.unsealed(s.claim))
	m.HandleFunc("GET /shares", s.signedIn(s.sharesPage))
	m.HandleFunc("POST /shares/create", s.signedIn(s.createShare))
	m.HandleFunc("POST /shares/add", s.signedIn(s.addMember))
	m.HandleFunc("POST /shares/remove", s.signedIn(s.removeMember))
}

// sealed reports whether the store is sealed (no certificate of its own is loaded).
func (s *Server) sealed() bool { return !s.open.Load() }

// checkCredentials runs fn, a call that checks a password or PIN, within the portal's
// bounds: a client address with maxChecksPerAddress checks running is refused at once; the
// portal runs maxChecks at a time and a browser waits up to checkWait for its turn.
func (s *Server) checkCredentials(r *http.Request, fn func() error) error {
	addr := clientOf(r)
	if !s.signins.TryAcquire(addr) {
		s.lim.Refused(metrics.LimitPortalSignIns)
		return control.WithKind(control.ErrTooMany, fmt.Errorf("%d sign-ins or checks from your address are still running; wait for them to finish", maxChecksPerAddress))
	}
	defer s.signins.Release(addr)
	release, err := s.checks.Acquire(r.Context(), 1)
	if err != nil {
		s.lim.Refused(metrics.LimitCredentialChecks)
		return control.WithKind(control.ErrUnavailable, errors.New("the portal is busy checking other sign-ins; try again in a moment"))
	}
	defer release()
	return fn()
}

type clientKey struct{}

// clientOf is the client address of a request, as ServeHTTP recorded it.
func clientOf(r *http.Request) string { return clientIn(r.Context()) }

// clientIn is the client address a request's context carries.
func clientIn(ctx context.Context) string {
	if h, _ := ctx.Value(clientKey{}).(string); h != "" {
		return h
	}
	return "unknown"
}

// sealedMessage is every page's answer while the store is sealed.
const sealedMessage = "dsh is sealed: the operator must unseal the store (dsh operator unseal) before anyone can sign in."

// unsealed wraps a page that needs no sign-in but the unsealed store.
func (s *Server) unsealed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.sealed() {
			s.fail(w, r, nil, http.StatusServiceUnavailable, sealedMessage)
			return
		}
		h(w, r)
	}
}

// caller is the signed-in user as the daemon sees a caller on the portal channel.
func caller(ws *websession, r *http.Request) control.Caller {
	return control.Caller{UID: ws.uid, GID: -1, Remote: clientOf(r)}
}

// signedIn wraps a handler that needs a sign-in: without one the browser goes to the
// sign-in page; a POST must carry the sign-in's CSRF token.
func (s *Server) signedIn(h func(http.ResponseWriter, *http.Request, *websession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.sealed() {
			s.fail(w, r, nil, http.StatusServiceUnavailable, sealedMessage)
			return
		}
		ws, ok := s.current(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "Your sign-in has ended. Sign in again, then repeat what you were doing.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if !sameToken(r.PostFormValue("csrf"), ws.csrf) {
				s.fail(w, r, ws, http.StatusForbidden, "This form has expired or did not come from this site. Reload the page and try again.")
				return
			}
		}
		h(w, r, ws)
	}
}

// touch reports whether the dsh session that ws started is still live, and keeps it from
// ending for being idle while the sign-in is used: a logout (dsh logout ends it too), an
// expiry, a disable or a seal end the sign-in.
func (s *Server) touch(ws *websession) bool { return s.svc.TouchSession(ws.uid, ws.sid) }

// maxFormBytes bounds a form body; no form of the portal comes near it.
const maxFormBytes = 64 << 10

// current returns the request's sign-in, if its cookie names a live one whose dsh session
// is still the one it started.
func (s *Server) current(r *http.Request) (*websession, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, false
	}
	ws, ok := s.sessions.lookup(c.Value)
	if !ok {
		return nil, false
	}
	if !s.touch(ws) {
		s.sessions.end(c.Value)
		return nil, false
	}
	return ws, true
}

// message turns a daemon error into what the page says. The daemon's messages are written
// for users ("wrong user ID, password, PIN or code", "account is locked until ..."); an
// internal error is logged and not shown.
func (s *Server) message(r *http.Request, err error) (int, string) {
	status := control.StatusFor(err)
	if status == http.StatusInternalServerError {
		s.log.Error("portal request failed", "path", r.URL.Path, "err", err)
		return status, "Something went wrong on the server; nothing was changed that you were not told about. The operator can find the details in the daemon's log."
	}
	msg := control.UserMessage(err)
	if r, n := utf8.DecodeRuneInString(msg); r != utf8.RuneError {
		msg = string(unicode.ToUpper(r)) + msg[n:]
	}
	return status, msg
}
