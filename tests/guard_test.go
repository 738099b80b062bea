package tests

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The daemon's memory budget: its peak resident size under each attack stays below it.
const memoryBudget = 256 << 20

// vmHWM is the daemon's peak resident size so far, from /proc/PID/status.
func (e *env) vmHWM(t *testing.T) int64 {
	t.Helper()
	e.mu.Lock()
	cmd := e.cmd
	e.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", cmd.Process.Pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// checkPeak fails when the daemon's peak resident size passed the budget, and logs it.
func (e *env) checkPeak(t *testing.T, attack string) {
	t.Helper()
	peak := e.vmHWM(t)
	t.Logf("%s: daemon peak resident size (VmHWM) %.1f MiB", attack, float64(peak)/(1<<20))
	if os.Getenv("DSH_E2E_RACE") == "1" {
		return // the race detector's shadow memory is five to ten times the program's
	}
	if peak >= memoryBudget {
		t.Fatalf("%s: the daemon's peak resident size %.1f MiB passed the %d MiB budget", attack, float64(peak)/(1<<20), memoryBudget>>20)
	}
}

// answer is one request a hostile run made: its HTTP status (0: the connection broke)
// and how long it took.
type answer struct {
	status int
	took   time.Duration
}

// hostile runs tests/hostile as uid and returns its answers.
func (e *env) hostile(t *testing.T, uid int, args ...string) []answer {
	t.Helper()
	cmd := exec.Command(hostileBin, args...)
	cmd.SysProcAttr = credential(uid)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hostile %v: %v: %s", args, err, errb.String())
	}
	var as []answer
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		st, _ := strconv.Atoi(f[0])
		us, _ := strconv.ParseInt(f[1], 10, 64)
		as = append(as, answer{st, time.Duration(us) * time.Microsecond})
	}
	return as
}

// statuses counts answers by status.
func statuses(as []answer) map[int]int {
	m := map[int]int{}
	for _, a := range as {
		m[a.status]++
	}
	return m
}

func metricNum(t *testing.T, scrape, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(metricValue(t, scrape, name), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// auditBytes is the size of the store's audit log files.
func (e *env) auditBytes(t *testing.T) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(filepath.Join(e.data, "audit"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// web is one browser on the portal, driven over HTTPS without a browser engine: the same
// forms, cookies and CSRF tokens, for tests that make many sign-ins.
type web struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (e *env) web(t *testing.T) *web {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(tr.CloseIdleConnections)
	return &web{t: t, base: "https://" + e.portal, c: &http.Client{Jar: jar, Transport: tr, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var webCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// do sends a request and returns the status, the Location and the body.
func (w *web) do(method, path string, body io.Reader, hdr http.Header) (int, string, string) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// csrf is the CSRF token of the form on a page.
func (w *web) csrf(path string) string {
	w.t.Helper()
	_, _, body := w.do(http.MethodGet, path, nil, nil)
	m := webCSRF.FindStringSubmatch(body)
	if m == nil {
		w.t.Fatalf("no CSRF token on %s:\n%s", path, body)
	}
	return m[1]
}

// form posts a form and returns the status, the Location and the body.
func (w *web) form(path string, v url.Values) (int, string, string) {
	w.t.Helper()
	return w.do(http.MethodPost, path, strings.NewReader(v.Encode()), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
}

// signin tries a token sign-in; ok is true when it landed on /files, else msg is the page.
func (w *web) signin(user, password, pin, code string) (ok bool, status int, msg string) {
	w.t.Helper()
	st, loc, body := w.form("/signin", url.Values{"csrf": {w.csrf("/signin")}, "user": {user}, "password": {password}, "pin": {pin}, "code": {code}})
	return st == http.StatusSeeOther && loc == "/files", st, body
}

// signout posts the sign-out form of the files page.
func (w *web) signout() {
	w.t.Helper()
	st, loc, body := w.form("/signout", url.Values{"csrf": {w.csrf("/files")}})
	if st != http.StatusSeeOther || loc != "/signin" {
		w.t.Fatalf("sign-out: %d %s\n%s", st, loc, body)
	}
}

var tryAgainIn = regexp.MustCompile(`try again in (\d+)s`)

// Failed web sign-ins are throttled, never counted towards lockout: after five of them
// (the lockout threshold) the owner's dsh login works. A web sign-out leaves the owner's
// command-line session alone. A lockout reached on the command line still blocks the portal.
func TestPortalSignInNoCollateral(t *testing.T) {
	a := newArrivalsEnv(t)
	w := a.web(t)
	a.alice.as("logout").ok(t)

	// Five failed sign-ins for alice from the web; after three the account (and the
	// address) must wait, and the page says how long.
	failures, throttled := 0, 0
	for failures < 5 {
		ok, status, body := w.signin("alice", "not alice's password", testPIN, totpAt(t, a.alice.secret, time.Now()))
		switch {
		case ok:
			t.Fatal("signed in with a wrong password")
		case status == http.StatusTooManyRequests:
			m := tryAgainIn.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("a throttled sign-in does not say when to try again:\n%s", body)
			}
			throttled++
			n, _ := strconv.Atoi(m[1])
			time.Sleep(time.Duration(n)*time.Second + 100*time.Millisecond)
		case strings.Contains(strings.ToLower(body), wrongCredentials):
			failures++
		default:
			t.Fatalf("failed sign-in %d: status %d\n%s", failures+1, status, body)
		}
	}
	if throttled == 0 {
		t.Fatal("five failed sign-ins in a row were never slowed down")
	}
	// The owner logs in on the command line: not locked.
	a.alice.login(t).ok(t)
	scrape := a.scrape()
	if v := metricValue(t, scrape, "dsh_lockouts_total"); v != "0" {
		t.Fatalf("web failures locked an account: dsh_lockouts_total %s", v)
	}
	if metricNum(t, scrape, `dsh_limit_refusals_total{limit="signin_throttle"}`) < 1 {
		t.Fatal("throttled sign-ins not counted")
	}
	audit := a.dsh(0, "", "audit", "show").ok(t).stdout
	if strings.Contains(audit, "token.lockout") || !strings.Contains(audit, "throttled; via portal 127.0.0.1") {
		t.Fatalf("audit: want throttled web sign-ins and no lockout:\n%s", tail(audit, 3000))
	}

	// The owner signs in on the web too (once the account's delay has passed): two
	// sessions side by side, and the web sign-out ends only the portal's.
	for {
		ok, status, body := w.signin("alice", testPassword, testPIN, a.alice.nextCode(t))
		if ok {
			break
		}
		m := tryAgainIn.FindStringSubmatch(body)
		if status != http.StatusTooManyRequests || m == nil {
			t.Fatalf("alice's web sign-in: %d\n%s", status, body)
		}
		n, _ := strconv.Atoi(m[1])
		time.Sleep(time.Duration(n)*time.Second + 100*time.Millisecond)
	}
	st := a.alice.as("status").ok(t).stdout
	if !strings.Contains(st, "command line") || !strings.Contains(st, "portal") {
		t.Fatalf("dsh status with both sessions: %q", st)
	}
	w.signout()
	st = a.alice.as("status").ok(t).stdout
	if !strings.Contains(st, "logged in as alice") || !strings.Contains(st, "command line") || strings.Contains(st, "portal") {
		t.Fatalf("after the web sign-out: %q", st)
	}
	a.shOK(t, uidAlice, "ls "+filepath.Join(a.S, "s1")+" && ls "+filepath.Join(a.Q, "alice"))

	// A lockout reached on the command line applies to the portal.
	for i := 0; i < 5; i++ {
		a.dsh(uidBob, "not bob's password\n"+testPIN+"\n", "login", "--code", "000000").fails(t, 2, "wrong user ID, password, PIN or code")
	}
	ok, status, body := a.web(t).signin("bob", testPassword, testPIN, a.bob.nextCode(t))
	if ok || status != http.StatusLocked || !strings.Contains(body, "locked until") {
		t.Fatalf("web sign-in of an account locked on the command line: %v %d\n%s", ok, status, body)
	}
}

// 48 logins at once from a uid with no account, three times over: the daemon answers
// every one (most at once with 429), runs at most one password check at a time, stays
// under its memory budget, and another user's login goes through meanwhile.
func TestLoginStormFromUIDWithoutAccount(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	alice := e.newPerson(t, "alice", uidAlice)
	var as []answer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := 0; round < 3; round++ {
			as = append(as, e.hostile(t, uidOutsider, "logins", e.socket, "48", "48", "")...)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	alice.login(t).ok(t)
	t.Logf("alice's login during the storm took %v", time.Since(start).Round(time.Millisecond))
	wg.Wait()
	got := statuses(as)
	t.Logf("answers to 144 logins: %v", got)
	if len(as) != 144 || got[http.StatusUnauthorized]+got[http.StatusTooManyRequests]+got[http.StatusServiceUnavailable] != 144 {
		t.Fatalf("answers %v, want 144 refusals (401, 429 or 503)", got)
	}
	if got[http.StatusTooManyRequests] == 0 || got[http.StatusUnauthorized] == 0 {
		t.Fatalf("answers %v: want some checked (401) and the rest refused at once (429)", got)
	}
	scrape := e.scrape()
	if metricNum(t, scrape, `dsh_limit_refusals_total{limit="control_requests"}`) != float64(got[http.StatusTooManyRequests]) {
		t.Fatal("429 answers not counted in dsh_limit_refusals_total")
	}
	if metricNum(t, scrape, `dsh_logins_total{method="token",result="denied"}`) < float64(got[http.StatusUnauthorized]) {
		t.Fatal("refused logins not counted")
	}
	e.checkPeak(t, "48 parallel logins from a uid without an account")
}

// 24 uploads at once from one member that each send 40 MiB and then stall: two run, the
// rest are refused at once; the two are cut off after the idle timeout and their staged
// data removed; the daemon stays under its memory budget.
func TestStalledUploadsFromOneMember(t *testing.T) {
	a := newArrivalsEnv(t, "--upload-idle-timeout", "3s")
	as := a.hostile(t, uidAlice, "stall", a.socket, "24", strconv.Itoa(40<<20))
	got := statuses(as)
	t.Logf("answers to 24 stalled uploads: %v", got)
	if got[http.StatusTooManyRequests] != 22 || got[http.StatusRequestTimeout]+got[0] != 2 {
		t.Fatalf("answers %v, want 22 refused (429) and 2 cut off (408)", got)
	}
	scrape := a.scrape()
	if v := metricNum(t, scrape, `dsh_limit_refusals_total{limit="upload_streams"}`); v != 22 {
		t.Fatalf("upload_streams refusals counted %v, want 22", v)
	}
	if v := metricNum(t, scrape, `dsh_limit_refusals_total{limit="stream_idle"}`); v != 2 {
		t.Fatalf("stream_idle cut-offs counted %v, want 2", v)
	}
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "" {
		t.Fatalf("stalled uploads left %q visible", got)
	}
	audit := a.dsh(0, "", "audit", "show").ok(t).stdout
	if n := strings.Count(audit, "transfer not completed"); n != 2 {
		t.Fatalf("%d aborted transfers audited, want 2", n)
	}
	if !strings.Contains(audit, "control.limit") {
		t.Fatal("refused uploads not audited")
	}
	a.checkPeak(t, "24 stalled dsh upload streams from one member")
	// The member's next upload works.
	small := a.localFile(t, "after.bin", 100_000)
	a.dsh(uidAlice, "", "upload", small).ok(t)
	a.shOK(t, uidAlice, "cmp "+small+" "+a.Q+"/alice/after.bin")
}

// 5,000 refused requests from one uid grow the audit log by a bounded amount: the first
// few are recorded one by one, the rest in one summary record; every one is counted.
func TestRefusalStormAuditBounded(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	before := e.auditBytes(t)
	as := e.hostile(t, uidOutsider, "refusals", e.socket, "5000", "4")
	got := statuses(as)
	if len(as) != 5000 || got[http.StatusBadRequest] != 2500 || got[http.StatusForbidden] != 2500 {
		t.Fatalf("answers %v, want 2500 refused as malformed (400) and 2500 as not the operator (403)", got)
	}
	grew := e.auditBytes(t) - before
	t.Logf("5,000 refusals grew the audit log by %d bytes", grew)
	if grew > 64<<10 {
		t.Fatalf("5,000 refusals grew the audit log by %d bytes, want a bounded amount (< 64 KiB)", grew)
	}
	// Sealing writes the window's summary; the count is exact.
	e.dsh(0, "", "operator", "seal").ok(t)
	e.dsh(0, "correct horse battery staple\n", "operator", "unseal").ok(t)
	audit := e.dsh(0, "", "audit", "show").ok(t).stdout
	if !regexp.MustCompile(`audit\.refusals .*4968 refusals for uid 1000 in `).MatchString(audit) {
		t.Fatalf("no summary of the 4968 refusals not recorded one by one:\n%s", tail(audit, 2000))
	}
	if n := strings.Count(audit, "uid=1000 "); n > 40 {
		t.Fatalf("%d records of uid 1000, want at most the burst and a summary", n)
	}
	scrape := e.scrape()
	if v := metricNum(t, scrape, "dsh_audit_coalesced_total"); v != 4968 {
		t.Fatalf("dsh_audit_coalesced_total %v, want 4968", v)
	}
	if v := metricNum(t, scrape, `dsh_logins_total{method="token",result="denied"}`); v != 2500 {
		t.Fatalf("malformed logins counted %v, want 2500", v)
	}
	e.checkPeak(t, "5,000 refused requests")
}

// tusPost creates a portal upload of size bytes and returns its URL.
func (w *web) tusPost(csrf, name string, size int) string {
	w.t.Helper()
	st, loc, body := w.do(http.MethodPost, "/files/tus/", nil, http.Header{
		"Tus-Resumable": {"1.0.0"}, "X-Csrf-Token": {csrf}, "Upload-Length": {strconv.Itoa(size)},
		"Upload-Metadata": {"filename " + base64.StdEncoding.EncodeToString([]byte(name))}})
	if st != http.StatusCreated {
		w.t.Fatalf("tus POST: %d\n%s", st, body)
	}
	return strings.TrimPrefix(loc, w.base)
}

// tusPatch sends body at off.
func (w *web) tusPatch(csrf, path string, off int, body io.Reader, n int) (int, string) {
	req, err := http.NewRequest(http.MethodPatch, w.base+path, body)
	if err != nil {
		return 0, err.Error()
	}
	req.ContentLength = int64(n)
	req.Header = http.Header{"Tus-Resumable": {"1.0.0"}, "X-Csrf-Token": {csrf}, "Upload-Offset": {strconv.Itoa(off)},
		"Content-Type": {"application/offset+octet-stream"}}
	resp, err := w.c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// trickle sends a byte every tick until stop is closed.
type trickle struct {
	tick time.Duration
	stop chan struct{}
	mu   sync.Mutex
	sent int
}

func (r *trickle) Read(p []byte) (int, error) {
	select {
	case <-r.stop:
		return 0, io.ErrUnexpectedEOF
	case <-time.After(r.tick):
	}
	p[0] = 't'
	r.mu.Lock()
	r.sent++
	r.mu.Unlock()
	return 1, nil
}

func (r *trickle) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// Four users' portal uploads that trickle in (a byte every 200 ms) hold none of the
// portal's write slots while they wait: a fifth user's 24 MiB upload goes through
// meanwhile, and lands whole on the Arrivals mount. The daemon stays under its budget.
func TestTricklingPortalUploads(t *testing.T) {
	a := newArrivalsEnv(t)
	users := []*person{a.alice, a.bob, a.iao}
	for i, id := range []string{"uma", "vic"} {
		users = append(users, a.newPerson(t, id, 2301+i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	var trickles []*trickle
	for _, p := range users[:4] {
		w := a.web(t)
		if ok, st, body := w.signin(p.id, testPassword, testPIN, p.nextCode(t)); !ok {
			t.Fatalf("%s's web sign-in: %d\n%s", p.id, st, body)
		}
		csrf := w.csrf("/files")
		loc := w.tusPost(csrf, "slow.bin", 1<<20)
		tr := &trickle{tick: 200 * time.Millisecond, stop: stop}
		trickles = append(trickles, tr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.tusPatch(csrf, loc, 0, tr, 1<<20)
		}()
	}
	// All four are sending.
	deadline := time.Now().Add(time.Minute)
	for _, tr := range trickles {
		for tr.count() < 2 {
			if time.Now().After(deadline) {
				t.Fatal("the trickling uploads did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fifth := users[4]
	w := a.web(t)
	if ok, st, body := w.signin(fifth.id, testPassword, testPIN, fifth.nextCode(t)); !ok {
		t.Fatalf("%s's web sign-in: %d\n%s", fifth.id, st, body)
	}
	csrf := w.csrf("/files")
	data := make([]byte, 24<<20)
	rand.Read(data)
	loc := w.tusPost(csrf, "fast.bin", len(data))
	start := time.Now()
	for off := 0; off < len(data); off += 16 << 20 {
		end := min(off+16<<20, len(data))
		if st, body := w.tusPatch(csrf, loc, off, bytes.NewReader(data[off:end]), end-off); st != http.StatusNoContent {
			t.Fatalf("the fifth user's chunk at %d: %d %s", off, st, body)
		}
	}
	t.Logf("the fifth user's 24 MiB went through in %v beside four trickling uploads", time.Since(start).Round(time.Millisecond))
	for i, tr := range trickles {
		if before := tr.count(); before < 2 {
			t.Fatalf("trickle %d stopped", i)
		}
	}
	// The fifth user has only a portal session: it opens their Arrivals on the mount too.
	sum := strings.Fields(a.shOK(t, fifth.uid, "sha256sum "+filepath.Join(a.Q, fifth.id, "fast.bin")))[0]
	want := sha256Bytes(data)
	if sum != want {
		t.Fatalf("fast.bin arrived as %s, want %s", sum, want)
	}
	if !slices.ContainsFunc(trickles, func(tr *trickle) bool { return tr.count() > 0 }) {
		t.Fatal("no trickle sent anything")
	}
	a.checkPeak(t, "four trickling portal uploads beside a fifth user's")
}

// A login for an existing user and one for an unknown user, from a uid with no account,
// cost the same: medians over many tries are within a factor of two (before, 0.3 ms
// against 44-185 ms told any local uid which user IDs exist).
func TestLoginTimingSaysNothing(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	e.newPerson(t, "alice", uidAlice)
	var known, unknown []time.Duration
	for round := 0; round < 6; round++ {
		for _, a := range e.hostile(t, uidOutsider, "logins", e.socket, "5", "1", "alice") {
			if a.status != http.StatusUnauthorized {
				t.Fatalf("login for alice from another uid: status %d", a.status)
			}
			known = append(known, a.took)
		}
		for _, a := range e.hostile(t, uidOutsider, "logins", e.socket, "5", "1", "nobody") {
			if a.status != http.StatusUnauthorized {
				t.Fatalf("login for an unknown user: status %d", a.status)
			}
			unknown = append(unknown, a.took)
		}
	}
	mk, mu := median(known), median(unknown)
	t.Logf("median login answer: existing user %v, unknown user %v (%d tries each)", mk, mu, len(known))
	ratio := float64(mk) / float64(mu)
	if ratio < 0.5 || ratio > 2 {
		t.Fatalf("an existing user's login answers in %v, an unknown user's in %v: timing tells who exists", mk, mu)
	}
	if mk < 5*time.Millisecond {
		t.Fatalf("an existing user's refused login took %v: no password check ran", mk)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func sha256Bytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
