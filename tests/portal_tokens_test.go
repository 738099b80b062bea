package tests

import (
	"net/url"
	"strings"
	"testing"
)

const uidWebAlice = 2501

// TestPortalHardwareTokenAndMailedLink: in Chromium, My tokens shows a hardware token
// assigned by the operator and asks for its PIN; with the PIN set, the user signs in with
// the device's HOTP code, sees it listed as used, and resynchronises it; then the operator
// e-mails a soft token, and the link from the message opens the portal page that takes
// the password and the new PIN and shows the QR code once.
func TestPortalHardwareTokenAndMailedLink(t *testing.T) {
	e := newEnv(t)
	rl := e.startRelay(t)
	e.start(true, rl.args...)
	alice := e.newPerson(t, "alice", uidWebAlice)
	csv := e.rootFile(t, "devices.csv", []byte("serial,seed,type,digits\nOATH0001,"+rfcSecretHex+",hotp,8\n"))
	e.dsh(0, "", "token", "import", csv).ok(t)
	e.dsh(0, "", "token", "assign", "OATH0001", "--user", "alice").ok(t)
	assigned := rl.find(t, "alice@example.ac.uk", "A hardware token was assigned to you")
	checkMessage(t, assigned, alice.secret)
	noSeed(t, "the assignment notice", assigned.Body())
	if !strings.Contains(assigned.Body(), "https://"+e.portal+"/security") {
		t.Fatalf("the assignment notice does not link to the portal:\n%s", assigned.Body())
	}

	b := e.newBrowser(t, "alice")
	b.signin("alice", testPassword, testPIN, alice.nextCode(t))
	if !b.signedIn() {
		t.Fatalf("sign-in with the soft token failed: %s", b.pageText())
	}
	b.open("/security")
	tokens := b.text("#tokens")
	if !strings.Contains(tokens, "OATH0001") || !strings.Contains(tokens, "Hardware HOTP, 8 digits") || !strings.Contains(tokens, "not set yet") {
		t.Fatalf("My tokens before the PIN:\n%s", tokens)
	}
	if b.text("#needs-pin") == "" {
		t.Fatal("no request to set the hardware token's PIN")
	}
	b.shot("hardware-token-no-pin")
	// The PIN form has the device selected already.
	if v := eval[string](b, `document.getElementById('pin-token').value`); v != "OATH0001" {
		t.Fatalf("the PIN form selects %q", v)
	}
	b.fill("#token-pin", map[string]string{"pin-pin": "1357", "pin-pin2": "1357"})
	if f := b.flash(); f != "Token OATH0001 has a new PIN." {
		t.Fatalf("after setting the PIN: %q", f)
	}
	b.submit("#signout")

	// Sign in with the device: password, its PIN and an 8-digit code from oathtool.
	b.signin("alice", testPassword, "1357", hotpAt(t, 8, 0))
	if !b.signedIn() || b.path() != "/files" {
		t.Fatalf("sign-in with the hardware token: %s\n%s", b.path(), b.pageText())
	}
	b.open("/security")
	tokens = b.text("#tokens")
	row := eval[string](b, `(function(){var r=document.querySelector('#tokens tr.hardware');return r?r.innerText:""})()`)
	if !strings.Contains(row, "OATH0001") || !strings.Contains(row, "set") || strings.Contains(row, "never") || strings.Contains(row, "not set") {
		t.Fatalf("the hardware token's row after a sign-in with it: %q\n%s", row, tokens)
	}
	if b.text("#needs-pin") != "" {
		t.Fatal("still asked for the PIN")
	}
	b.shot("hardware-token")
	// Readable on a phone too: the wider table needs no sideways scrolling.
	b.phone(true)
	b.open("/security")
	if b.overflows() {
		t.Error("My tokens is wider than a 390-pixel phone screen")
	}
	b.shot("phone-hardware-token")
	b.phone(false)
	b.open("/security")
	// The same code in another browser is a replay.
	other := e.newBrowser(t, "replay")
	other.signin("alice", testPassword, "1357", hotpAt(t, 8, 0))
	if other.signedIn() || !strings.Contains(strings.ToLower(other.flash()), wrongCredentials) {
		t.Fatalf("a replayed HOTP code signed in: %q", other.flash())
	}
	// Pressed far ahead: resync on the page.
	b.fill("#token-resync", map[string]string{"resync-code1": hotpAt(t, 8, 60), "resync-code2": hotpAt(t, 8, 61)})
	if f := b.flash(); f != "Token OATH0001 is in step again." {
		t.Fatalf("after resync: %q", f)
	}
	b.shot("hardware-token-resynced")
	other.signin("alice", testPassword, "1357", hotpAt(t, 8, 62))
	if !other.signedIn() {
		t.Fatalf("sign-in after resync: %s", other.pageText())
	}

	// A soft token by e-mail: the link opens the portal's page with the code filled in.
	e.dsh(0, "", "token", "send", "alice").ok(t)
	m := rl.find(t, "alice@example.ac.uk", "Your Token (MobileID)")
	checkMessage(t, m, alice.secret)
	link := linkLine.FindString(m.Body())
	if link == "" {
		t.Fatalf("no link in:\n%s", m.Body())
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	fresh := e.newBrowser(t, "mailed link")
	fresh.open(u.Path + "#" + u.Fragment)
	if got := eval[string](fresh, `document.getElementById('claim-code').value`); got == "" || !strings.Contains(link, got) {
		t.Fatalf("the page did not take the code from the link: %q", got)
	}
	if got := eval[string](fresh, `document.getElementById('claim-user').value`); got != "alice" {
		t.Fatalf("the page did not take the user from the link: %q", got)
	}
	// The fragment is gone from the address bar and the history.
	if h := eval[string](fresh, `location.hash`); h != "" {
		t.Fatalf("the link's code is still in the address bar: %q", h)
	}
	fresh.shot("mailed-link")
	fresh.fill("#claim-form", map[string]string{"claim-password": "not the password", "claim-pin": "8642", "claim-pin2": "8642"})
	if f := fresh.flash(); !strings.Contains(strings.ToLower(f), wrongCredentials) {
		t.Fatalf("a wrong password on the link's page: %q", f)
	}
	// (From another page: opening the link on /claim itself would only move its fragment.)
	fresh.open("/signin")
	fresh.open(u.Path + "#" + u.Fragment)
	fresh.fill("#claim-form", map[string]string{"claim-password": testPassword, "claim-pin": "8642", "claim-pin2": "8642"})
	if ok := eval[bool](fresh, `(function(){var i=document.getElementById('qr');return !!i && i.naturalWidth > 0})()`); !ok {
		t.Fatalf("no QR code after the link: %s", fresh.pageText())
	}
	raw := eval[string](fresh, `document.getElementById('otpauth').value`)
	tu, err := url.Parse(otpauthURL.FindString(raw))
	if err != nil || tu.Query().Get("secret") == "" {
		t.Fatalf("no otpauth URL on the page: %q", raw)
	}
	fresh.shot("mailed-token-qr")
	mailed := &person{e: e, id: "alice", uid: uidWebAlice, secret: tu.Query().Get("secret")}
	if strings.Contains(m.Body(), mailed.secret) {
		t.Fatal("the e-mail held the token's secret")
	}
	// Shown once: the link does not work again.
	fresh.open("/signin")
	fresh.open(u.Path + "#" + u.Fragment)
	fresh.fill("#claim-form", map[string]string{"claim-password": testPassword, "claim-pin": "8642", "claim-pin2": "8642"})
	if fresh.text("#qr") != "" || !strings.Contains(strings.ToLower(fresh.flash()), wrongCredentials) {
		t.Fatalf("the link worked twice: %s", fresh.pageText())
	}
	// The new token signs in.
	fresh.signin("alice", testPassword, "8642", mailed.nextCode(t))
	if !fresh.signedIn() {
		t.Fatalf("sign-in with the mailed token: %s", fresh.pageText())
	}
	checkMessage(t, rl.find(t, "alice@example.ac.uk", "A new soft token"), alice.secret, mailed.secret)
	audit := e.dsh(0, "", "audit", "show").ok(t).stdout
	if !strings.Contains(audit, "token.link.claim") || !strings.Contains(audit, "via portal 127.0.0.1") {
		t.Fatal("the claim on the portal is not in the audit log")
	}
}
