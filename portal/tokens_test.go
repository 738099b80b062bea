package portal

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"dsh/control"
)

// TestHardwareTokensOnSecurityPage: My tokens shows a hardware token with its type and
// PIN state, asks for the PIN of one that has none, and offers resync for hardware only.
func TestHardwareTokensOnSecurityPage(t *testing.T) {
	e := newEnv(t, true)
	e.fake.tokens = []control.TokenView{
		{ID: "tok-1", Kind: "totp", Created: e.clock.Now(), PINSet: true},
		{ID: "OATH0001", Kind: "hotp", Hardware: true, Digits: 8, Created: e.clock.Now()},
		{ID: "TOTP0002", Kind: "totp", Hardware: true, Digits: 6, Period: 60, Created: e.clock.Now(), PINSet: true},
	}
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	r := b.get("/security")
	wantStatus(t, "GET /security", r, http.StatusOK)
	for _, s := range []string{"My tokens", "<strong>OATH0001</strong>", "Hardware HOTP, 8 digits, press the button", "Hardware TOTP, 6 digits, every 60 s",
		"Soft token (TOTP, app)", "<strong>not set yet</strong>", `id="needs-pin"`, `id="token-resync"`,
		`<option value="OATH0001" selected>OATH0001 (hardware)</option>`} {
		if !strings.Contains(r.body, s) {
			t.Errorf("the security page lacks %q", s)
		}
	}
	resync := r.body[strings.Index(r.body, `id="token-resync"`):]
	resync = resync[:strings.Index(resync, "</form>")]
	if strings.Contains(resync, "tok-1") {
		t.Error("the resync form offers a soft token")
	}

	r = b.post("/security/tokens/resync", withCSRF(url.Values{"token": {"OATH0001"}, "code1": {" 12345678"}, "code2": {"23456789 "}}, csrf), nil)
	wantRedirect(t, "resync", r, "/security")
	if c := e.fake.callsOf("ResyncToken"); len(c) != 1 || c[0].Caller.UID != 1001 || c[0].Args[0] != "OATH0001" || c[0].Args[1] != "12345678" || c[0].Args[2] != "23456789" {
		t.Fatalf("ResyncToken calls %+v", c)
	}
	if f := flashOf(b.get("/security").body); f != "Token OATH0001 is in step again." {
		t.Errorf("message after resync %q", f)
	}

	// Without a hardware token there is no resync form and no PIN warning.
	e.fake.tokens = e.fake.tokens[:1]
	r = b.get("/security")
	if strings.Contains(r.body, `id="token-resync"`) || strings.Contains(r.body, `id="needs-pin"`) {
		t.Error("resync or PIN warning shown without a hardware token")
	}
}

// TestClaimPage: the page an e-mailed link opens asks for the password and the new PIN;
// it shows the QR code once, checks its CSRF token, refuses mismatched PINs without asking
// the daemon, never puts the link's code in the page's URL, and wipes what it handed on.
func TestClaimPage(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	r := b.get("/claim")
	wantStatus(t, "GET /claim", r, http.StatusOK)
	for _, s := range []string{`id="claim-form"`, `src="/static/claim.js"`, `id="claim-code"`, "PIN for the new token"} {
		if !strings.Contains(r.body, s) {
			t.Errorf("the claim page lacks %q", s)
		}
	}
	csrf := csrfOf(t, r.body)
	form := func(code, pin2 string) url.Values {
		return url.Values{"csrf": {csrf}, "user": {"alice"}, "code": {code}, "password": {fakePassword}, "pin": {"1357"}, "pin2": {pin2}}
	}
	// Without the form's CSRF token: refused, the daemon is never asked.
	bad := form(fakeLinkCode, "1357")
	bad.Set("csrf", "forged")
	wantStatus(t, "claim without CSRF", b.post("/claim", bad, nil), http.StatusForbidden)
	r = b.post("/claim", form(fakeLinkCode, "7531"), nil)
	wantStatus(t, "mismatched PINs", r, http.StatusBadRequest)
	if n := e.fake.count("ClaimTokenLink"); n != 0 {
		t.Fatalf("the daemon was asked %d times before the form was right", n)
	}
	r = b.post("/claim", form("WRONGWRONGWRONGWRONG", "1357"), nil)
	wantStatus(t, "a wrong code", r, http.StatusUnauthorized)
	if !strings.Contains(r.body, "Wrong user ID, password, PIN or code") || strings.Contains(r.body, `id="qr"`) {
		t.Fatalf("a wrong code: %s", r.body)
	}
	// Lower case and spaces are forgiven: the code is read as the mail shows it.
	r = b.post("/claim", form(" "+strings.ToLower(fakeLinkCode)+" ", "1357"), nil)
	wantStatus(t, "claim", r, http.StatusOK)
	for _, s := range []string{"Token tok-mail is ready", `src="data:image/png;base64,iVBORw0KGgo`, "secret=JBSWY3DPEHPK3PXP", `href="/signin"`} {
		if !strings.Contains(r.body, s) {
			t.Errorf("the new token page lacks %q", s)
		}
	}
	c := e.fake.callsOf("ClaimTokenLink")
	if len(c) != 2 || c[1].Caller.UID != 1001 || c[1].Caller.Remote == "" || c[1].Args[1] != fakeLinkCode {
		t.Fatalf("ClaimTokenLink calls %+v", c)
	}
	// Once only: the same link again is refused.
	wantStatus(t, "the link again", b.post("/claim", form(fakeLinkCode, "1357"), nil), http.StatusUnauthorized)
	for i, s := range e.fake.secrets {
		if strings.Trim(string(s), "\x00") != "" {
			t.Errorf("secret %d handed to the daemon was not wiped", i)
		}
	}
	if strings.Contains(e.logs.String(), fakeLinkCode) || strings.Contains(e.logs.String(), fakePassword) {
		t.Error("the link's code or the password is in the log")
	}
}
