package token

import (
	"testing"
	"time"
)

// BenchmarkLoginDefaultParams measures a whole token login with the production Argon2id
// parameters: password hash, PIN hash, TOTP check, the store transaction and the keyring.
func BenchmarkLoginDefaultParams(b *testing.B) {
	e := newEnvKDF(b, DefaultPasswordKDF, DefaultShortKDF)
	secret := e.enrol(b, "alice", aliceUID)
	b.ResetTimer()
	for b.Loop() {
		// Each login needs a fresh step, since a code is accepted once.
		e.clk.add(30 * time.Second)
		if err := e.login(secret, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyringKey(b *testing.B) {
	e := newEnv(b)
	secret := e.enrol(b, "alice", aliceUID)
	if err := e.login(secret, 0); err != nil {
		b.Fatal(err)
	}
	s := e.svc.Sessions()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r, ok := s.Keyring(aliceUID); ok {
				r.key("proj-a")
			}
		}
	})
}

// BenchmarkMatchCode measures how a code picks its token, per kind: the HMACs a login
// does besides its two Argon2id hashes (a soft token 3, a hardware HOTP device 20, a
// hardware TOTP device 3).
func BenchmarkMatchCode(b *testing.B) {
	now := time.Unix(1_800_000_015, 0)
	for _, c := range []struct {
		name string
		tok  tokenRecord
	}{
		{"soft", tokenRecord{ID: "s", Kind: kindTOTP}},
		{"hotp", hw(kindHOTP, 8, 0, "")},
		{"totp", hw(kindTOTP, 8, 60, "SHA256")},
	} {
		b.Run(c.name, func(b *testing.B) {
			code := "00000000"[:c.tok.digitsOf()]
			for b.Loop() {
				c.tok.match(rfcB32(), code, now, DefaultHOTPWindow)
			}
		})
	}
}
