package token

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"dsh/pskc"
)

// rfc4226 are the HOTP values of RFC 4226 appendix D for the ASCII secret
// "12345678901234567890", counters 0 to 9.
var rfc4226 = []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}

const rfcSecret = "12345678901234567890"

// hw is a hardware token record for code computations in tests.
func hw(kind string, digits, period int, algo string) tokenRecord {
	return tokenRecord{ID: "HW1", Serial: "HW1", Kind: kind, Digits: digits, Period: period, Algo: algo}
}

func rfcB32() string { return b32.EncodeToString([]byte(rfcSecret)) }

// oathtool finds oathtool; missing under CI fails (make test installs it), elsewhere skips.
func oathtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("oathtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("oathtool is missing; make test installs it (scripts/deps.sh)")
		}
		t.Skip("oathtool is missing; run make test, which installs it")
	}
	return p
}

// TestHOTPVectors: the codes of RFC 4226 appendix D, and the same from oathtool --hotp,
// in 6 and 8 digits.
func TestHOTPVectors(t *testing.T) {
	tok := hw(kindHOTP, 6, 0, "")
	for i, want := range rfc4226 {
		got, err := tok.codeAt(rfcB32(), int64(i))
		if err != nil || got != want {
			t.Fatalf("counter %d: %q, %v; RFC 4226 says %s", i, got, err, want)
		}
	}
	oath := oathtool(t)
	for _, digits := range []int{6, 8} {
		tok := hw(kindHOTP, digits, 0, "")
		out, err := exec.Command(oath, "--hotp", "-d", strconv.Itoa(digits), "-c", "0", "-w", "9", "3132333435363738393031323334353637383930").CombinedOutput()
		if err != nil {
			t.Fatalf("oathtool: %v: %s", err, out)
		}
		lines := strings.Fields(string(out))
		if len(lines) != 10 {
			t.Fatalf("oathtool printed %q", out)
		}
		for i, want := range lines {
			if got, _ := tok.codeAt(rfcB32(), int64(i)); got != want {
				t.Fatalf("%d digits, counter %d: %s, oathtool says %s", digits, i, got, want)
			}
			if digits == 6 && want != rfc4226[i] {
				t.Fatalf("oathtool disagrees with RFC 4226 at %d", i)
			}
		}
	}
	// A time-based device with its own step, digits and hash, against oathtool --totp.
	tok = hw(kindTOTP, 8, 60, "SHA256")
	at := time.Unix(1_800_000_015, 0)
	out, err := exec.Command(oath, "--totp=sha256", "-d", "8", "-s", "60", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), "3132333435363738393031323334353637383930").CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool --totp: %v: %s", err, out)
	}
	if got, _ := tok.codeAt(rfcB32(), at.Unix()/60); got != strings.TrimSpace(string(out)) {
		t.Fatalf("TOTP SHA256 8 digits 60 s: %s, oathtool says %s", got, out)
	}
}

// importRFC imports RFC 6030 figure 5 (an 8-digit HOTP device, serial 987654321, the RFC
// 4226 secret) and a 6-digit HOTP and a TOTP device of the same secret.
func (e *env) importRFC(t *testing.T) ImportResult {
	t.Helper()
	doc, err := os.ReadFile("../pskc/testdata/rfc6030-figure5.xml")
	if err != nil {
		t.Fatal(err)
	}
	seeds, err := pskc.ParsePSKC(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	more, err := pskc.ParseCSV([]byte("HOTP6," + rfcB32() + ",hotp,6\nTOTP8,3132333435363738393031323334353637383930,totp,8,60\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.ImportHardware(ctx, 0, "rfc", append(seeds, more...))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// hotpCode is the code of the RFC secret at counter n with digits.
func hotpCode(t *testing.T, digits int, n int64) string {
	t.Helper()
	tok := hw(kindHOTP, digits, 0, "")
	c, err := tok.codeAt(rfcB32(), n)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) pool(t *testing.T, serial string) HardwareInfo {
	t.Helper()
	hs, err := e.svc.ListHardware(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Serial == serial {
			return h
		}
	}
	t.Fatalf("%s not in the pool", serial)
	return HardwareInfo{}
}

// TestHardwareHOTPLoginWindowReplayResync: a device from the pool, assigned, its PIN set
// from a session, then logins through the look-ahead window, replays and codes behind the
// counter refused, and resynchronisation from two consecutive codes.
func TestHardwareHOTPLoginWindowReplayResync(t *testing.T) {
	e := newEnv(t)
	soft := e.enrol(t, "alice", aliceUID)
	res := e.importRFC(t)
	if strings.Join(res.Imported, ",") != "987654321,HOTP6,TOTP8" || len(res.Skipped) != 0 {
		t.Fatalf("import: %+v", res)
	}
	if again := e.importRFC(t); len(again.Imported) != 0 || len(again.Skipped) != 3 {
		t.Fatalf("a second import of the same file: %+v", again)
	}
	if h := e.pool(t, "987654321"); h.State != PoolFree || h.Kind != "hotp" || h.Digits != 8 || h.Manufacturer != "Manufacturer" {
		t.Fatalf("pool: %+v", h)
	}
	if err := e.svc.AssignHardware(ctx, 0, "987654321", "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("assign to an unknown user: %v", err)
	}
	if err := e.svc.AssignHardware(ctx, 0, "987654321", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.AssignHardware(ctx, 0, "987654321", "bob"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "assigned (alice)") {
		t.Fatalf("assign twice: %v", err)
	}
	if len(e.notes.of(EventHardwareAdded, "alice")) != 1 {
		t.Fatal("alice was not told of her new device")
	}
	login := func(code string) error {
		_, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), code)
		return err
	}
	// Without a PIN the device's codes are worth nothing, and nothing is spent.
	if err := login(hotpCode(t, 8, 0)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("login before the PIN is set: %v", err)
	}
	if err := e.login(soft, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPIN(ctx, aliceUID, "987654321", []byte(alicePIN)); err != nil {
		t.Fatal(err)
	}
	toks, err := e.svc.ListTokens(ctx, aliceUID)
	if err != nil || len(toks) != 2 {
		t.Fatalf("tokens %+v, %v", toks, err)
	}
	for _, tk := range toks {
		if tk.ID == "987654321" && (!tk.Hardware || tk.Kind != "hotp" || tk.Digits != 8 || !tk.PINSet) {
			t.Fatalf("hardware token listed as %+v", tk)
		}
	}
	if err := login(hotpCode(t, 8, 0)); err != nil {
		t.Fatalf("counter 0: %v", err)
	}
	if err := login(hotpCode(t, 8, 0)); !errors.Is(err, ErrUnauthorized) || !e.aud.has("token.login.token", "denied", reasonBadCredentials) {
		t.Fatalf("replay of counter 0: %v", err)
	}
	// Presses that never reached dsh: counter 5 is inside the window of 10.
	if err := login(hotpCode(t, 8, 5)); err != nil {
		t.Fatalf("counter 5: %v", err)
	}
	// Behind the counter now: refused, though never used.
	if err := login(hotpCode(t, 8, 3)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("counter 3 after 5: %v", err)
	}
	// Past the window (the next expected is 6, the window ends at 15).
	if err := login(hotpCode(t, 8, 16)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("counter 16: %v", err)
	}
	if err := login(hotpCode(t, 8, 15)); err != nil {
		t.Fatalf("counter 15, the window's end: %v", err)
	}
	// The device was pressed 500 times away from dsh: resync from two consecutive codes.
	if err := e.svc.ResyncToken(ctx, aliceUID, "987654321", hotpCode(t, 8, 516), hotpCode(t, 8, 518)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("resync with codes that are not consecutive: %v", err)
	}
	if err := e.svc.ResyncToken(ctx, aliceUID, "987654321", hotpCode(t, 8, 516), hotpCode(t, 8, 517)); err != nil {
		t.Fatal(err)
	}
	if err := login(hotpCode(t, 8, 517)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a resync code used again to log in: %v", err)
	}
	if err := e.svc.ResyncToken(ctx, aliceUID, "987654321", hotpCode(t, 8, 516), hotpCode(t, 8, 517)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("resync codes replayed: %v", err)
	}
	if err := login(hotpCode(t, 8, 518)); err != nil {
		t.Fatalf("after resync: %v", err)
	}
	// Beyond the sync window nothing is found.
	if err := e.svc.ResyncHardware(ctx, 0, "987654321", hotpCode(t, 8, 519+DefaultSyncWindow), hotpCode(t, 8, 520+DefaultSyncWindow)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("resync beyond the window: %v", err)
	}
	if err := e.svc.ResyncHardware(ctx, 0, "987654321", hotpCode(t, 8, 600), hotpCode(t, 8, 601)); err != nil {
		t.Fatalf("operator resync: %v", err)
	}
	if !e.aud.has("token.hardware.resync", "ok", "") || !e.aud.has("token.resync", "ok", "") {
		t.Fatal("resyncs not audited")
	}
	if err := e.svc.ResyncToken(ctx, aliceUID, e.softID(t), "123456", "654321"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("resync of a soft token: %v", err)
	}
	// Only digits, of one length.
	if err := e.svc.ResyncToken(ctx, aliceUID, "987654321", "12345678", "1234567"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("codes of two lengths: %v", err)
	}
}

// softID is the ID of alice's soft token.
func (e *env) softID(t *testing.T) string {
	t.Helper()
	toks, err := e.svc.ListTokens(ctx, aliceUID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		if !tk.Hardware {
			return tk.ID
		}
	}
	t.Fatal("no soft token")
	return ""
}

// TestHardwareTOTPOwnStepAndDrift: a time-based device with 8 digits and a 60 s step; a
// code is accepted once per step; a device whose clock ran ahead is brought back by resync,
// and its drift is kept for the next logins.
func TestHardwareTOTPOwnStepAndDrift(t *testing.T) {
	e := newEnv(t)
	soft := e.enrol(t, "alice", aliceUID)
	e.importRFC(t)
	if err := e.svc.AssignHardware(ctx, 0, "TOTP8", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.login(soft, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPIN(ctx, aliceUID, "TOTP8", []byte(alicePIN)); err != nil {
		t.Fatal(err)
	}
	dev := hw(kindTOTP, 8, 60, "")
	code := func(offset time.Duration) string {
		c, err := dev.codeAt(rfcB32(), e.clk.now().Add(offset).Unix()/60)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	login := func(c string) error {
		_, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), c)
		return err
	}
	if err := login(code(0)); err != nil {
		t.Fatal(err)
	}
	if err := login(code(0)); !errors.Is(err, ErrUnauthorized) || !e.aud.has("token.login.token", "denied", reasonReplay) {
		t.Fatalf("replay in the same step: %v", err)
	}
	// 30 s later is the same 60 s step: still refused.
	e.clk.add(30 * time.Second)
	if err := login(code(0)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("the same step 30 s later: %v", err)
	}
	e.clk.add(60 * time.Second)
	if err := login(code(0)); err != nil {
		t.Fatalf("next step: %v", err)
	}
	// The device's clock runs 10 minutes ahead: its codes fall outside ±1 step.
	e.clk.add(2 * time.Minute)
	ahead := 10 * time.Minute
	if err := login(code(ahead)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a drifted device: %v", err)
	}
	c1 := code(ahead)
	c2 := code(ahead + time.Minute)
	if err := e.svc.ResyncToken(ctx, aliceUID, "TOTP8", c1, c2); err != nil {
		t.Fatal(err)
	}
	// Two minutes on, the device (still 10 minutes ahead) gives codes dsh accepts.
	e.clk.add(2 * time.Minute)
	if err := login(code(ahead)); err != nil {
		t.Fatalf("after resync, the drift is kept: %v", err)
	}
	// A 6-digit code cannot come from an 8-digit device.
	if err := login(code(ahead)[:6]); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("6 digits of an 8-digit device: %v", err)
	}
}

// TestHardwareLoginCostsTheSame: whatever token a user holds (soft, hardware HOTP, a
// hardware token without a PIN, none), a login does one password and one PIN hash.
func TestHardwareLoginCostsTheSame(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	e.importRFC(t)
	e.dir.users = append(e.dir.users, dirUser{id: "hana", uid: 1006, active: true}, dirUser{id: "ivo", uid: 1007, active: true})
	hanaSoft := e.enrol(t, "hana", 1006)
	e.enrol(t, "ivo", 1007)
	// hana holds a hardware HOTP device with its PIN set; ivo holds a device without a PIN
	// beside his soft token.
	for _, a := range []struct {
		serial, user string
	}{{"987654321", "hana"}, {"HOTP6", "ivo"}} {
		if err := e.svc.AssignHardware(ctx, 0, a.serial, a.user); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Login(ctx, 1006, "", []byte(alicePW), []byte(alicePIN), e.codeAt(t, hanaSoft, 0)); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPIN(ctx, 1006, "987654321", []byte(alicePIN)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		uid  int
		code string
	}{
		{"soft token, wrong code", aliceUID, "000000"},
		{"hardware HOTP, wrong code", 1006, "00000000"},
		{"hardware HOTP, right code, wrong PIN", 1006, hotpCode(t, 8, 0)},
		{"device without a PIN, its code", 1007, hotpCode(t, 6, 0)},
		{"no such user", 4242, "00000000"},
	}
	for _, c := range cases {
		pin := alicePIN
		if strings.Contains(c.name, "wrong PIN") {
			pin = "0000"
		}
		before := e.svc.kdfRuns.Load()
		if _, err := e.svc.Login(ctx, c.uid, "", []byte(alicePW), []byte(pin), c.code); err == nil {
			t.Fatalf("%s: login succeeded", c.name)
		}
		if n := e.svc.kdfRuns.Load() - before; n != 2 {
			t.Errorf("%s: %d Argon2id computations, want 2", c.name, n)
		}
	}
	// And a success with the device costs the same.
	before := e.svc.kdfRuns.Load()
	if _, err := e.svc.Login(ctx, 1006, "", []byte(alicePW), []byte(alicePIN), hotpCode(t, 8, 1)); err != nil {
		t.Fatal(err)
	}
	if n := e.svc.kdfRuns.Load() - before; n != 2 {
		t.Errorf("hardware login: %d computations, want 2", n)
	}
}

// TestHardwarePoolLifecycle: taken back into the pool with its counter, reassigned, revoked
// by its owner (lost) and by the operator; a revoked serial is never assigned again.
func TestHardwarePoolLifecycle(t *testing.T) {
	e := newEnv(t)
	soft := e.enrol(t, "alice", aliceUID)
	e.importRFC(t)
	if err := e.svc.AssignHardware(ctx, 0, "HOTP6", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.login(soft, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPIN(ctx, aliceUID, "HOTP6", []byte(alicePIN)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), hotpCode(t, 6, 3)); err != nil {
		t.Fatal(err)
	}
	// Returned in working order: back to the pool, counter and all.
	if err := e.svc.UnassignHardware(ctx, 0, "HOTP6"); err != nil {
		t.Fatal(err)
	}
	if h := e.pool(t, "HOTP6"); h.State != PoolFree || h.User != "" {
		t.Fatalf("after unassign: %+v", h)
	}
	if len(e.notes.of(EventHardwareTaken, "alice")) != 1 {
		t.Fatal("alice was not told her device was taken back")
	}
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), hotpCode(t, 6, 4)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("login with a device taken back: %v", err)
	}
	// bob gets it; the counter came along, so alice's old codes are behind it.
	e.enrol(t, "bob", bobUID)
	if err := e.svc.AssignHardware(ctx, 0, "HOTP6", "bob"); err != nil {
		t.Fatal(err)
	}
	bobSoft := e.lastSecret
	if _, err := e.svc.Login(ctx, bobUID, "", []byte(alicePW), []byte(alicePIN), e.codeAt(t, bobSoft, 0)); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPIN(ctx, bobUID, "HOTP6", []byte("1111")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, bobUID, "", []byte(alicePW), []byte("1111"), hotpCode(t, 6, 3)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a code spent by the last owner: %v", err)
	}
	if _, err := e.svc.Login(ctx, bobUID, "", []byte(alicePW), []byte("1111"), hotpCode(t, 6, 4)); err != nil {
		t.Fatalf("bob's first press: %v", err)
	}
	// bob loses it: he revokes it himself; it is revoked in the pool.
	if err := e.svc.RevokeToken(ctx, bobUID, "HOTP6"); err != nil {
		t.Fatal(err)
	}
	if h := e.pool(t, "HOTP6"); h.State != PoolRevoked || h.User != "bob" {
		t.Fatalf("after the owner revoked it: %+v", h)
	}
	if err := e.svc.AssignHardware(ctx, 0, "HOTP6", "alice"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a revoked device assigned again: %v", err)
	}
	if len(e.notes.of(EventTokenRevoked, "bob")) != 1 {
		t.Fatal("bob was not told his device was revoked")
	}
	// The operator revokes an assigned device: its codes stop at once.
	if err := e.svc.AssignHardware(ctx, 0, "987654321", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPIN(ctx, aliceUID, "987654321", []byte(alicePIN)); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeHardware(ctx, 0, "987654321"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), hotpCode(t, 8, 0)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("login with a revoked device: %v", err)
	}
	if err := e.svc.RevokeHardware(ctx, 0, "987654321"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoke twice: %v", err)
	}
	if err := e.svc.UnassignHardware(ctx, 0, "TOTP8"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unassign a free device: %v", err)
	}
	for _, a := range []string{"token.hardware.import", "token.hardware.assign", "token.hardware.unassign", "token.hardware.revoke", "token.revoke"} {
		if !e.aud.has(a, "ok", "") {
			t.Errorf("%s not audited", a)
		}
	}
	// Audit fails closed: with the log failing, nothing is assigned.
	e.aud.mu.Lock()
	e.aud.fail = true
	e.aud.mu.Unlock()
	if err := e.svc.AssignHardware(ctx, 0, "TOTP8", "alice"); err == nil {
		t.Fatal("assigned with the audit log failing")
	}
	if h := e.pool(t, "TOTP8"); h.State != PoolFree {
		t.Fatalf("assigned without an audit record: %+v", h)
	}
}

// TestEnrolWithHardwareToken: a device assigned before enrolment gets its PIN at
// enrolment from one of its codes, and no soft token is made.
func TestEnrolWithHardwareToken(t *testing.T) {
	e := newEnv(t)
	e.importRFC(t)
	if err := e.svc.AssignHardware(ctx, 0, "987654321", "alice"); err != nil {
		t.Fatal(err)
	}
	code, _, err := e.svc.CreateEnrolment(ctx, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.EnrolWith(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs, "12345678"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("enrol with a code of no device: %v", err)
	}
	res, err := e.svc.EnrolWith(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs, hotpCode(t, 8, 2))
	if err != nil {
		t.Fatal(err)
	}
	if res.TokenID != "987654321" || res.URL != "" {
		t.Fatalf("enrolled %+v", res)
	}
	// The enrolment code and the device's code are both spent.
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), hotpCode(t, 8, 2)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("the enrolment's device code used again: %v", err)
	}
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), hotpCode(t, 8, 3)); err != nil {
		t.Fatal(err)
	}
	toks, _ := e.svc.ListTokens(ctx, aliceUID)
	if len(toks) != 1 || !toks[0].Hardware {
		t.Fatalf("tokens after a hardware enrolment: %+v", toks)
	}
	// A re-enrolment with a soft token keeps the device.
	code, _, _ = e.svc.CreateEnrolment(ctx, 0, "alice")
	if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), hotpCode(t, 8, 4)); err != nil {
		t.Fatalf("the device after a re-enrolment: %v", err)
	}
}

// TestTokenByEmailLink: a one-time link gives a soft token to the user who knows the
// password, once, and costs the same on every path.
func TestTokenByEmailLink(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	if _, _, err := e.svc.IssueTokenLink(ctx, 0, "bob"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a link for a user who never enrolled: %v", err)
	}
	code, expires, err := e.svc.IssueTokenLink(ctx, 0, "alice")
	if err != nil || len(code) != 20 || !expires.Equal(e.clk.now().Add(DefaultLinkValidity)) {
		t.Fatalf("link: %q %v %v", code, expires, err)
	}
	claim := func(uid int, user, c, pw string) (Enrolled, error) {
		return e.svc.ClaimTokenLink(ctx, uid, user, c, []byte(pw), []byte("9753"))
	}
	for _, c := range []struct {
		name                 string
		uid                  int
		user, code, password string
	}{
		{"wrong password", aliceUID, "", code, "not the password"},
		{"wrong code", aliceUID, "", strings.Repeat("A", 20), alicePW},
		{"another uid", bobUID, "alice", code, alicePW},
		{"no such user", 4242, "nobody", code, alicePW},
	} {
		before := e.svc.kdfRuns.Load()
		if _, err := claim(c.uid, c.user, c.code, c.password); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n := e.svc.kdfRuns.Load() - before; n != 2 {
			t.Errorf("%s: %d Argon2id computations, want 2", c.name, n)
		}
	}
	before := e.svc.kdfRuns.Load()
	res, err := claim(aliceUID, "alice", code, alicePW)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.svc.kdfRuns.Load() - before; n != 2 {
		t.Errorf("a claim: %d computations, want 2", n)
	}
	secret := secretOf(t, res.URL)
	if _, err := claim(aliceUID, "", code, alicePW); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("the link used twice: %v", err)
	}
	// The new token works with the PIN chosen on the link's page.
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte("9753"), e.codeAt(t, secret, 0)); err != nil {
		t.Fatal(err)
	}
	if len(e.notes.of(EventTokenAdded, "alice")) != 1 || !e.aud.has("token.link.claim", "ok", "") {
		t.Fatal("the new token was not notified or audited")
	}
	// An expired link.
	code, _, _ = e.svc.IssueTokenLink(ctx, 0, "alice")
	e.clk.add(DefaultLinkValidity + time.Second)
	if _, err := claim(aliceUID, "", code, alicePW); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("an expired link: %v", err)
	}
	// Wrong tries count towards lockout on the command line, like a login.
	e.svc.opts.MaxFailures = 2
	code, _, _ = e.svc.IssueTokenLink(ctx, 0, "alice")
	for i := 0; i < 2; i++ {
		_, _ = claim(aliceUID, "", code, "not the password")
	}
	if _, err := claim(aliceUID, "", code, alicePW); !errors.Is(err, ErrLocked) {
		t.Fatalf("after two wrong passwords: %v", err)
	}
	if len(e.notes.of(EventLockout, "alice")) != 1 {
		t.Fatal("the lockout was not notified")
	}
}

// TestEventsNeverCarrySecrets: what the Notifier hears names things and times, never a
// code, PIN or password.
func TestEventsNeverCarrySecrets(t *testing.T) {
	e := newEnv(t)
	soft := e.enrol(t, "alice", aliceUID)
	if err := e.login(soft, 0); err != nil {
		t.Fatal(err)
	}
	code, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), [3][]byte{[]byte("Rex"), []byte("Leeds"), []byte("St Mary's")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ChangePassword(ctx, aliceUID, []byte(alicePW), []byte(alicePIN), e.codeAt(t, soft, 1), []byte("another long password")); err != nil {
		t.Fatal(err)
	}
	if len(e.notes.of(EventICE, "alice")) != 1 || len(e.notes.of(EventPassword, "alice")) != 1 {
		t.Fatalf("events: %+v", e.notes.events)
	}
	for _, ev := range e.notes.events {
		s := strings.Join([]string{string(ev.Kind), ev.User, ev.Object, ev.Via}, " ")
		for _, secret := range []string{code, alicePW, alicePIN, "another long password", soft} {
			if strings.Contains(s, secret) {
				t.Fatalf("event %+v carries a secret", ev)
			}
		}
		if ev.Via != "the command line" {
			t.Fatalf("event via %q", ev.Via)
		}
	}
}
