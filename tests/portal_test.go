package tests

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const wrongCredentials = "wrong user id, password, pin or code" // compared lower-cased

// sha256File is the hex SHA-256 of a local file.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// arrivalSum is the SHA-256 of a file in uid's Arrivals, read through the Q mount as uid.
func (a *arrivalsEnv) arrivalSum(t *testing.T, uid int, user, name string) string {
	t.Helper()
	out := a.shOK(t, uid, "sha256sum "+filepath.Join(a.Q, user, name))
	return strings.Fields(out)[0]
}

// TestPortalSignInUpload: sign-in with an oathtool code (and the refusals around it), an
// upload that lands on the Arrivals mount with the same checksum, and an upload cut off
// half-way that resumes where it stopped.
func TestPortalSignInUpload(t *testing.T) {
	a := newArrivalsEnv(t)
	b := a.newBrowser(t, "alice")

	b.open("/")
	if p := b.path(); p != "/signin" {
		t.Fatalf("the portal sent a new visitor to %s, want /signin", p)
	}
	b.shot("signin")

	// A wrong PIN is refused with the one message that says nothing about which factor.
	b.signin("alice", testPassword, "9999", totpAt(t, a.alice.secret, time.Now()))
	if f := b.flash(); !strings.Contains(strings.ToLower(f), wrongCredentials) || b.signedIn() {
		t.Fatalf("wrong PIN: flash %q, signed in %v\n%s", f, b.signedIn(), "")
	}
	b.shot("signin-refused")

	code := a.alice.nextCode(t)
	b.signin("alice", testPassword, testPIN, code)
	if !b.signedIn() || b.path() != "/files" {
		t.Fatalf("sign-in did not land on /files: %s\n%s", b.path(), b.pageText())
	}
	b.shot("files-empty")

	// The same code in another browser is a replay.
	other := a.newBrowser(t, "replay")
	other.signin("alice", testPassword, testPIN, code)
	if f := other.flash(); !strings.Contains(strings.ToLower(f), wrongCredentials) || other.signedIn() {
		t.Fatalf("replayed code: flash %q, signed in %v", f, other.signedIn())
	}
	if audit := a.dsh(0, "", "audit", "show").ok(t).stdout; !strings.Contains(audit, "code replayed; via portal 127.0.0.1") {
		t.Fatalf("the replayed code is not in the audit log as a portal sign-in:\n%s", audit)
	}

	// Upload: the file appears whole on the Q mount, with the same bytes.
	src := a.localFile(t, "portal-upload.bin", 3_000_000)
	b.pick(src)
	b.waitFor("upload done", `!!document.querySelector('#uploads li[data-state="done"]')`, time.Minute)
	if got, want := a.arrivalSum(t, uidAlice, "alice", "portal-upload.bin"), sha256File(t, src); got != want {
		t.Fatalf("uploaded file differs: sha256 %s, want %s", got, want)
	}
	b.open("/files")
	if list := b.text("#arrivals"); !strings.Contains(list, "portal-upload.bin") || !strings.Contains(list, "2.9 MiB") {
		t.Fatalf("arrivals list: %q", list)
	}
	b.shot("files-uploaded")

	// An upload cut off half-way: throttle the browser, leave the page mid-transfer (the
	// connection drops), then pick the file again: it resumes from the server's offset.
	big := a.localFile(t, "big.bin", 40<<20)
	b.throttle(8 << 20)
	b.pick(big)
	b.waitFor("a third of the upload", `(function(){var p=document.querySelector('#uploads progress');return !!p && p.value >= 34})()`, 2*time.Minute)
	b.shot("upload-in-progress")
	b.open("/files")
	b.throttle(0)
	if out := a.shOK(t, uidAlice, "ls -A "+filepath.Join(a.Q, "alice")); strings.Contains(out, "big.bin") {
		t.Fatalf("an incomplete upload is visible in Arrivals: %q", out)
	}
	b.pick(big)
	b.waitFor("resumed upload done", `!!document.querySelector('#uploads li[data-state="done"]')`, 2*time.Minute)
	at := eval[string](b, `document.querySelector('#uploads li').getAttribute('data-resumed-at') || ""`)
	n, err := strconv.ParseInt(at, 10, 64)
	if err != nil || n < 8<<20 || n >= 40<<20 {
		t.Fatalf("the second transfer did not resume half-way: resumed at %q", at)
	}
	b.shot("upload-resumed")
	if got, want := a.arrivalSum(t, uidAlice, "alice", "big.bin"), sha256File(t, big); got != want {
		t.Fatalf("resumed file differs: sha256 %s, want %s", got, want)
	}
	if out := a.shOK(t, uidAlice, "ls -A "+filepath.Join(a.Q, "alice")); strings.Contains(out, "big (1).bin") {
		t.Fatalf("the resumed upload arrived twice: %q", out)
	}
	audit := a.dsh(0, "", "audit", "show").ok(t).stdout
	if !strings.Contains(audit, "arrivals.upload") || !strings.Contains(audit, "alice/big.bin") {
		t.Fatal("the portal upload is not in the audit log")
	}
}

var otpauthURL = regexp.MustCompile(`otpauth://\S+`)

// TestPortalTokensICELockoutCSRF: create a token on the Security page and sign in with it,
// the ICE flow end to end, a lockout from the command line that the portal honours (wrong
// PINs on the portal itself lock nothing), and forms without their CSRF token.
func TestPortalTokensICELockoutCSRF(t *testing.T) {
	a := newArrivalsEnv(t, "--lockout-threshold", "3")
	b := a.newBrowser(t, "alice")
	b.signin("alice", testPassword, testPIN, a.alice.nextCode(t))
	if !b.signedIn() {
		t.Fatalf("sign-in failed: %s", b.pageText())
	}

	// A new soft token: QR code and otpauth URL on the page, once.
	b.open("/security")
	b.shot("security")
	b.fill("#token-create", map[string]string{"new-pin": "1357", "new-pin2": "1357"})
	if ok := eval[bool](b, `(function(){var i=document.getElementById('qr');return !!i && i.naturalWidth > 0})()`); !ok {
		t.Fatalf("no QR code image on the new-token page: %s", b.pageText())
	}
	raw := eval[string](b, `document.getElementById('otpauth').value`)
	u, err := url.Parse(otpauthURL.FindString(raw))
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("no otpauth URL on the page: %q", raw)
	}
	b.shot("token-created")
	tok := &person{e: a.env, id: "alice", uid: uidAlice, secret: u.Query().Get("secret")}

	// CSRF: the page's own script posting without the token, or with a wrong one, is
	// refused, and nothing happens.
	tokensBefore := a.dsh(uidAlice, "", "token", "list").ok(t).stdout
	for _, body := range []string{`"token=x"`, `"token=x&csrf=AAAA"`} {
		status := eval[int](b, `fetch('/security/tokens/revoke', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: `+body+`}).then(function(r){return r.status})`)
		if status != 403 {
			t.Fatalf("POST without a valid CSRF token: status %d, want 403", status)
		}
	}
	if after := a.dsh(uidAlice, "", "token", "list").ok(t).stdout; after != tokensBefore {
		t.Fatalf("a refused form changed the tokens:\n%s\n%s", tokensBefore, after)
	}

	// Sign out: the sign-in's dsh session ends, the one alice started with dsh login
	// stays. Then sign in with the new token.
	if st := a.dsh(uidAlice, "", "status").ok(t).stdout; !strings.Contains(st, "portal") || !strings.Contains(st, "command line") {
		t.Fatalf("dsh status while signed in on the web: %q", st)
	}
	b.submit("#signout")
	if p := b.path(); p != "/signin" {
		t.Fatalf("sign-out landed on %s", p)
	}
	if st := a.dsh(uidAlice, "", "status").ok(t).stdout; strings.Contains(st, "portal") || !strings.Contains(st, "command line") {
		t.Fatalf("after the portal sign-out, want alice's command-line session only: %q", st)
	}
	b.signin("alice", testPassword, "1357", tok.nextCode(t))
	if !b.signedIn() {
		t.Fatalf("sign-in with the new token failed: %s", b.pageText())
	}
	b.submit("#signout")

	// ICE: password and the three answers give a code shown once; it signs in once.
	b.open("/ice")
	b.shot("ice")
	b.fill("#ice-form", map[string]string{"user": "alice", "password": testPassword, "answer1": "Rex", "answer2": "Leeds", "answer3": "St Mary's"})
	ice := b.text("#ice-code")
	if !regexp.MustCompile(`^\d{8}$`).MatchString(ice) {
		t.Fatalf("no 8-digit emergency code on the page: %s", b.pageText())
	}
	b.shot("ice-code")
	b.open("/signin?with=ice")
	b.shot("signin-ice")
	b.fill("#signin-ice", map[string]string{"user": "alice", "password": testPassword, "emergency": ice})
	if !b.signedIn() {
		t.Fatalf("sign-in with the emergency code failed: %s", b.pageText())
	}
	b.submit("#signout")
	b.open("/signin?with=ice")
	b.fill("#signin-ice", map[string]string{"user": "alice", "password": testPassword, "emergency": ice})
	if f := b.flash(); !strings.Contains(strings.ToLower(f), wrongCredentials) {
		t.Fatalf("a spent emergency code: flash %q", f)
	}

	// Three wrong PINs on the portal lock nothing (they are throttled instead): bob's dsh
	// login works. Three on the command line lock the account, for the portal too.
	lb := a.newBrowser(t, "bob")
	for i := 0; i < 3; i++ {
		lb.signin("bob", testPassword, "0000", totpAt(t, a.bob.secret, time.Now()))
		if lb.signedIn() {
			t.Fatal("signed in with a wrong PIN")
		}
	}
	lb.shot("signin-refused-3")
	a.bob.login(t).ok(t)
	for i := 0; i < 3; i++ {
		a.dsh(uidBob, testPassword+"\n0000\n", "login", "--code", totpAt(t, a.bob.secret, time.Now())).fails(t, 2, "wrong user ID, password, PIN or code")
	}
	time.Sleep(1500 * time.Millisecond) // the portal's delay on bob's account after three failures
	lb.signin("bob", testPassword, testPIN, a.bob.nextCode(t))
	if f := lb.flash(); !strings.Contains(f, "locked until") || lb.signedIn() {
		t.Fatalf("after three command-line failures: flash %q, signed in %v", f, lb.signedIn())
	}
	lb.shot("locked")
}

// TestPortalShareManager: the IAO adds and removes a member on the Share Manager page and
// the member's access on the S mount follows at once; a new share can be created.
func TestPortalShareManager(t *testing.T) {
	a := newArrivalsEnv(t)
	checkPortalCert(t, a.env)
	s1 := filepath.Join(a.S, "s1")
	// bob is logged in (dsh login) but no member: he does not even see s1.
	a.shFails(t, uidBob, "ls "+s1, "No such file or directory")

	b := a.newBrowser(t, "iao")
	b.signin("iao", testPassword, testPIN, a.iao.nextCode(t))
	if !b.signedIn() {
		t.Fatalf("IAO sign-in failed: %s", b.pageText())
	}
	b.open("/shares")
	if txt := b.text("#share-s1"); !strings.Contains(txt, "alice") {
		t.Fatalf("share s1 without its member alice: %q", txt)
	}
	b.fill("#share-s1 form.add-member", map[string]string{"add-s1": "bob"})
	if f := b.flash(); !strings.Contains(f, "bob is now a read-write member of s1") {
		t.Fatalf("add member: flash %q", f)
	}
	b.shot("member-added")
	a.shOK(t, uidBob, "echo from-bob > "+s1+"/bob.txt && cat "+s1+"/bob.txt")

	b.submit(`#share-s1 button[aria-label="Remove bob from s1"]`)
	if f := b.flash(); !strings.Contains(f, "bob has been removed from s1") {
		t.Fatalf("remove member: flash %q", f)
	}
	a.shFails(t, uidBob, "ls "+s1, "No such file or directory")
	if strings.Contains(b.text("#share-s1"), "bob") {
		t.Fatal("bob still listed after his removal")
	}

	b.fill("form.create-share", map[string]string{"new-p1": "s2"})
	if f := b.flash(); !strings.Contains(f, "Share s2 created in project p1") {
		t.Fatalf("create share: flash %q", f)
	}
	if b.text("#share-s2") == "" {
		t.Fatalf("the new share is not listed: %s", b.pageText())
	}
	b.shot("shares")

	// Readable on a small screen: no page needs sideways scrolling on a phone.
	b.phone(true)
	for _, page := range []string{"/files", "/security", "/shares"} {
		b.open(page)
		if b.overflows() {
			t.Errorf("%s is wider than a 390-pixel phone screen", page)
		}
		b.shot("phone" + strings.ReplaceAll(page, "/", "-"))
	}
	b.phone(false)

	// A member who manages nothing sees no project, and cannot post to the manager's forms.
	mb := a.newBrowser(t, "alice")
	mb.signin("alice", testPassword, testPIN, a.alice.nextCode(t))
	mb.open("/shares")
	if mb.text("#no-projects") == "" {
		t.Fatalf("a plain member sees projects to manage: %s", mb.pageText())
	}
	csrf := eval[string](mb, `document.querySelector('input[name=csrf]').value`)
	status := eval[int](mb, `fetch('/shares/add', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'share=s1&user=dave&csrf=`+csrf+`', redirect: 'manual'}).then(function(r){return r.status})`)
	if status != 0 && status != 303 {
		t.Fatalf("a member's add-member post: status %d", status)
	}
	mb.open("/shares")
	if f := mb.flash(); !strings.Contains(strings.ToLower(f), "iao") && !strings.Contains(strings.ToLower(f), "forbidden") && !strings.Contains(f, "may not") {
		t.Fatalf("a member's add-member attempt: flash %q", f)
	}
	if out := a.iao.as("share", "members", "s1").ok(t).stdout; strings.Contains(out, "dave") {
		t.Fatalf("a plain member added dave: %q", out)
	}
}

// checkPortalCert: the portal serves the certificate made at init, whose public half is in
// the data folder; its private key is nowhere on disk in plaintext.
func checkPortalCert(t *testing.T, e *env) {
	t.Helper()
	conn, err := tls.Dial("tcp", e.portal, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to the portal: %v", err)
	}
	served := conn.ConnectionState().PeerCertificates[0].Raw
	conn.Close()
	b, err := os.ReadFile(filepath.Join(e.data, "portal-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || !bytes.Equal(blk.Bytes, served) {
		t.Fatal("the portal serves another certificate than DATA/portal-cert.pem")
	}
	err = filepath.WalkDir(e.data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a PEM private key in plaintext", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
