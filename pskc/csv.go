package pskc

import (
	"bytes"
	"encoding/base32"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseCSV reads the plain seed format (README, "Hardware tokens"): one token per line,
//
//	serial, seed [, type [, digits [, step [, counter]]]]
//
// serial names the device; seed is hex, or base32 (A-Z, 2-7, padding optional); a seed
// that is both (only digits and A-F) is read as hex unless written "base32:SEED", and
// "hex:SEED" forces hex. type is hotp (the default) or totp, digits 6 (default) to 8, step
// a TOTP token's time step in seconds (default 30; ignored for HOTP), counter an HOTP
// token's next counter (default 0). Blank lines and lines starting with '#' are skipped,
// and so is a first line whose first field is "serial" (a header). The first five columns
// are privacyIDEA's, so its token files import as they are.
func ParseCSV(data []byte) ([]Seed, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: the file has %d bytes; at most %d are read", ErrFormat, len(data), MaxFileBytes)
	}
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	var seeds []Seed
	var lines []int
	first := true
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			WipeAll(seeds)
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%w: line %d: %v", ErrFormat, pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		line, _ := r.FieldPos(0)
		isHeader := first && strings.EqualFold(strings.TrimSpace(rec[0]), "serial")
		first = false
		if isHeader || (len(rec) == 1 && strings.TrimSpace(rec[0]) == "") {
			continue
		}
		if len(seeds) == MaxSeeds {
			WipeAll(seeds)
			return nil, fmt.Errorf("%w: more than %d tokens; import the file in parts", ErrFormat, MaxSeeds)
		}
		s, err := csvSeed(rec, line)
		for i := range rec {
			rec[i] = "" // drop the reference to the seed's text before the next line
		}
		if err != nil {
			WipeAll(seeds)
			return nil, err
		}
		seeds = append(seeds, s)
		lines = append(lines, line)
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: the file holds no token", ErrFormat)
	}
	if err := checkAll(seeds, func(i int) string { return fmt.Sprintf("line %d", lines[i]) }); err != nil {
		return nil, err
	}
	return seeds, nil
}

func csvSeed(rec []string, line int) (Seed, error) {
	f := func(i int) string {
		if i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	if len(rec) < 2 || len(rec) > 6 {
		return Seed{}, fmt.Errorf("%w: line %d: %d fields; expected serial, seed and up to four more (type, digits, step, counter)", ErrFormat, line, len(rec))
	}
	s := Seed{Serial: f(0), Kind: HOTP}
	if t := strings.ToLower(f(2)); t != "" {
		s.Kind = Kind(t)
	}
	var err error
	if v := f(3); v != "" {
		if s.Digits, err = strconv.Atoi(v); err != nil {
			return Seed{}, fmt.Errorf("%w: line %d: digits %q is not a number", ErrFormat, line, v)
		}
	}
	if v := f(4); v != "" {
		if s.Period, err = strconv.Atoi(v); err != nil {
			return Seed{}, fmt.Errorf("%w: line %d: step %q is not a number of seconds", ErrFormat, line, v)
		}
		if s.Kind == HOTP {
			s.Period = 0 // privacyIDEA writes a step for HOTP tokens too; it means nothing
		}
	}
	if v := f(5); v != "" {
		if s.Counter, err = strconv.ParseUint(v, 10, 64); err != nil {
			return Seed{}, fmt.Errorf("%w: line %d: counter %q is not a number", ErrFormat, line, v)
		}
	}
	if s.Secret, err = decodeSeed(f(1)); err != nil {
		return Seed{}, fmt.Errorf("%w: line %d: %v", ErrFormat, line, err)
	}
	return s, nil
}

// decodeSeed reads a seed written in hex or base32 (see ParseCSV). The error never
// quotes the seed.
func decodeSeed(v string) ([]byte, error) {
	if v == "" {
		return nil, errors.New("no seed")
	}
	lower := strings.ToLower(v)
	switch {
	case strings.HasPrefix(lower, "hex:"):
		return decodeHex(v[4:])
	case strings.HasPrefix(lower, "base32:"):
		return decodeBase32(v[7:])
	}
	if b, err := hex.DecodeString(v); err == nil {
		return b, nil
	}
	return decodeBase32(v)
}

func decodeHex(v string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, errors.New("the seed is not hex")
	}
	return b, nil
}

func decodeBase32(v string) ([]byte, error) {
	v = strings.ToUpper(strings.TrimRight(strings.ReplaceAll(strings.TrimSpace(v), " ", ""), "="))
	b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(v)
	if err != nil {
		return nil, errors.New("the seed is neither hex nor base32")
	}
	return b, nil
}
