package token

import (
	"errors"
	"sync"
	"testing"

	"dsh/vault"
)

// loggedIn enrols and logs in Alice and returns her keyring.
func loggedIn(t *testing.T, e *env) *Keyring {
	t.Helper()
	secret := e.enrol(t, "alice", aliceUID)
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	r, ok := e.svc.Sessions().Keyring(aliceUID)
	if !ok {
		t.Fatal("no keyring after login")
	}
	return r
}

func wantKey(t *testing.T, r *Keyring, share string) *vault.Key {
	t.Helper()
	k, ok := r.key(share)
	want := shareKey(share)
	if !ok || !k.Equal(&want) {
		t.Fatalf("key of %s missing or wrong", share)
	}
	return k
}

func TestKeyringHoldsSharesAtLogin(t *testing.T) {
	e := newEnv(t)
	r := loggedIn(t, e)
	wantKey(t, r, "proj-a")
	wantKey(t, r, "proj-b")
	if _, ok := r.key("proj-c"); ok {
		t.Fatal("key of a share alice is not in")
	}
	a, ok := r.arrivalsKey()
	want := shareKey("arrivals/alice")
	if !ok || !a.Equal(&want) {
		t.Fatal("Arrivals key missing")
	}
	if _, ok := e.svc.Sessions().Keyring(bobUID); ok {
		t.Fatal("bob has a keyring")
	}
}

func TestGrantRevokeShare(t *testing.T) {
	e := newEnv(t)
	r := loggedIn(t, e)
	s := e.svc.Sessions()
	// The daemon commits the membership first and then tells the sessions.
	e.keys.set(aliceUID, "proj-a", "proj-b", "proj-c")
	if err := s.GrantShare(ctx, "alice", "proj-c"); err != nil {
		t.Fatal(err)
	}
	wantKey(t, r, "proj-c")
	k := wantKey(t, r, "proj-a")
	s.RevokeShare("alice", "proj-a")
	if _, ok := r.key("proj-a"); ok {
		t.Fatal("revoked share still in the keyring")
	}
	if !k.IsZero() {
		t.Fatal("revoked key not wiped")
	}
	wantKey(t, r, "proj-b")
	// Changes to a user without a session are no-ops.
	if err := s.GrantShare(ctx, "bob", "proj-a"); err != nil {
		t.Fatal(err)
	}
}

func TestSessionEndsWipe(t *testing.T) {
	ends := map[string]func(e *env) error{
		"logout":  func(e *env) error { e.svc.Sessions().Logout(ctx, aliceUID); return nil },
		"enduser": func(e *env) error { e.svc.Sessions().EndUser(ctx, "alice"); return nil },
		"endall":  func(e *env) error { e.svc.Sessions().EndAll(ctx); return nil },
		"expiry": func(e *env) error {
			e.clk.add(DefaultSessionTTL)
			e.svc.Sessions().Sweep(ctx)
			return nil
		},
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			r := loggedIn(t, e)
			k := wantKey(t, r, "proj-a")
			a, _ := r.arrivalsKey()
			if err := end(e); err != nil {
				t.Fatal(err)
			}
			if _, ok := r.key("proj-b"); ok {
				t.Fatal("old keyring still answers")
			}
			if !k.IsZero() || !a.IsZero() {
				t.Fatal("keys not wiped")
			}
			if !e.aud.has("token.session.end", "ok", "") {
				t.Fatal("session end not audited")
			}
			if _, ok := e.svc.Sessions().Keyring(aliceUID); ok {
				t.Fatal("session still active")
			}
		})
	}
}

func TestExpiredKeyringRefusesWithoutSweep(t *testing.T) {
	e := newEnv(t)
	r := loggedIn(t, e)
	e.clk.add(DefaultSessionTTL)
	if _, ok := r.key("proj-a"); ok {
		t.Fatal("expired keyring gave a key")
	}
	if _, ok := e.svc.Sessions().Keyring(aliceUID); ok {
		t.Fatal("expired session returned")
	}
}

func TestKeyringConcurrent(t *testing.T) {
	e := newEnv(t)
	r := loggedIn(t, e)
	s := e.svc.Sessions()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				if kr, ok := s.Keyring(aliceUID); ok {
					kr.key("proj-b")
				}
			}
		}()
	}
	for j := 0; j < 50; j++ {
		if err := s.GrantShare(ctx, "alice", "proj-c"); err != nil {
			t.Error(err)
		}
		s.RevokeShare("alice", "proj-c")
	}
	wg.Wait()
	wantKey(t, r, "proj-b")
}

func TestKeyringKeyDoesNotAllocate(t *testing.T) {
	e := newEnv(t)
	loggedIn(t, e)
	s := e.svc.Sessions()
	n := testing.AllocsPerRun(100, func() {
		kr, _ := s.Keyring(aliceUID)
		kr.key("proj-a")
	})
	if n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

// A grant that arrives after the membership was removed again must not bring the key back.
func TestGrantAfterRemovalIgnored(t *testing.T) {
	e := newEnv(t)
	r := loggedIn(t, e)
	if err := e.svc.Sessions().GrantShare(ctx, "alice", "proj-c"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.key("proj-c"); ok {
		t.Fatal("key granted for a share alice is not a member of")
	}
}

// A membership change or a disable that lands while a login builds its keyring is caught
// up with once the session is installed.
func TestLoginCatchesUpWithChanges(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	e.keys.onShareKey = func() { e.keys.members[aliceUID] = []string{"proj-b", "proj-c"} }
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	r, ok := e.svc.Sessions().Keyring(aliceUID)
	if !ok {
		t.Fatal("no keyring after login")
	}
	if _, ok := r.key("proj-a"); ok {
		t.Fatal("key of a share removed during login survived")
	}
	wantKey(t, r, "proj-c")

	e.keys.onShareKey = func() { e.dir.setActive("alice", false) }
	if err := e.login(secret, 1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("login of a user disabled during login: %v", err)
	}
	if _, ok := e.svc.Sessions().Keyring(aliceUID); ok {
		t.Fatal("session of a user disabled during login")
	}
}

// UseKey holds the keyring's lock while the key is used: a revocation or logout racing
// with it waits, and the race detector sees no access to a key being wiped.
func TestUseKeyRacesWithRevocation(t *testing.T) {
	e := newEnv(t)
	r := loggedIn(t, e)
	want := shareKey("proj-a")
	if ok, err := r.UseKey("proj-a", func(k *vault.Key) error {
		if !k.Equal(&want) {
			t.Error("UseKey gave the wrong key")
		}
		return nil
	}); !ok || err != nil {
		t.Fatalf("UseKey: %v %v", ok, err)
	}
	if !r.Has("proj-b") || r.Has("proj-c") || !r.HasArrivals() {
		t.Fatal("Has/HasArrivals disagree with the keyring")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			r.UseKey("proj-b", func(k *vault.Key) error { _ = k.Derive("x"); return nil })
			r.UseArrivals(func(k *vault.Key) error { _ = k.Derive("x"); return nil })
		}
	}()
	e.keys.set(aliceUID, "proj-a")
	e.svc.Sessions().RevokeShare("alice", "proj-b")
	e.svc.Sessions().Logout(ctx, aliceUID)
	wg.Wait()
	if ok, _ := r.UseKey("proj-a", func(*vault.Key) error { return nil }); ok {
		t.Fatal("UseKey after logout")
	}
	if ok, _ := r.UseArrivals(func(*vault.Key) error { return nil }); ok || r.HasArrivals() {
		t.Fatal("UseArrivals after logout")
	}
}
