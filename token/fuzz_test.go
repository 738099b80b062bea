package token

import (
	"strings"
	"testing"
	"time"
)

func FuzzSecretFromURL(f *testing.F) {
	_, good, err := newTOTP("DSH", "alice")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("otpauth://totp/DSH:alice?secret=JBSWY3DPEHPK3PXP&issuer=DSH")
	f.Add("otpauth://hotp/DSH:alice?secret=JBSWY3DPEHPK3PXP")
	f.Add("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=8")
	f.Add("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=SHA256")
	f.Add("otpauth://totp/x?period=60&secret=AA")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, u string) {
		secret, err := secretFromURL(u)
		if err != nil {
			return
		}
		if secret == "" {
			t.Fatal("accepted a URL without a secret")
		}
		// Whatever is accepted must work with the validator without panicking.
		matchStep(secret, "123456", time.Unix(1_800_000_000, 0))
	})
}

func FuzzMatchStep(f *testing.F) {
	const secret = "JBSWY3DPEHPK3PXP"
	f.Add("123456", int64(1_800_000_000))
	f.Add("", int64(0))
	f.Add("12345a", int64(-1))
	f.Add("1234567", int64(1<<40))
	f.Fuzz(func(t *testing.T, code string, unix int64) {
		now := time.Unix(unix, 0)
		st, ok := matchStep(secret, code, now)
		if !ok {
			return
		}
		if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
			t.Fatalf("accepted malformed code %q", code)
		}
		if d := st - step(now); d < -totpSkew || d > totpSkew {
			t.Fatalf("matched step %d outside the window of %d", st, step(now))
		}
	})
}
