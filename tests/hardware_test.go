package tests

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"dsh/pskc/pskctest"
)

// The RFC 4226 secret ("12345678901234567890") as oathtool takes it, and RFC 6030's keys.
const (
	rfcSecretHex = "3132333435363738393031323334353637383930"
	rfcPSK       = "12345678901234567890123456789012"
	rfcMACKey    = "1122334455667788990011223344556677889900"
)

// Uids of the hardware tests' cast.
const (
	uidHWAlice = 2301 + iota
	uidHWBob
	uidHWCarol
)

// hotpAt is the HOTP code of the RFC secret at counter n with digits, from oathtool.
func hotpAt(t *testing.T, digits int, n int64) string {
	t.Helper()
	out, err := exec.Command(requireTool(t, "oathtool"), "--hotp", "-d", strconv.Itoa(digits), "-c", strconv.FormatInt(n, 10), rfcSecretHex).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool --hotp: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// totp8At is the code of an 8-digit, 60 s TOTP device with the RFC secret at time at.
func totp8At(t *testing.T, at time.Time) string {
	t.Helper()
	out, err := exec.Command(requireTool(t, "oathtool"), "--totp", "-d", "8", "-s", "60", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), rfcSecretHex).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool --totp: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// rootFile writes a file only root can read, as a vendor's seed file is kept.
func (e *env) rootFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// seedEncodings are the ways the RFC secret could leak into a log, an error or a message.
func seedEncodings() []string {
	s := []byte("12345678901234567890")
	return []string{rfcSecretHex, base64.StdEncoding.EncodeToString(s), base32.StdEncoding.EncodeToString(s)[:32], "12345678901234567890"}
}

// noSeed fails if text holds the RFC secret in any encoding.
func noSeed(t *testing.T, where, text string) {
	t.Helper()
	for _, enc := range seedEncodings() {
		if strings.Contains(strings.ToLower(text), strings.ToLower(enc)) {
			t.Fatalf("%s holds the seed (%s)", where, enc)
		}
	}
}

// TestHardwareTokensCLI: the operator imports RFC 6030's encrypted figure 6 and a CSV,
// assigns a device; its owner sets the PIN from a session and logs in with oathtool's
// HOTP codes through the look-ahead window; replays are refused; the owner and the
// operator resynchronise it; a time-based device with its own step and digits gets its
// PIN at enrolment; lost devices are revoked by owner and operator, and ICE covers "I
// don't have my hard token". No seed ever reaches the audit log, the daemon's log or an
// error.
func TestHardwareTokensCLI(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	alice := e.newPerson(t, "alice", uidHWAlice)

	fig6, err := os.ReadFile("../pskc/testdata/rfc6030-figure6.xml")
	if err != nil {
		t.Fatal(err)
	}
	seedFile := e.rootFile(t, "figure6.xml", fig6)
	keyFile := e.rootFile(t, "psk.hex", []byte(rfcPSK+"\n"))
	wrongKey := e.rootFile(t, "wrong.hex", []byte(strings.Replace(rfcPSK, "1", "2", 1)+"\n"))
	tampered := e.rootFile(t, "tampered.xml", pskctest.ReplaceFirst(fig6, "Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Tu+NvtQfmvfJzF6bmQiJqoLRExc="))

	// Refusals first: a user cannot import; a file without its key, with the wrong key, or
	// changed since the vendor made it is refused whole, with a clear error.
	world := filepath.Join(e.dir, "world.xml")
	if err := os.WriteFile(world, fig6, 0o644); err != nil {
		t.Fatal(err)
	}
	alice.as("token", "import", world).fails(t, 2, "operator")
	e.dsh(0, "", "token", "import", seedFile).fails(t, 2, "give it with --key-file")
	e.dsh(0, "", "token", "import", seedFile, "--key-file", wrongKey).fails(t, 2, "does not authenticate with this key")
	e.dsh(0, "", "token", "import", tampered, "--key-file", keyFile).fails(t, 2, "was changed")
	if out := e.dsh(0, "", "token", "pool").ok(t).stdout; strings.Contains(out, "987654321") {
		t.Fatalf("a refused file left a token in the pool:\n%s", out)
	}
	e.dsh(0, "", "token", "import", seedFile, "--key-file", keyFile).ok(t)
	r := e.dsh(0, "", "token", "import", seedFile, "--key-file", keyFile).ok(t)
	if !strings.Contains(r.stdout, "imported 0") || !strings.Contains(r.stdout, "skipped: 987654321") {
		t.Fatalf("a second import: %s", r.stdout)
	}
	csv := e.rootFile(t, "vendor.csv", []byte("# serial, seed, type, digits, step\nTOTP8,"+rfcSecretHex+",totp,8,60\nSPARE1,base32:"+
		base32.StdEncoding.EncodeToString([]byte("another secret of 20"))+",hotp,6\n"))
	e.dsh(0, "", "token", "import", csv).ok(t)
	pool := e.dsh(0, "", "token", "pool").ok(t).stdout
	for _, want := range []string{"987654321", "HOTP 8 digits", "TOTP8", "TOTP 8 digits, 60 s", "SPARE1", "free"} {
		if !strings.Contains(pool, want) {
			t.Fatalf("pool lacks %q:\n%s", want, pool)
		}
	}

	// Assignment: only the operator; the owner sets the PIN from a session.
	alice.as("token", "assign", "987654321", "--user", "alice").fails(t, 2, "operator")
	e.dsh(0, "", "token", "assign", "987654321", "--user", "nobody").fails(t, 2, "not found")
	e.dsh(0, "", "token", "assign", "987654321", "--user", "alice").ok(t)
	e.dsh(0, "", "token", "assign", "987654321", "--user", "alice").fails(t, 2, "assigned (alice)")
	if out := e.dsh(0, "", "token", "pool").ok(t).stdout; !strings.Contains(out, "assigned (no PIN yet)") {
		t.Fatalf("pool after assign:\n%s", out)
	}
	hwLogin := func(code string) result {
		return e.dsh(uidHWAlice, testPassword+"\n1357\n", "login", "--code", code)
	}
	hwLogin(hotpAt(t, 8, 0)).fails(t, 2, "wrong user ID, password, PIN or code") // no PIN yet
	alice.login(t).ok(t)
	e.dsh(uidHWAlice, "1357\n", "token", "set-pin", "987654321").ok(t)
	list := alice.as("token", "list").ok(t).stdout
	if !strings.Contains(list, "hotp, hardware, 8 digits") || !strings.Contains(list, "  totp  ") {
		t.Fatalf("token list:\n%s", list)
	}
	alice.as("logout").ok(t)

	// HOTP codes from oathtool: accepted once, in order, within the window of 10.
	hwLogin(hotpAt(t, 8, 0)).ok(t)
	hwLogin(hotpAt(t, 8, 0)).fails(t, 2, "wrong user ID, password, PIN or code")
	hwLogin(hotpAt(t, 8, 4)).ok(t)                                               // three presses lost
	hwLogin(hotpAt(t, 8, 2)).fails(t, 2, "wrong user ID, password, PIN or code") // behind the counter
	hwLogin(hotpAt(t, 8, 30)).fails(t, 2, "wrong user ID, password, PIN or code")
	// Pressed far ahead: the owner resynchronises with two consecutive codes.
	alice.as("token", "resync", "987654321", "--code1", hotpAt(t, 8, 40), "--code2", hotpAt(t, 8, 42)).fails(t, 2, "not consecutive")
	alice.as("token", "resync", "987654321", "--code1", hotpAt(t, 8, 40), "--code2", hotpAt(t, 8, 41)).ok(t)
	hwLogin(hotpAt(t, 8, 41)).fails(t, 2, "wrong")
	hwLogin(hotpAt(t, 8, 42)).ok(t)
	// The service desk does it for a user who reads the codes out.
	e.dsh(0, "", "token", "resync", "987654321", "--code1", hotpAt(t, 8, 300), "--code2", hotpAt(t, 8, 301)).ok(t)
	hwLogin(hotpAt(t, 8, 302)).ok(t)
	audit := e.dsh(0, "", "audit", "show").ok(t).stdout
	if !strings.Contains(audit, "code replayed") {
		t.Fatalf("the replayed HOTP code is not in the audit log")
	}

	// A time-based device with its own step and digits, assigned before its owner
	// enrols: enrolment sets its PIN with one of its codes, and makes no soft token.
	e.dsh(0, "", "token", "assign", "TOTP8", "--user", "bob").fails(t, 2, "not found")
	code := enrolmentCode(t, e.dsh(0, "", "user", "create", "bob", "--uid", itoa(uidHWBob), "--email", "bob@example.ac.uk").ok(t).stdout)
	e.dsh(0, "", "token", "assign", "TOTP8", "--user", "bob").ok(t)
	// Keep clear of a 60 s step boundary, so oathtool and the daemon agree on "now".
	if s := time.Now().Unix() % 60; s > 50 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	q := e.questionsFile(t, uidHWBob, "q-bob", testAnswers)
	now := time.Now()
	out := e.dsh(uidHWBob, testPassword+"\n2580\n", "enroll", "--code", code, "--questions-file", q, "--token-code", totp8At(t, now)).ok(t).stdout
	if !strings.Contains(out, "PIN of hardware token TOTP8") || strings.Contains(out, "otpauth://") {
		t.Fatalf("a hardware enrolment:\n%s", out)
	}
	bobLogin := func(at time.Time) result {
		return e.dsh(uidHWBob, testPassword+"\n2580\n", "login", "--code", totp8At(t, at))
	}
	bobLogin(now).fails(t, 2, "wrong")                  // spent by the enrolment
	bobLogin(now.Add(time.Minute)).ok(t)                // the device's next step
	bobLogin(now.Add(time.Minute)).fails(t, 2, "wrong") // once
	bobLogin(now.Add(3*time.Minute)).fails(t, 2, "wrong")
	e.dsh(uidHWBob, "", "token", "list").ok(t)

	// Lost devices: the owner revokes hers; the operator revokes bob's by serial.
	alice.as("token", "revoke", "987654321").ok(t) // in the session of her last login
	alice.as("logout").ok(t)
	hwLogin(hotpAt(t, 8, 303)).fails(t, 2, "wrong")
	e.dsh(0, "", "token", "assign", "987654321", "--user", "alice").fails(t, 2, "revoked")
	e.dsh(0, "", "token", "revoke", "TOTP8").ok(t)
	bobLogin(now.Add(2*time.Minute)).fails(t, 2, "wrong")
	pool = e.dsh(0, "", "token", "pool").ok(t).stdout
	if strings.Count(pool, "revoked") != 2 {
		t.Fatalf("pool after the revocations:\n%s", pool)
	}
	// "I don't have my hard token": the ICE flow gets bob in, and he makes a soft token.
	iceOut := e.dsh(uidHWBob, testPassword+"\n", "ice", "--user", "bob", "--questions-file", q).ok(t).stdout
	m := iceCodeLine.FindStringSubmatch(iceOut)
	if m == nil {
		t.Fatalf("no emergency code: %s", iceOut)
	}
	e.dsh(uidHWBob, testPassword+"\n", "login", "--emergency-code", m[1]).ok(t)
	e.dsh(uidHWBob, "1111\n", "token", "create").ok(t)

	// A device given back in working order goes back to the pool.
	e.dsh(0, "", "token", "assign", "SPARE1", "--user", "alice").ok(t)
	e.dsh(0, "", "token", "unassign", "SPARE1").ok(t)
	if out := e.dsh(0, "", "token", "pool").ok(t).stdout; !strings.Contains(out, "SPARE1") || !strings.Contains(out, "free") {
		t.Fatalf("pool after unassign:\n%s", out)
	}

	audit = e.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{"token.hardware.import", "token.hardware.assign", "token.set-pin", "token.resync", "token.hardware.resync",
		"token.enrol", "token.revoke", "token.hardware.revoke", "token.hardware.unassign"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	e.dsh(0, "", "audit", "verify").ok(t)
	noSeed(t, "the audit log", audit)
	noSeed(t, "the daemon's log", e.serverLog())
	noSeed(t, "the metrics", e.scrape())
	noSeed(t, "the pool listing", pool)
	if strings.Contains(audit, rfcPSK) || strings.Contains(e.serverLog(), rfcPSK) || strings.Contains(audit, hex.EncodeToString([]byte(rfcMACKey))) {
		t.Fatal("the pre-shared key reached a log")
	}
}
