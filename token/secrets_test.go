package token

import (
	"bytes"
	"encoding/base32"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"dsh/kv"
	"dsh/vault"
)

// TestNoSecretsAtRestOrInAudit walks every flow, then greps the store and the audit
// entries for each secret used, in the forms a leak would take.
func TestNoSecretsAtRestOrInAudit(t *testing.T) {
	e := newEnv(t)
	enrolCode, _, err := e.svc.CreateEnrolment(ctx, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Enrol(ctx, aliceUID, enrolCode, []byte(alicePW), []byte(alicePIN), aliceQs)
	if err != nil {
		t.Fatal(err)
	}
	secret := secretOf(t, res.URL)
	code := e.codeAt(t, secret, 0)
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), code); err != nil {
		t.Fatal(err)
	}
	_, _ = e.svc.Login(ctx, aliceUID, "", []byte("wrong password!"), []byte(alicePIN), code)
	ice, _, err := e.svc.RequestICE(ctx, aliceUID, "alice", []byte(alicePW), answers(aliceQs))
	if err != nil {
		t.Fatal(err)
	}
	nt, err := e.svc.CreateToken(ctx, aliceUID, []byte("8642"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"password":       []byte(alicePW),
		"totp secret":    []byte(secret),
		"raw totp":       raw,
		"second secret":  []byte(secretOf(t, nt.URL)),
		"enrolment code": []byte(enrolCode),
		"ice code":       []byte(ice),
		"answer":         []byte("St Mary's"),
	}
	err = e.store.View(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte("token/"), nil, func(key, value []byte) (bool, error) {
			for name, s := range secrets {
				if bytes.Contains(value, s) || bytes.Contains(key, s) {
					t.Errorf("%s found under %s", name, key)
				}
			}
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	entries := e.aud.all()
	if len(entries) < 6 {
		t.Fatalf("only %d audit entries", len(entries))
	}
	for _, en := range entries {
		all := strings.Join([]string{en.User, en.Action, en.Object, en.Result, en.Detail}, "\x00")
		for name, s := range secrets {
			if strings.Contains(all, string(s)) {
				t.Errorf("%s in audit entry %+v", name, en)
			}
		}
		for _, s := range []string{code, alicePIN, "8642"} {
			if strings.Contains(all, s) {
				t.Errorf("code or PIN in audit entry %+v", en)
			}
		}
	}
}

func TestConcurrentLoginsWithOneCode(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	code := e.codeAt(t, secret, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), code); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d logins accepted one code, want 1", wins)
	}
}

func TestKeysFailureRefusesLogin(t *testing.T) {
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	e.keys.mu.Lock()
	e.keys.fail = true
	e.keys.mu.Unlock()
	if err := e.login(secret, 0); err == nil || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want an internal error", err)
	}
	if _, ok := e.svc.Sessions().Keyring(aliceUID); ok {
		t.Fatal("session without keys")
	}
}

// TestOathtoolCodeAccepted checks interoperability with an independent RFC 6238
// implementation, the one the design names for users without a phone.
func TestOathtoolCodeAccepted(t *testing.T) {
	path, err := exec.LookPath("oathtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("oathtool is required in CI: apt-get install oathtool")
		}
		t.Skip("oathtool not installed")
	}
	e := newEnv(t)
	secret := e.enrol(t, "alice", aliceUID)
	now := e.clk.now().UTC().Format("2006-01-02 15:04:05")
	out, err := exec.Command(path, "--totp", "-b", "--now", now+" UTC", secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	code := strings.TrimSpace(string(out))
	if code != e.codeAt(t, secret, 0) {
		t.Fatal("oathtool and pquerna/otp disagree on the code")
	}
	if _, err := e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), code); err != nil {
		t.Fatalf("oathtool's code refused: %v", err)
	}
}

func TestKeySealer(t *testing.T) {
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewKeySealer(&k)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := s.Seal([]byte("JBSWY3DPEHPK3PXP"), []byte("ctx-a"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("JBSWY3DPEHPK3PXP")) {
		t.Fatal("plaintext visible")
	}
	if pt, err := s.Open(ct, []byte("ctx-a")); err != nil || string(pt) != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := s.Open(ct, []byte("ctx-b")); !errors.Is(err, ErrSealed) {
		t.Fatalf("other context: err = %v", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := s.Open(ct, []byte("ctx-a")); !errors.Is(err, ErrSealed) {
		t.Fatalf("tampered: err = %v", err)
	}
	if _, err := s.Open(ct[:5], []byte("ctx-a")); !errors.Is(err, ErrSealed) {
		t.Fatalf("short: err = %v", err)
	}
	var zero vault.Key
	if _, err := NewKeySealer(&zero); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero key: err = %v", err)
	}
}
