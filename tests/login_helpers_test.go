package tests

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Credentials every test user enrols with; the tests check none of them ever shows up in
// the audit log, a metric or an error.
const (
	testPassword = "a long test password"
	testPIN      = "2468"
	testAnswers  = "First pet?\tRex\nBirth town?\tLeeds\nFirst school?\tSt Mary's\n"
)

var (
	enrolCodeLine = regexp.MustCompile(`(?m)^enrolment code: (\S+)$`)
	otpauthLine   = regexp.MustCompile(`(?m)^(otpauth://\S+)$`)
	iceCodeLine   = regexp.MustCompile(`(?m)^emergency code: (\d{8})$`)
)

// person is an enrolled user with the secret of one soft token, computing codes with
// oathtool as an authenticator app would.
type person struct {
	e        *env
	id       string
	uid      int
	secret   string
	lastStep int64 // the last TOTP step this test spent, since the daemon refuses replays
}

// enrolmentCode pulls the code out of `user create` or `user enrolment-code` output.
func enrolmentCode(t *testing.T, out string) string {
	t.Helper()
	m := enrolCodeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no enrolment code line in %q", out)
	}
	return m[1]
}

// questionsFile writes a --questions-file readable by uid only.
func (e *env) questionsFile(t *testing.T, uid int, name, content string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	return p
}

// secretOf returns the base32 secret of the otpauth URL printed on a line of its own.
func secretOf(t *testing.T, out string) string {
	t.Helper()
	m := otpauthLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no otpauth URL line in %q", out)
	}
	u, err := url.Parse(m[1])
	if err != nil {
		t.Fatal(err)
	}
	s := u.Query().Get("secret")
	if s == "" {
		t.Fatalf("otpauth URL without a secret: %s", m[1])
	}
	return s
}

// newPerson creates an account (operator), then enrols it from its own uid.
func (e *env) newPerson(t *testing.T, id string, uid int, shares ...string) *person {
	t.Helper()
	args := []string{"user", "create", id, "--uid", itoa(uid), "--email", id + "@example.ac.uk"}
	for _, s := range shares {
		args = append(args, "--share", s)
	}
	code := enrolmentCode(t, e.dsh(0, "", args...).ok(t).stdout)
	q := e.questionsFile(t, uid, "questions-"+id, testAnswers)
	out := e.dsh(uid, testPassword+"\n"+testPIN+"\n", "enroll", "--code", code, "--questions-file", q).ok(t).stdout
	return &person{e: e, id: id, uid: uid, secret: secretOf(t, out)}
}

// totpAt computes the code of secret at time at with oathtool.
func totpAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	oath := requireTool(t, "oathtool")
	out, err := exec.Command(oath, "--totp", "-b", secret, "--now", at.UTC().Format("2006-01-02 15:04:05 UTC")).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// nextCode returns a code for a step the daemon has not seen from this token: now, or the
// next step (inside the ±1 window), waiting for the clock when both are spent.
func (p *person) nextCode(t *testing.T) string {
	t.Helper()
	for {
		cur := time.Now().Unix() / 30
		for _, s := range []int64{cur, cur + 1} {
			if s > p.lastStep {
				p.lastStep = s
				return totpAt(t, p.secret, time.Unix(s*30+1, 0))
			}
		}
		time.Sleep(time.Until(time.Unix((cur+1)*30, 0)) + 50*time.Millisecond)
	}
}

// login logs p in with password, PIN and a fresh code.
func (p *person) login(t *testing.T) result {
	t.Helper()
	return p.e.dsh(p.uid, testPassword+"\n"+testPIN+"\n", "login", "--code", p.nextCode(t))
}

// try attempts a login that is expected to fail, with a code it does not mark as spent
// (a refused login spends nothing).
func (p *person) try(t *testing.T) result {
	t.Helper()
	return p.e.dsh(p.uid, testPassword+"\n"+testPIN+"\n", "login", "--code", totpAt(t, p.secret, time.Now()))
}

// spare creates n more soft tokens for p (who must be logged in), each with the test PIN,
// for tests that log in more often than the TOTP steps allow a single token to.
func (p *person) spare(t *testing.T, n int) []*person {
	t.Helper()
	out := make([]*person, n)
	for i := range out {
		created := p.e.dsh(p.uid, testPIN+"\n", "token", "create").ok(t).stdout
		out[i] = &person{e: p.e, id: p.id, uid: p.uid, secret: secretOf(t, created)}
	}
	return out
}

// as runs dsh as p.
func (p *person) as(args ...string) result { return p.e.dsh(p.uid, "", args...) }
