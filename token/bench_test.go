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
