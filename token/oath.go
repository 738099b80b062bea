package token

import (
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// This file computes and matches the codes of every kind of token: soft TOTP tokens (fixed
// parameters, see totp.go), hardware HOTP tokens (RFC 4226: a counter the device moves on
// each press) and hardware TOTP tokens (RFC 6238 with the device's own step, digits and
// hash, and a drift learned from the codes it gives).

// Token kinds as records store them.
const (
	kindTOTP = "totp" // soft tokens, and hardware tokens that count time
	kindHOTP = "hotp" // hardware tokens that count presses
)

// Windows of the hardware tokens, as privacyIDEA sets them by default.
const (
	// DefaultHOTPWindow is how many counter values past the expected one a login code may
	// come from: presses of the button that never reached dsh.
	DefaultHOTPWindow = 10
	// DefaultSyncWindow is how far resynchronisation looks for two consecutive codes:
	// counter values ahead for HOTP, time steps either side for TOTP.
	DefaultSyncWindow = 1000
)

// hardware reports whether t is a hardware token (assigned from the pool).
func (t *tokenRecord) hardware() bool { return t.Serial != "" }

// usable reports whether t's codes are checked at login: a hardware token is not until its
// owner has set its PIN.
func (t *tokenRecord) usable() bool { return len(t.PIN.Hash) != 0 }

// digitsOf is the length of t's codes.
func (t *tokenRecord) digitsOf() int {
	if t.Digits == 0 {
		return int(totpDigits)
	}
	return t.Digits
}

// periodOf is t's time step in seconds (TOTP).
func (t *tokenRecord) periodOf() int64 {
	if t.Period == 0 {
		return totpPeriod
	}
	return int64(t.Period)
}

func (t *tokenRecord) opts() hotp.ValidateOpts {
	a := otp.AlgorithmSHA1
	switch t.Algo {
	case "SHA256":
		a = otp.AlgorithmSHA256
	case "SHA512":
		a = otp.AlgorithmSHA512
	}
	return hotp.ValidateOpts{Digits: otp.Digits(t.digitsOf()), Algorithm: a}
}

// codeAt is t's code at counter (HOTP) or time step (TOTP: RFC 6238 is HOTP of the step).
func (t *tokenRecord) codeAt(secret string, n int64) (string, error) {
	if n < 0 {
		return "", fmt.Errorf("negative counter")
	}
	return hotp.GenerateCodeCustom(secret, uint64(n), t.opts())
}

// currentStep is the time step of a TOTP token at now, moved by the drift it showed.
func (t *tokenRecord) currentStep(now time.Time) int64 {
	return now.Unix()/t.periodOf() + t.Drift
}

// match finds where code comes from: the time step of a TOTP token within ±1 step of its
// current one, or the counter of an HOTP token within window of the next expected one
// (either way: codes spent recently are found too, for accept to refuse). It
// compares every candidate, so that its time does not tell which matched. Whether the
// code was spent already is for accept to say.
func (t *tokenRecord) match(secret, code string, now time.Time, window int) (int64, bool) {
	if len(code) != t.digitsOf() {
		return 0, false
	}
	if !t.hardware() {
		return matchStep(secret, code, now)
	}
	var from, to int64
	if t.Kind == kindHOTP {
		// The window ahead, and as many counters behind: a code from there is refused by
		// accept, but recognised, so that the audit log says "code replayed".
		from, to = max(int64(t.Counter)-int64(window), 0), int64(t.Counter)+int64(window)-1
	} else {
		cur := t.currentStep(now)
		from, to = cur-totpSkew, cur+totpSkew
	}
	// A match that can still be accepted wins over a spent one: the same code at a counter
	// behind and one ahead is a coincidence (about one in 10^5 for 6 digits), not a replay.
	var found, spent int64
	ok, old := 0, 0
	fresh := t.freshFrom()
	for n := from; n <= to; n++ {
		want, err := t.codeAt(secret, n)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) != 1 {
			continue
		}
		if n >= fresh && ok == 0 {
			found, ok = n, 1
		} else if n < fresh && old == 0 {
			spent, old = n, 1
		}
	}
	if ok == 1 {
		return found, true
	}
	return spent, old == 1
}

// freshFrom is the first counter or time step a code may still come from.
func (t *tokenRecord) freshFrom() int64 {
	if t.Kind == kindHOTP {
		return int64(t.Counter)
	}
	return t.LastStep + 1
}

// accept spends the code match found at n, on the token's current record: false when it
// was spent already (a replay, or an HOTP code older than one used since).
func (t *tokenRecord) accept(n int64, now time.Time) bool {
	if t.Kind == kindHOTP {
		if n < int64(t.Counter) {
			return false
		}
		t.Counter = uint64(n) + 1
	} else {
		if n <= t.LastStep {
			return false
		}
		t.LastStep = n
		if t.hardware() {
			// The device's clock drifts slowly; following it keeps its codes inside ±1 step.
			t.Drift = n - now.Unix()/t.periodOf()
		}
	}
	t.LastUsed = now
	return true
}

// resync finds two consecutive codes within window and moves the token past them: an HOTP
// token's counter (only forward, so that no code used before comes back), a TOTP token's
// drift. It reports whether they were found.
func (t *tokenRecord) resync(secret, code1, code2 string, now time.Time, window int) bool {
	if len(code1) != t.digitsOf() || len(code2) != t.digitsOf() {
		return false
	}
	var from, to int64
	if t.Kind == kindHOTP {
		from, to = int64(t.Counter), int64(t.Counter)+int64(window)-1
	} else {
		cur := now.Unix() / t.periodOf()
		from, to = max(cur-int64(window), t.LastStep+1), cur+int64(window)
	}
	prev, err := t.codeAt(secret, from)
	if err != nil {
		return false
	}
	for n := from; n <= to; n++ {
		next, err := t.codeAt(secret, n+1)
		if err != nil {
			return false
		}
		if subtle.ConstantTimeCompare([]byte(prev), []byte(code1)) == 1 && subtle.ConstantTimeCompare([]byte(next), []byte(code2)) == 1 {
			if t.Kind == kindHOTP {
				t.Counter = uint64(n) + 2
			} else {
				t.LastStep = n + 1
				t.Drift = n + 1 - now.Unix()/t.periodOf()
			}
			t.LastUsed = now
			return true
		}
		prev = next
	}
	return false
}
