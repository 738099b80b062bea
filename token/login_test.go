package token

import (
	"errors"
	"strings"
	"testing"
	"time"

	"dsh/kv"
	"dsh/vault"
)

func TestEnrolThenLogin(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	if err := e.login(secret, 0); err != nil {
		t.Fatalf("login: %v", err)
	}
	user, exp, ok := e.svc.Sessions().Active(aliceUID)
	if !ok || user != "alice" || !exp.Equal(e.clk.now().Add(DefaultSessionTTL)) {
		t.Fatalf("session = %q %v %v, want alice expiring after the default TTL", user, exp, ok)
	}
	if !e.aud.has("token.login.token", "ok", "") {
		t.Fatal("successful login not audited")
	}
}

func TestWrongFactorsGiveOneMessage(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	good := e.codeAt(t, secret, 0)
	bad := "000000"
	if bad == good {
		bad = "111111"
	}
	cases := map[string]struct {
		pw, pin, code string
	}{
		"password": {"wrong password!!", alicePIN, good},
		"pin":      {alicePW, "1234", good},
		"code":     {alicePW, alicePIN, bad},
	}
	var msgs []string
	for name, c := range cases {
		_, err := e.svc.Login(ctx, aliceUID, "", []byte(c.pw), []byte(c.pin), c.code)
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("%s: err = %v, want ErrUnauthorized", name, err)
		}
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Fatalf("messages differ: %q vs %q", m, msgs[0])
		}
	}
	if !strings.Contains(msgs[0], "wrong user ID, password, PIN or code") {
		t.Fatalf("message %q is not the generic one", msgs[0])
	}
	if _, ok := e.svc.Sessions().Keyring(aliceUID); ok {
		t.Fatal("a failed login left a session")
	}
}

func TestReplayRefused(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.login(secret, 0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("same code again: err = %v, want ErrUnauthorized", err)
	}
	if !e.aud.has("token.login.token", "denied", reasonReplay) {
		t.Fatal("replay not audited as such")
	}
	// After the next step's code was accepted, the previous step is spent too, even
	// though it is still inside the ±1 window.
	if err := e.login(secret, 1); err != nil {
		t.Fatalf("next step: %v", err)
	}
	if err := e.login(secret, 0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("earlier step after a later one: err = %v, want ErrUnauthorized", err)
	}
}

func TestStepWindow(t *testing.T) {
	for _, c := range []struct {
		steps int
		ok    bool
	}{{-2, false}, {-1, true}, {1, true}, {2, false}} {
		e := newEnv(t)
		secret := e.enrol(t, "alice", aliceUID)
		err := e.login(secret, c.steps)
		if (err == nil) != c.ok {
			t.Fatalf("step %+d: err = %v, want ok=%v", c.steps, err, c.ok)
		}
	}
}

func TestLockoutAndExpiry(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	for i := 0; i < DefaultMaxFailures; i++ {
		if _, err := e.svc.Login(ctx, aliceUID, "", []byte("not the password"), []byte(alicePIN), "123456"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("failure %d: err = %v", i+1, err)
		}
	}
	err := e.login(secret, 0)
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) {
		t.Fatalf("correct login while locked: err = %v, want ErrLocked", err)
	}
	if want := e.clk.now().Add(DefaultLockout); !le.Until.Equal(want) || !strings.Contains(err.Error(), "locked until") {
		t.Fatalf("lock error %q until %v, want until %v", err, le.Until, want)
	}
	if !e.aud.has("token.lockout", "ok", "") {
		t.Fatal("lockout not audited")
	}
	if got := testCounter(t, e.met.Lockouts); got != 1 {
		t.Fatalf("dsh_lockouts_total = %v, want 1", got)
	}
	e.clk.add(DefaultLockout - time.Second)
	if err := e.login(secret, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("a second before the end: err = %v, want ErrLocked", err)
	}
	e.clk.add(time.Second)
	if err := e.login(secret, 0); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
}

func TestSuccessResetsFailures(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	fail := func() {
		t.Helper()
		if _, err := e.svc.Login(ctx, aliceUID, "", []byte("not the password"), []byte(alicePIN), "123456"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v", err)
		}
	}
	for i := 0; i < DefaultMaxFailures-1; i++ {
		fail()
	}
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < DefaultMaxFailures-1; i++ {
		fail()
	}
	e.clk.add(30 * time.Second)
	if err := e.login(secret, 0); err != nil {
		t.Fatalf("count was not reset by the success: %v", err)
	}
}

func TestOtherUIDOrUserRefused(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	code := e.codeAt(t, secret, 0)
	// Bob's uid presenting Alice's ID and correct credentials.
	if _, err := e.svc.Login(ctx, bobUID, "alice", []byte(alicePW), []byte(alicePIN), code); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("alice's ID from bob's uid: err = %v", err)
	}
	// Alice's uid naming Bob.
	if _, err := e.svc.Login(ctx, aliceUID, "bob", []byte(alicePW), []byte(alicePIN), code); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("bob's ID from alice's uid: err = %v", err)
	}
	if _, err := e.svc.Login(ctx, 4242, "", []byte(alicePW), []byte(alicePIN), code); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("unknown uid: err = %v", err)
	}
	if !e.aud.has("token.login.token", "denied", reasonUIDMismatch) {
		t.Fatal("uid mismatch not audited")
	}
	// None of that counted against Alice, nor spent her code.
	if _, err := e.svc.Login(ctx, aliceUID, "alice", []byte(alicePW), []byte(alicePIN), code); err != nil {
		t.Fatalf("alice herself: %v", err)
	}
	for _, uid := range []int{bobUID, 4242} {
		if _, ok := e.svc.Sessions().Keyring(uid); ok {
			t.Fatalf("uid %d got a session", uid)
		}
	}
}

func TestDisabledUserRefused(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	e.dir.setActive("alice", false)
	err := e.login(secret, 0)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("err = %v, want ErrForbidden saying disabled", err)
	}
	if !e.aud.has("token.login.token", "denied", reasonDisabled) {
		t.Fatal("not audited")
	}
}

func TestFailingAuditorRefusesLogin(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	e.aud.mu.Lock()
	e.aud.fail = true
	e.aud.mu.Unlock()
	if err := e.login(secret, 0); err == nil || errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("err = %v, want a refusal naming the audit log", err)
	}
	if _, ok := e.svc.Sessions().Keyring(aliceUID); ok {
		t.Fatal("session created although the audit failed")
	}
}

func TestLoginMetrics(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.login(secret, 0); err == nil {
		t.Fatal("replay accepted")
	}
	if ok, denied := e.logins(t, "token", "ok"), e.logins(t, "token", "denied"); ok != 1 || denied != 1 {
		t.Fatalf("dsh_logins_total ok=%v denied=%v, want 1 and 1", ok, denied)
	}
	if got := testCounter(t, e.met.SessionsActive); got != 1 {
		t.Fatalf("dsh_sessions_active = %v, want 1", got)
	}
	e.svc.Sessions().Logout(ctx, aliceUID)
	if got := testCounter(t, e.met.SessionsActive); got != 0 {
		t.Fatalf("dsh_sessions_active after logout = %v, want 0", got)
	}
}

func TestMalformedLoginInputDoesNotCount(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	code := e.codeAt(t, secret, 0)
	for i := 0; i < DefaultMaxFailures; i++ {
		for name, c := range map[string]struct{ pin, code string }{
			"3-digit PIN": {"123", code},
			"letter PIN":  {"12a4", code},
			"short code":  {alicePIN, "12345"},
			"letter code": {alicePIN, "12345x"},
		} {
			if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(c.pin), c.code); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s: err = %v, want ErrInvalid", name, err)
			}
		}
		if _, err := e.svc.LoginICE(ctx, aliceUID, "", []byte(alicePW), "1234"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("short emergency code: err = %v", err)
		}
	}
	if err := e.login(secret, 0); err != nil {
		t.Fatalf("malformed input counted towards lockout: %v", err)
	}
}

// TestOnBadger runs the main flow on the real store, whose Scan and conflict handling
// differ from the in-memory one.
func TestOnBadger(t *testing.T) {
	key, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.OpenBadger(t.TempDir(), &key, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := newEnvStore(t, st, testKDF, testKDF)
	secret := e.enrol(t, "alice", aliceUID)
	// A second user whose ID extends Alice's must not see her tokens.
	e.dir.users = append(e.dir.users, dirUser{id: "alice2", uid: 1003, active: true})
	e.enrol(t, "alice2", 1003)
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.login(secret, 0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("replay on Badger: err = %v", err)
	}
	toks, err := e.svc.ListTokens(ctx, aliceUID)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens = %v, %v; want exactly alice's one", toks, err)
	}
}

func TestEnrolDisabledUserRefused(t *testing.T) {
	e := newEnv(t)
	code, _, err := e.svc.CreateEnrolment(ctx, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	e.dir.setActive("alice", false)
	if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs); !errors.Is(err, ErrForbidden) {
		t.Fatalf("err = %v, want ErrForbidden", err)
	}
}

func TestOptionsAreHonoured(t *testing.T) {
	e := newEnv(t)
	e.svc.opts.MaxFailures, e.svc.opts.Lockout, e.svc.opts.SessionTTL = 2, time.Minute, time.Hour
	secret := e.enrol(t, "alice", aliceUID)
	for i := 0; i < 2; i++ {
		_, _ = e.svc.Login(ctx, aliceUID, "", []byte("not the password"), []byte(alicePIN), "123456")
	}
	if err := e.login(secret, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("after 2 failures: err = %v, want ErrLocked", err)
	}
	e.clk.add(time.Minute)
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	if _, exp, _ := e.svc.Sessions().Active(aliceUID); !exp.Equal(e.clk.now().Add(time.Hour)) {
		t.Fatalf("session expires %v, want in an hour", exp)
	}
}
