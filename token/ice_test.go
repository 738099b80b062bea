package token

import (
	"errors"
	"testing"
	"time"
)

func answers(qs [3]Question) [3][]byte {
	return [3][]byte{qs[0].Answer, qs[1].Answer, qs[2].Answer}
}

func TestICESingleUse(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	code, exp, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), answers(aliceQs))
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != 8 || !exp.Equal(e.clk.now().Add(DefaultICEValidity)) {
		t.Fatalf("code of %d digits expiring %v", len(code), exp)
	}
	if _, err := e.svc.LoginICE(ctx, aliceUID, "alice", []byte(alicePW), code); err != nil {
		t.Fatalf("ICE login: %v", err)
	}
	if e.logins(t, "ice", "ok") != 1 {
		t.Fatal("ICE login not counted")
	}
	// An ICE session may create a new token, as a user who lost the phone must.
	nt, err := e.svc.CreateToken(ctx, aliceUID, []byte("9876"))
	if err != nil {
		t.Fatalf("create token after ICE: %v", err)
	}
	if _, err := e.svc.LoginICE(ctx, aliceUID, "alice", []byte(alicePW), code); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("reused emergency code: err = %v", err)
	}
	c := e.codeAt(t, secretOf(t, nt.URL), 0)
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte("9876"), c); err != nil {
		t.Fatalf("login with the new token: %v", err)
	}
	if !e.aud.has("token.ice.issue", "ok", "") || !e.aud.has("token.login.ice", "ok", "") {
		t.Fatal("ICE not audited")
	}
}

func TestICEExpiry(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	code, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), answers(aliceQs))
	if err != nil {
		t.Fatal(err)
	}
	e.clk.add(DefaultICEValidity + time.Second)
	if _, err := e.svc.LoginICE(ctx, aliceUID, "alice", []byte(alicePW), code); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("expired emergency code: err = %v", err)
	}
}

func TestICEWrongCaseAnswers(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	a := answers(aliceQs)
	a[1] = []byte("leeds")
	if _, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), a); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong-case answer: err = %v", err)
	}
	if _, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte("wrong password!"), answers(aliceQs)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong password: err = %v", err)
	}
	if !e.aud.has("token.ice.issue", "denied", reasonBadCredentials) {
		t.Fatal("refusal not audited")
	}
}

func TestICEFailuresCountTowardsLockout(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	code, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), answers(aliceQs))
	if err != nil {
		t.Fatal(err)
	}
	wrong := "00000000"
	if wrong == code {
		wrong = "11111111"
	}
	for i := 0; i < DefaultMaxFailures; i++ {
		if _, err := e.svc.LoginICE(ctx, aliceUID, "alice", []byte(alicePW), wrong); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if _, err := e.svc.LoginICE(ctx, aliceUID, "alice", []byte(alicePW), code); !errors.Is(err, ErrLocked) {
		t.Fatalf("right code while locked: err = %v, want ErrLocked", err)
	}
	if e.logins(t, "ice", "denied") != DefaultMaxFailures+1 {
		t.Fatal("ICE refusals not counted")
	}
}

func TestEnrolmentCodeSingleUseAndExpiry(t *testing.T) {
	e := newEnv(t)
	code, exp, err := e.svc.CreateEnrolment(ctx, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(e.clk.now().Add(DefaultEnrolValidity)) {
		t.Fatalf("expires %v", exp)
	}
	if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("second use: err = %v", err)
	}

	code, _, err = e.svc.CreateEnrolment(ctx, 0, "bob")
	if err != nil {
		t.Fatal(err)
	}
	// Alice cannot use Bob's code: it is bound to the uid's own account.
	if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("someone else's code: err = %v", err)
	}
	e.clk.add(DefaultEnrolValidity)
	if _, err := e.svc.Enrol(ctx, bobUID, code, []byte(alicePW), []byte(alicePIN), aliceQs); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("expired code: err = %v", err)
	}
	if _, _, err := e.svc.CreateEnrolment(ctx, 0, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: err = %v", err)
	}
}

func TestEnrolInvalidInput(t *testing.T) {
	e := newEnv(t)
	code, _, err := e.svc.CreateEnrolment(ctx, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ pw, pin string }{
		"short password": {"elevenchars", alicePIN},
		"3-digit PIN":    {alicePW, "123"},
		"letters in PIN": {alicePW, "12a4"},
		"5-digit PIN":    {alicePW, "12345"},
	} {
		if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(c.pw), []byte(c.pin), aliceQs); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	noAnswer := aliceQs
	noAnswer[2].Answer = nil
	if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), noAnswer); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty answer: err = %v", err)
	}
	// Refused input did not spend the code.
	if _, err := e.svc.Enrol(ctx, aliceUID, code, []byte(alicePW), []byte(alicePIN), aliceQs); err != nil {
		t.Fatalf("valid enrolment after refusals: %v", err)
	}
}
