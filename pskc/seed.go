// Package pskc reads the seed files that vendors ship with hardware OATH tokens: PSKC
// (RFC 6030) key containers, plain or with their secrets encrypted under a pre-shared
// AES key and authenticated with an HMAC, and a plain CSV of serial and seed. It turns
// them into Seeds and nothing else: it stores nothing, and it must never log, print or
// put a seed into an error message. Seed's String and LogValue leave the secret out.
package pskc

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
)

// Kind is the OATH algorithm of a token.
type Kind string

// The kinds a Seed can have.
const (
	// HOTP is the counter-based algorithm of RFC 4226: the token counts button presses.
	HOTP Kind = "hotp"
	// TOTP is the time-based algorithm of RFC 6238: the token counts time steps.
	TOTP Kind = "totp"
)

// Hash algorithms of the HMAC a token computes (RFC 6238 allows all three; RFC 4226
// tokens are SHA-1).
const (
	SHA1   = "SHA1"
	SHA256 = "SHA256"
	SHA512 = "SHA512"
)

// Bounds a seed must meet. RFC 4226 (R6) requires at least 128 bits of shared secret;
// tokens show 6 to 8 digits; a time step outside a second and ten minutes is no token
// anyone ships.
const (
	MinSecretBytes = 16
	MaxSecretBytes = 128
	MinDigits      = 6
	MaxDigits      = 8
	DefaultDigits  = 6
	DefaultPeriod  = 30
	MaxPeriod      = 600
	// MaxSeeds bounds the tokens of one file.
	MaxSeeds = 100_000
	// MaxFileBytes bounds the size of one file.
	MaxFileBytes = 16 << 20
)

// Seed is one token's key material and parameters as a vendor's file gives them.
type Seed struct {
	// Serial is what is printed on the device (PSKC's DeviceInfo/SerialNo, or the key's Id
	// when the file names no serial).
	Serial string
	Kind   Kind
	// Secret is the shared HMAC key. The caller wipes it (Wipe) once it is stored.
	Secret []byte
	// Digits is the length of a code: 6, 7 or 8.
	Digits int
	// Algorithm is SHA1, SHA256 or SHA512.
	Algorithm string
	// Counter is an HOTP token's next counter value.
	Counter uint64
	// Period is a TOTP token's time step in seconds.
	Period int
	// Manufacturer is the vendor's name when the file gives one; informational.
	Manufacturer string
}

// ErrFormat is wrapped by every error about a file's content. The messages name the key
// or line at fault and what is wrong, never a secret.
var ErrFormat = errors.New("seed file")

// serialPattern is what a serial may look like: it names the token on the command line,
// in URLs of the portal and in the audit log.
var serialPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidSerial reports whether s can name a hardware token.
func ValidSerial(s string) bool { return serialPattern.MatchString(s) }

// check validates a seed, filling in the defaults; where names it in errors.
func (s *Seed) check(where string) error {
	if !ValidSerial(s.Serial) {
		return fmt.Errorf("%w: %s: serial %q is not 1 to 64 letters, digits, '.', '_' or '-'", ErrFormat, where, s.Serial)
	}
	switch s.Kind {
	case HOTP, TOTP:
	default:
		return fmt.Errorf("%w: %s: token type %q is neither hotp nor totp", ErrFormat, where, s.Kind)
	}
	if s.Digits == 0 {
		s.Digits = DefaultDigits
	}
	if s.Digits < MinDigits || s.Digits > MaxDigits {
		return fmt.Errorf("%w: %s: %d digits; tokens show %d to %d", ErrFormat, where, s.Digits, MinDigits, MaxDigits)
	}
	if s.Algorithm == "" {
		s.Algorithm = SHA1
	}
	switch s.Algorithm {
	case SHA1, SHA256, SHA512:
	default:
		return fmt.Errorf("%w: %s: hash algorithm %q is not SHA1, SHA256 or SHA512", ErrFormat, where, s.Algorithm)
	}
	if s.Kind == TOTP {
		if s.Period == 0 {
			s.Period = DefaultPeriod
		}
		if s.Period < 1 || s.Period > MaxPeriod {
			return fmt.Errorf("%w: %s: time step of %d s; expected 1 to %d", ErrFormat, where, s.Period, MaxPeriod)
		}
		if s.Counter != 0 {
			return fmt.Errorf("%w: %s: a time-based token has no counter", ErrFormat, where)
		}
	} else if s.Period != 0 {
		return fmt.Errorf("%w: %s: a counter-based token has no time step", ErrFormat, where)
	}
	if n := len(s.Secret); n < MinSecretBytes || n > MaxSecretBytes {
		return fmt.Errorf("%w: %s: the secret has %d bits; RFC 4226 asks for at least %d (and dsh takes at most %d)",
			ErrFormat, where, 8*n, 8*MinSecretBytes, 8*MaxSecretBytes)
	}
	return nil
}

// Wipe zeroes the secret.
func (s *Seed) Wipe() { clear(s.Secret) }

// String describes the seed without its secret.
func (s Seed) String() string {
	d := fmt.Sprintf("%s %s, %d digits, %s", s.Serial, s.Kind, s.Digits, s.Algorithm)
	if s.Kind == TOTP {
		d += fmt.Sprintf(", %d s step", s.Period)
	} else {
		d += fmt.Sprintf(", counter %d", s.Counter)
	}
	return d
}

// GoString is String, so that %#v does not print the secret either.
func (s Seed) GoString() string { return "pskc.Seed{" + s.String() + "}" }

// LogValue keeps the secret out of structured logs.
func (s Seed) LogValue() slog.Value { return slog.StringValue(s.String()) }

// WipeAll zeroes the secrets of seeds.
func WipeAll(seeds []Seed) {
	for i := range seeds {
		seeds[i].Wipe()
	}
}

// checkAll validates seeds and refuses a serial given twice; on error it wipes them all.
func checkAll(seeds []Seed, where func(i int) string) error {
	seen := make(map[string]int, len(seeds))
	for i := range seeds {
		if err := seeds[i].check(where(i)); err != nil {
			WipeAll(seeds)
			return err
		}
		if j, dup := seen[seeds[i].Serial]; dup {
			WipeAll(seeds)
			return fmt.Errorf("%w: %s: serial %s is also at %s", ErrFormat, where(i), seeds[i].Serial, where(j))
		}
		seen[seeds[i].Serial] = i
	}
	return nil
}

// Format names a seed file format.
type Format string

// The formats Parse reads.
const (
	FormatPSKC Format = "pskc"
	FormatCSV  Format = "csv"
)

// Parse reads a seed file of format; key is the pre-shared key of an encrypted PSKC file
// (nil for a plain one, and for CSV). With format empty, a file whose first non-blank
// byte is '<' is PSKC, anything else CSV.
func Parse(data []byte, format Format, key []byte) ([]Seed, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: the file has %d bytes; at most %d are read", ErrFormat, len(data), MaxFileBytes)
	}
	if format == "" {
		format = FormatCSV
		for _, c := range data {
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0xEF || c == 0xBB || c == 0xBF {
				continue // whitespace, or a UTF-8 byte order mark
			}
			if c == '<' {
				format = FormatPSKC
			}
			break
		}
	}
	switch format {
	case FormatPSKC:
		return ParsePSKC(data, key)
	case FormatCSV:
		if len(key) > 0 {
			return nil, fmt.Errorf("%w: a CSV file is not encrypted; a key is only for PSKC files", ErrFormat)
		}
		return ParseCSV(data)
	}
	return nil, fmt.Errorf("%w: unknown format %q (pskc or csv)", ErrFormat, format)
}
