package token

import (
	"errors"
	"testing"
	"time"
)

func TestTokensNeedSession(t *testing.T) {
	e := newEnv(t)
	e.enrol(t, "alice", aliceUID)
	if _, err := e.svc.ListTokens(ctx, aliceUID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("list without session: err = %v", err)
	}
	if _, err := e.svc.CreateToken(ctx, aliceUID, []byte("1111")); !errors.Is(err, ErrForbidden) {
		t.Fatalf("create without session: err = %v", err)
	}
}

func TestTokenCreateListRevokeSetPIN(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	toks, err := e.svc.ListTokens(ctx, aliceUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].Kind != "totp" || !toks[0].LastUsed.Equal(e.clk.now()) || !toks[0].Created.Equal(e.clk.now()) {
		t.Fatalf("tokens = %+v", toks)
	}
	first := toks[0].ID

	if _, err := e.svc.CreateToken(ctx, aliceUID, []byte("12345")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("5-digit PIN: err = %v", err)
	}
	nt, err := e.svc.CreateToken(ctx, aliceUID, []byte("2468"))
	if err != nil {
		t.Fatal(err)
	}
	second := secretOf(t, nt.URL)
	if toks, _ = e.svc.ListTokens(ctx, aliceUID); len(toks) != 2 {
		t.Fatalf("after create: %d tokens", len(toks))
	}
	if !e.aud.has("token.create", "ok", "") {
		t.Fatal("create not audited")
	}

	if err := e.svc.SetPIN(ctx, aliceUID, nt.TokenID, []byte("1357")); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPIN(ctx, aliceUID, nt.TokenID, []byte("13x7")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad PIN: err = %v", err)
	}
	if err := e.svc.SetPIN(ctx, aliceUID, "nope", []byte("1357")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: err = %v", err)
	}
	e.clk.add(30 * time.Second)
	c := e.codeAt(t, second, 0)
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte("2468"), c); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old PIN after set-pin: err = %v", err)
	}
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte("1357"), c); err != nil {
		t.Fatalf("new PIN: %v", err)
	}
	if !e.aud.has("token.set-pin", "ok", "") {
		t.Fatal("set-pin not audited")
	}

	if err := e.svc.RevokeToken(ctx, aliceUID, first); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeToken(ctx, aliceUID, first); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke twice: err = %v", err)
	}
	e.clk.add(30 * time.Second)
	if err := e.login(secret, 0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("revoked token: err = %v", err)
	}
	if toks, _ = e.svc.ListTokens(ctx, aliceUID); len(toks) != 1 || toks[0].ID != nt.TokenID {
		t.Fatalf("after revoke: %+v", toks)
	}
	if !e.aud.has("token.revoke", "ok", "") {
		t.Fatal("revoke not audited")
	}
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	const newPW = "a much better passphrase"
	if err := e.svc.ChangePassword(ctx, aliceUID, []byte(alicePW), []byte(alicePIN), e.codeAt(t, secret, 0), []byte("short")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short new password: err = %v", err)
	}
	if err := e.svc.ChangePassword(ctx, aliceUID, []byte("wrong password!"), []byte(alicePIN), e.codeAt(t, secret, 0), []byte(newPW)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong current password: err = %v", err)
	}
	if err := e.svc.ChangePassword(ctx, aliceUID, []byte(alicePW), []byte(alicePIN), e.codeAt(t, secret, 0), []byte(newPW)); err != nil {
		t.Fatal(err)
	}
	if !e.aud.has("token.passwd", "ok", "") {
		t.Fatal("passwd not audited")
	}
	e.clk.add(30 * time.Second)
	if err := e.login(secret, 0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old password: err = %v", err)
	}
	c := e.codeAt(t, secret, 0)
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(newPW), []byte(alicePIN), c); err != nil {
		t.Fatalf("new password: %v", err)
	}
}

func TestSetQuestions(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	newQs := [3]Question{
		{Question: "Favourite river?", Answer: []byte("Tyne")},
		{Question: "First car?", Answer: []byte("Mini")},
		{Question: "Grandmother's name?", Answer: []byte("Edith")},
	}
	bad := newQs
	bad[1].Answer = nil
	if err := e.svc.SetQuestions(ctx, aliceUID, []byte(alicePW), []byte(alicePIN), e.codeAt(t, secret, 0), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty answer: err = %v", err)
	}
	if err := e.svc.SetQuestions(ctx, aliceUID, []byte("wrong password!"), []byte(alicePIN), e.codeAt(t, secret, 0), newQs); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong password: err = %v", err)
	}
	code := e.codeAt(t, secret, 0)
	if err := e.svc.SetQuestions(ctx, aliceUID, []byte(alicePW), []byte(alicePIN), code, newQs); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetQuestions(ctx, aliceUID, []byte(alicePW), []byte(alicePIN), code, newQs); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("replayed code: err = %v", err)
	}
	if !e.aud.has("token.questions", "ok", "") {
		t.Fatal("questions change not audited")
	}
	if _, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), answers(aliceQs)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old answers still accepted: err = %v", err)
	}
	if _, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), answers(newQs)); err != nil {
		t.Fatalf("new answers: %v", err)
	}
	if _, err := e.svc.Questions(ctx, aliceUID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("questions without a session: err = %v", err)
	}
	e.clk.add(30 * time.Second)
	if err := e.login(secret, 0); err != nil {
		t.Fatal(err)
	}
	qs, err := e.svc.Questions(ctx, aliceUID)
	if err != nil || qs[0] != "Favourite river?" || qs[2] != "Grandmother's name?" {
		t.Fatalf("questions = %q, %v", qs, err)
	}
}
