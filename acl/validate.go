package acl

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxIDLen bounds user IDs, project names and share names. Names become folder names on the
// S drive and parts of kv keys, so they are short and plain.
const MaxIDLen = 64

// MaxEmailLen is the longest e-mail address accepted (RFC 5321's path limit).
const MaxEmailLen = 254

// MaxUID is the largest uid accepted: uids above it are negative in a signed 32-bit id_t,
// and (uid_t)-1 means "no change" to chown.
const MaxUID = math.MaxInt32

// idRule is said in every error about an ID, so the user knows how to fix it.
const idRule = "use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit"

// validID reports whether s may be a user ID, project or share name. The rule leaves no room
// for ".", "..", "/" or anything a path or a kv key would treat specially.
func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

func checkID(what, s string) error {
	if !validID(s) {
		return fail(ErrInvalid, fmt.Sprintf("%s %s is invalid: %s", what, show(s), idRule))
	}
	return nil
}

// checkEmail is deliberately simple: one '@' with something on either side, no spaces or
// control characters. Whether mail arrives is the operator's business, not ours.
func checkEmail(s string) error {
	bad := func(why string) error {
		return fail(ErrInvalid, fmt.Sprintf("e-mail address %s is invalid: %s", show(s), why))
	}
	if len(s) > MaxEmailLen {
		return bad(fmt.Sprintf("longer than %d bytes", MaxEmailLen))
	}
	if !utf8.ValidString(s) {
		return bad("not UTF-8")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return bad("it holds a space or a control character")
		}
	}
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case !ok || strings.Contains(domain, "@"):
		return bad("it needs exactly one '@'")
	case local == "" || domain == "":
		return bad("it needs a name before and a domain after the '@'")
	case strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, ".."):
		return bad("the domain is malformed")
	}
	return nil
}

func checkUID(uid int) error {
	if uid < 1 || uid > MaxUID {
		return fail(ErrInvalid, fmt.Sprintf("uid %d is invalid: use 1 to %d (uid 0 is the operator, never a DSH user)", uid, MaxUID))
	}
	return nil
}

func checkMode(m Mode) error {
	if !m.valid() {
		return fail(ErrInvalid, fmt.Sprintf("mode %s is invalid: use %q or %q", show(string(m)), ReadWrite, ReadOnly))
	}
	return nil
}

// showLimit bounds how much of a rejected input goes into an error or an audit record.
const showLimit = 64

// show returns s as it may appear in an error message or an audit record: a valid ID as it
// is, anything else quoted (escaping control characters and invalid UTF-8) and cut short,
// so that no input can forge a line or bloat a record.
func show(s string) string {
	if validID(s) {
		return s
	}
	cut := ""
	if len(s) > showLimit {
		s, cut = s[:showLimit], "..."
	}
	return strconv.QuoteToASCII(s) + cut
}

// showEmail leaves a valid address readable in the audit log.
func showEmail(s string) string {
	if checkEmail(s) == nil && strconv.CanBackquote(s) {
		return s
	}
	return show(s)
}
