package token

import (
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters fixed by RFC 6238 and by what authenticator apps assume when an
// otpauth URL leaves them out.
const (
	totpPeriod = 30
	totpDigits = otp.DigitsSix
	// totpSkew is how many steps either side of now a code may come from, for clock drift.
	totpSkew = 1
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1}

// newTOTP generates a fresh 160-bit secret (RFC 4226's recommended size) and its otpauth
// URL. The secret is base32, as apps and oathtool -b take it.
func newTOTP(issuer, account string) (secret, url string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account, Period: totpPeriod,
		SecretSize: 20, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", "", fmt.Errorf("generate TOTP secret: %w", err)
	}
	return k.Secret(), k.URL(), nil
}

// step is the RFC 6238 time step of t.
func step(t time.Time) int64 { return t.Unix() / totpPeriod }

// matchStep returns the time step whose code equals code, trying now-1, now and now+1.
// It computes the codes itself rather than asking the library to validate, so that it
// knows which step matched and can refuse replays. Every candidate is compared, so the
// time taken does not depend on which step matched.
func matchStep(secret, code string, now time.Time) (int64, bool) {
	if len(code) != int(totpDigits) {
		return 0, false
	}
	cur := step(now)
	var found int64
	ok := 0
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		s := cur + d
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*totpPeriod, 0), totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found, ok = s, 1
		}
	}
	return found, ok == 1
}

// secretFromURL returns the base32 secret of an otpauth URL, refusing any URL whose
// parameters differ from what this package issues, since a code computed under other
// parameters would never match.
func secretFromURL(u string) (string, error) {
	k, err := otp.NewKeyFromURL(u)
	if err != nil {
		return "", fmt.Errorf("%w: otpauth URL: %w", ErrInvalid, err)
	}
	if k.Type() != "totp" || k.Period() != totpPeriod || k.Digits() != totpDigits || k.Algorithm() != otp.AlgorithmSHA1 {
		return "", fmt.Errorf("%w: otpauth URL: not a 6-digit 30 s SHA-1 TOTP key", ErrInvalid)
	}
	if k.Secret() == "" {
		return "", fmt.Errorf("%w: otpauth URL: no secret", ErrInvalid)
	}
	return k.Secret(), nil
}
