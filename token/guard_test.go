package token

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"dsh/limit"
	"dsh/metrics"
)

// onPortal is ctx as the portal sends it, from a client address.
func onPortal(addr string) context.Context {
	return WithOrigin(ctx, Origin{Portal: true, Address: addr})
}

// loginAs tries a token login of user from uid with the given context.
func (e *env) loginAs(c context.Context, uid int, user, pw, pin, code string) (SessionInfo, error) {
	return e.svc.Login(c, uid, user, []byte(pw), []byte(pin), code)
}

// Every way a login can be refused costs the same Argon2id work as a wrong password for an
// enrolled user: one password hash and one short hash. A local uid cannot tell from the
// time of the answer whether a user exists, is someone else's, is locked, or has tokens.
func TestEveryLoginAnswerCostsTheSame(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	// carol is in the directory, active, but never enrolled; dora is disabled.
	e.dir.users = append(e.dir.users, dirUser{id: "carol", uid: 1003, active: true}, dirUser{id: "dora", uid: 1004, active: false})
	// erin has three tokens: the PIN is still hashed once.
	e.dir.users = append(e.dir.users, dirUser{id: "erin", uid: 1005, active: true})
	e.enrol(t, "erin", 1005)
	if _, err := e.loginAs(ctx, 1005, "", alicePW, alicePIN, e.codeAt(t, e.lastSecret, 0)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := e.svc.CreateToken(ctx, 1005, []byte(alicePIN)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name      string
		uid       int
		user      string
		password  string
		wantLimit bool
	}{
		{"unknown user", 4242, "nobody", alicePW, false},
		{"unknown uid, no user named", 4242, "", alicePW, false},
		{"another uid's user", bobUID, "alice", alicePW, false},
		{"not enrolled", 1003, "", alicePW, false},
		{"disabled", 1004, "", alicePW, false},
		{"wrong password", aliceUID, "", "not the password", false},
		{"wrong code, three tokens", 1005, "", alicePW, false},
	}
	for _, c := range cases {
		before := e.svc.kdfRuns.Load()
		_, err := e.loginAs(ctx, c.uid, c.user, c.password, alicePIN, "000000")
		if err == nil {
			t.Fatalf("%s: login succeeded", c.name)
		}
		if n := e.svc.kdfRuns.Load() - before; n != 2 {
			t.Errorf("%s: %d Argon2id computations, want 2 (one password, one PIN)", c.name, n)
		}
	}
	// An emergency-code login of a user without an ICE code: the same two.
	before := e.svc.kdfRuns.Load()
	if _, err := e.svc.LoginICE(ctx, aliceUID, "", []byte(alicePW), "12345678"); err == nil {
		t.Fatal("ICE login without a code succeeded")
	}
	if n := e.svc.kdfRuns.Load() - before; n != 2 {
		t.Errorf("ICE without a code: %d computations, want 2", n)
	}
	// A locked account too.
	e.svc.opts.MaxFailures = 1
	_, _ = e.loginAs(ctx, aliceUID, "", "not the password", alicePIN, "000000")
	before = e.svc.kdfRuns.Load()
	if _, err := e.loginAs(ctx, aliceUID, "", alicePW, alicePIN, "000000"); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked: %v", err)
	}
	if n := e.svc.kdfRuns.Load() - before; n != 2 {
		t.Errorf("locked account: %d computations, want 2", n)
	}
	// RequestICE: password and three answers, for a user who exists and one who does not.
	for _, user := range []string{"alice", "nobody"} {
		before := e.svc.kdfRuns.Load()
		_, _, _ = e.svc.RequestICE(ctx, 4242, user, []byte(alicePW), [3][]byte{[]byte("a"), []byte("b"), []byte("c")})
		if n := e.svc.kdfRuns.Load() - before; n != 4 {
			t.Errorf("RequestICE for %s from another uid: %d computations, want 4", user, n)
		}
	}
}

// Failed portal sign-ins never lock the account for its owner's dsh login; they are
// throttled instead, per account and per address, with growing delays. A throttled attempt
// costs no Argon2id work and looks the same for any user ID.
func TestPortalFailuresThrottleButNeverLock(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	web := onPortal("192.0.2.7")
	for i := 0; i < DefaultAccountThrottle.Free; i++ {
		if _, err := e.loginAs(web, aliceUID, "alice", "not the password", alicePIN, "000000"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("portal failure %d: %v", i+1, err)
		}
	}
	before := e.svc.kdfRuns.Load()
	_, err := e.loginAs(web, aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 0))
	var te *ThrottledError
	if !errors.As(err, &te) || te.Wait != time.Second || !errors.Is(err, ErrThrottled) {
		t.Fatalf("after %d portal failures: %v, want throttled for 1s", DefaultAccountThrottle.Free, err)
	}
	if e.svc.kdfRuns.Load() != before {
		t.Fatal("a throttled attempt ran Argon2id")
	}
	if !strings.Contains(err.Error(), "try again in 1s") {
		t.Fatalf("message %q does not say when to try again", err)
	}
	// An unknown account is throttled exactly the same way.
	for i := 0; i < DefaultAccountThrottle.Free; i++ {
		_, _ = e.loginAs(onPortal("192.0.2.8"), -1, "nobody", alicePW, alicePIN, "000000")
	}
	if _, err := e.loginAs(onPortal("192.0.2.8"), -1, "nobody", alicePW, alicePIN, "000000"); !errors.As(err, &te) || te.Wait != time.Second {
		t.Fatalf("unknown account after %d failures: %v", DefaultAccountThrottle.Free, err)
	}
	// The owner's command-line login is not locked, and not throttled.
	if _, err := e.loginAs(ctx, aliceUID, "", alicePW, alicePIN, e.codeAt(t, secret, 0)); err != nil {
		t.Fatalf("dsh login after portal failures: %v", err)
	}
	rec, _, _, _ := e.svc.loadUser(ctx, "alice")
	if rec.Failures != 0 || !rec.LockedUntil.IsZero() {
		t.Fatalf("portal failures reached the lockout state: %+v", rec)
	}
	// Once the delay has passed the owner may sign in on the portal, which clears the
	// account's throttle (not the address's).
	e.clk.add(time.Second)
	if _, err := e.loginAs(web, aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 1)); err != nil {
		t.Fatalf("portal sign-in after the delay: %v", err)
	}
	if !e.aud.has("token.login.token", "denied", "throttled") {
		t.Fatal("throttled attempts not audited")
	}
	if v := testCounter(t, e.svc.met.Lockouts); v != 0 {
		t.Fatalf("%v lockouts counted", v)
	}
}

// Delays grow per client address across accounts, doubling with each failure.
func TestPortalAddressThrottleGrows(t *testing.T) {
	e := newEnv(t)
	web := onPortal("198.51.100.1")
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	var waits []time.Duration
	for _, u := range users {
		_, err := e.loginAs(web, -1, u, alicePW, alicePIN, "000000")
		var te *ThrottledError
		if errors.As(err, &te) {
			waits = append(waits, te.Wait)
			e.clk.add(te.Wait)
			if _, err := e.loginAs(web, -1, u, alicePW, alicePIN, "000000"); !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("after waiting: %v", err)
			}
		} else if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("%s: %v", u, err)
		}
	}
	want := "[1s 2s 4s]"
	if got := durations(waits); got != want {
		t.Fatalf("address waits %s, want %s", got, want)
	}
	// Another address is not slowed down by this one.
	if _, err := e.loginAs(onPortal("198.51.100.2"), -1, "u9", alicePW, alicePIN, "000000"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("another address: %v", err)
	}
}

func durations(ds []time.Duration) string {
	var b strings.Builder
	b.WriteString("[")
	for i, d := range ds {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(d.String())
	}
	b.WriteString("]")
	return b.String()
}

// A lockout reached on the command line applies to the portal too.
func TestCommandLineLockoutBlocksPortal(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	for i := 0; i < DefaultMaxFailures; i++ {
		_, _ = e.loginAs(ctx, aliceUID, "", "not the password", alicePIN, "000000")
	}
	if _, err := e.loginAs(onPortal("192.0.2.7"), aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 0)); !errors.Is(err, ErrLocked) {
		t.Fatalf("portal sign-in of a locked account: %v", err)
	}
	if _, _, err := e.svc.RequestICE(onPortal("192.0.2.7"), aliceUID, "alice", []byte(alicePW), [3][]byte{[]byte("Rex"), []byte("Leeds"), []byte("St Mary's")}); !errors.Is(err, ErrLocked) {
		t.Fatalf("portal ICE request of a locked account: %v", err)
	}
}

// A portal sign-in starts a session beside the command line's: it neither replaces it nor
// shortens it, ends after 15 minutes idle or an hour in all, and a web sign-out leaves the
// command-line session and its keys alone. dsh logout ends both.
func TestPortalSessionBesideCommandLine(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	cli, err := e.loginAs(ctx, aliceUID, "", alicePW, alicePIN, e.codeAt(t, secret, 0))
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := e.svc.Sessions().Keyring(aliceUID)
	web, err := e.loginAs(onPortal("192.0.2.7"), aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 1))
	if err != nil {
		t.Fatal(err)
	}
	if !web.Portal || cli.Portal || web.ID == cli.ID {
		t.Fatalf("sessions: cli %+v web %+v", cli, web)
	}
	if !web.Expires.Equal(e.clk.now().Add(DefaultPortalIdle)) || !cli.Expires.Equal(e.clk.now().Add(DefaultSessionTTL)) {
		t.Fatalf("lifetimes: cli ends %v, web %v", cli.Expires, web.Expires)
	}
	list := e.svc.Sessions().List(aliceUID)
	if len(list) != 2 || list[0].ID != cli.ID || list[1].ID != web.ID {
		t.Fatalf("sessions of alice: %+v", list)
	}
	if r, _ := e.svc.Sessions().Keyring(aliceUID); r != ring {
		t.Fatal("the portal sign-in gave the uid another keyring")
	}
	k := wantKey(t, ring, "proj-a")
	// Used within the idle time, the portal session lives on, but never past an hour.
	for i := 0; i < 5; i++ {
		e.clk.add(14 * time.Minute)
		if !e.svc.Sessions().Touch(aliceUID, web.ID) && i < 4 {
			t.Fatalf("portal session ended after %d minutes of use", 14*(i+1))
		}
	}
	if e.svc.Sessions().Touch(aliceUID, web.ID) {
		t.Fatal("portal session outlived its hour")
	}
	if _, ok := e.svc.Sessions().info(aliceUID, cli.ID); !ok {
		t.Fatal("the command-line session ended with the portal's")
	}
	wantKey(t, ring, "proj-a")

	// A new portal session, then a web sign-out: the command-line session and keys stay.
	web2, err := e.loginAs(onPortal("192.0.2.7"), aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !e.svc.Sessions().EndPortal(ctx, aliceUID) {
		t.Fatal("no portal session to end")
	}
	if e.svc.Sessions().Touch(aliceUID, web2.ID) {
		t.Fatal("portal session alive after sign-out")
	}
	if r, ok := e.svc.Sessions().Keyring(aliceUID); !ok || r != ring || k.IsZero() {
		t.Fatal("a web sign-out ended the command-line session's access")
	}
	// Idle: a portal session nobody uses ends after 15 minutes, by the sweeper too.
	web3, err := e.loginAs(onPortal("192.0.2.7"), aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 1))
	if err != nil {
		t.Fatal(err)
	}
	e.clk.add(DefaultPortalIdle)
	e.svc.Sessions().Sweep(ctx)
	if _, ok := e.svc.Sessions().info(aliceUID, web3.ID); ok {
		t.Fatal("idle portal session not swept")
	}
	if !e.aud.has("token.session.end", "ok", "expired; session 4 (portal)") {
		t.Fatalf("idle end not audited: %+v", e.aud.all())
	}
	// dsh logout ends everything and wipes the keys.
	if _, err := e.loginAs(onPortal("192.0.2.7"), aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 0)); err != nil {
		t.Fatal(err)
	}
	e.svc.Sessions().Logout(ctx, aliceUID)
	if len(e.svc.Sessions().List(aliceUID)) != 0 || !k.IsZero() {
		t.Fatal("dsh logout left a session or a key")
	}
}

// A portal sign-in alone: its keys go when it ends by being left idle.
func TestPortalOnlySessionWipesWhenIdle(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	if _, err := e.loginAs(onPortal("192.0.2.7"), aliceUID, "alice", alicePW, alicePIN, e.codeAt(t, secret, 0)); err != nil {
		t.Fatal(err)
	}
	ring, ok := e.svc.Sessions().Keyring(aliceUID)
	if !ok {
		t.Fatal("no keyring after a portal sign-in")
	}
	k := wantKey(t, ring, "proj-a")
	e.clk.add(DefaultPortalIdle)
	if ring.Has("proj-a") {
		t.Fatal("keyring answers after the idle time, before any sweep")
	}
	if _, ok := e.svc.Sessions().Keyring(aliceUID); ok || !k.IsZero() {
		t.Fatal("idle portal session kept its keys")
	}
}

// A second dsh login replaces the first command-line session but keeps the keyring the
// uid's open files use; the replaced session's end is audited.
func TestReloginKeepsKeyring(t *testing.T) {
	e := newEnv(t)
	r := loggedIn(t, e)
	k := wantKey(t, r, "proj-a")
	e.clk.add(30 * time.Second)
	if err := e.login(e.lastSecret, 0); err != nil {
		t.Fatal(err)
	}
	if r2, ok := e.svc.Sessions().Keyring(aliceUID); !ok || r2 != r || k.IsZero() {
		t.Fatal("relogin changed or wiped the keyring")
	}
	if n := len(e.svc.Sessions().List(aliceUID)); n != 1 {
		t.Fatalf("%d sessions after relogin, want 1", n)
	}
	if !e.aud.has("token.session.end", "ok", "replaced; session 1 (command line)") {
		t.Fatal("replaced session not audited")
	}
}

// With the memory budget taken, a check waits, then fails as busy: counted, audited, and
// not counted towards lockout.
func TestBusyCredentialChecks(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	lim, err := metrics.NewLimits(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.lim = lim
	e.svc.kdf = limit.NewBudget(int64(testKDF.MemoryKiB), 20*time.Millisecond)
	hold, err := e.svc.kdf.Acquire(ctx, int64(testKDF.MemoryKiB))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.loginAs(ctx, aliceUID, "", alicePW, alicePIN, e.codeAt(t, secret, 0))
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("login with the budget taken: %v", err)
	}
	hold()
	if !e.aud.has("token.login.token", "denied", "busy") || e.logins(t, "token", "error") != 1 {
		t.Fatal("busy refusal not audited or counted")
	}
	rec, _, _, _ := e.svc.loadUser(ctx, "alice")
	if rec.Failures != 0 {
		t.Fatal("a busy refusal counted towards lockout")
	}
	if _, err := e.loginAs(ctx, aliceUID, "", alicePW, alicePIN, e.codeAt(t, secret, 0)); err != nil {
		t.Fatalf("login once the budget is free: %v", err)
	}
}

// Many concurrent logins through a budget that fits one check at a time all get their
// answer (they queue; none is lost or deadlocked), each after its two computations.
func TestConcurrentChecksQueueInBudget(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	e.svc.kdf = limit.NewBudget(int64(testKDF.MemoryKiB), 10*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.loginAs(ctx, 4242, "nobody", alicePW, alicePIN, "000000")
			if !errors.Is(err, ErrUnauthorized) {
				t.Errorf("err = %v", err)
			}
		}()
	}
	wg.Wait()
	if n := e.svc.kdfRuns.Load(); n < 48 {
		t.Fatalf("%d computations for 24 logins", n)
	}
}
