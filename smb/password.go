package smb

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// passwordAlphabet has 31 letters and digits that cannot be mistaken for one another when
// typed from a screen into Windows' credential prompt (no 0/O, 1/l/I).
const passwordAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// passwordGroups and groupLen make a password of 24 characters from a 31-letter alphabet
// (about 119 bits), written in six groups of four for typing.
const (
	passwordGroups = 6
	groupLen       = 4
)

// NewPassword returns a fresh random SMB password. dsh never lets a user choose one: Samba
// stores an SMB password as its NT hash (MD4, unsalted), which is fast to guess from, so
// what it hashes must be too long and random to guess, and never a person's dsh password.
func NewPassword() ([]byte, error) {
	out := make([]byte, 0, passwordGroups*(groupLen+1))
	raw := make([]byte, 1)
	for g := 0; g < passwordGroups; g++ {
		if g > 0 {
			out = append(out, '-')
		}
		for n := 0; n < groupLen; {
			if _, err := rand.Read(raw); err != nil {
				clear(out)
				return nil, fmt.Errorf("smb: random password: %w", err)
			}
			// Rejection sampling keeps the letters uniform: 248 is the largest multiple of
			// 31 that fits in a byte.
			if int(raw[0]) >= 248 {
				continue
			}
			out = append(out, passwordAlphabet[int(raw[0])%len(passwordAlphabet)])
			n++
		}
	}
	clear(raw)
	return out, nil
}

// unixName is what a Unix account name may look like for Samba's tools (Debian's
// useradd default, without the trailing $ of machine accounts).
var unixName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ValidUnixName reports whether name can be handed to Samba's tools as an account name.
func ValidUnixName(name string) bool { return unixName.MatchString(name) }

// ErrNoSamba says Samba's password tool is not installed on this host.
var ErrNoSamba = errors.New("smbpasswd (Debian package samba) is not installed")

// SetPassword gives the Unix account name the SMB password pw in the passdb of the Samba
// whose smb.conf is conf, adding and enabling the entry if needed. The password goes to
// smbpasswd on its standard input, never on a command line.
func SetPassword(ctx context.Context, conf, name string, pw []byte) error {
	if !ValidUnixName(name) {
		return fmt.Errorf("smb: %q is not a Unix account name Samba can take", name)
	}
	tool, err := exec.LookPath("smbpasswd")
	if err != nil {
		return ErrNoSamba
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	in := make([]byte, 0, 2*len(pw)+2)
	in = append(append(append(append(in, pw...), '\n'), pw...), '\n')
	defer clear(in)
	steps := []struct {
		what string
		args []string
	}{{"set the password", []string{"-c", conf, "-s", "-a", name}}, {"enable the account", []string{"-c", conf, "-e", name}}}
	for _, st := range steps {
		args := st.args
		cmd := exec.CommandContext(ctx, tool, args...)
		cmd.Stdin = bytes.NewReader(in)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("smb: smbpasswd could not %s of %s: %v: %s", st.what, name, err, oneLine(out.String()))
		}
	}
	return nil
}

// oneLine shortens a tool's output to one line for an error message.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
