package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"dsh/mail/mailtest"
)

// Uids of the mail tests' cast.
const (
	uidMailAlice = 2401 + iota
	uidMailBob
	uidMailIAO
)

// relay is a real SMTP server (go-smtp) with STARTTLS and AUTH, as the operator's relay.
type relay struct {
	*mailtest.Server
	args []string // dsh serve's flags for it
}

// startRelay starts the server and writes the files dsh serve reads: the relay password
// (never a flag) and the certificate to trust.
func (e *env) startRelay(t *testing.T) *relay {
	t.Helper()
	s, err := mailtest.Start("dsh-relay", "relay password 2468 x")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pass := filepath.Join(e.dir, "relay-password")
	ca := filepath.Join(e.dir, "relay-ca.pem")
	if err := os.WriteFile(pass, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, s.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &relay{Server: s, args: []string{"--smtp-relay", s.Addr, "--smtp-from", "DSH <dsh@haven.test>", "--smtp-user", s.User,
		"--smtp-password-file", pass, "--smtp-ca-file", ca}}
}

// next waits for the message that arrives after the first n, and returns it.
func (r *relay) next(t *testing.T, n int) mailtest.Received {
	t.Helper()
	msgs, err := r.Wait(n+1, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n]
}

// find waits for a message to addr whose subject contains subject.
func (r *relay) find(t *testing.T, addr, subject string) mailtest.Received {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, m := range r.Messages() {
			if len(m.To) == 1 && m.To[0] == addr && strings.Contains(m.Header("Subject"), subject) {
				return m
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, m := range r.Messages() {
				got = append(got, strings.Join(m.To, ",")+": "+m.Header("Subject"))
			}
			t.Fatalf("no message %q to %s; got %q", subject, addr, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var linkLine = regexp.MustCompile(`https://\S+/claim#user=(\w+)&code=([A-Z2-7]{20})`)

// checkMessage checks what every message must be and must not hold: from the relay's
// user over TLS, the footer, and none of forbidden in its headers or body.
func checkMessage(t *testing.T, m mailtest.Received, forbidden ...string) {
	t.Helper()
	if !m.TLS || m.AuthUser != "dsh-relay" || m.From != "dsh@haven.test" {
		t.Fatalf("message %q not sent over TLS as the relay's user: %+v", m.Header("Subject"), m)
	}
	body := m.Body()
	if !strings.Contains(body, "never contains your password, PIN or") {
		t.Errorf("message %q lacks the footer:\n%s", m.Header("Subject"), body)
	}
	all := string(m.Data) + body
	for _, f := range append(forbidden, "otpauth", "secret=", testPassword) {
		if f != "" && strings.Contains(all, f) {
			t.Fatalf("message %q holds %q:\n%s", m.Header("Subject"), f, body)
		}
	}
}

// TestMailThroughRelay: enrolment codes, notices of token, credential and membership
// changes, lockouts and ICE codes reach a real SMTP server over STARTTLS with AUTH, each
// with what it must say and nothing secret; a soft token sent by e-mail is a one-time
// link that works once with the password; a relay that hangs or refuses holds up no
// command, and what it refused is sent after a restart.
func TestMailThroughRelay(t *testing.T) {
	e := newEnv(t)
	rl := e.startRelay(t)
	e.start(true, append([]string{"--lockout-threshold", "2", "--lockout-duration", "2s"}, rl.args...)...)
	if strings.Contains(e.serverLog(), rl.Password) {
		t.Fatal("the relay password is in the daemon's log")
	}
	status := e.dsh(0, "", "mail", "status").ok(t).stdout
	if !strings.Contains(status, "relay: "+rl.Addr+" (starttls, as dsh-relay)") || strings.Contains(status, rl.Password) {
		t.Fatalf("mail status:\n%s", status)
	}
	e.dsh(uidMailAlice, "", "mail", "status").fails(t, 2, "operator")

	// A new account: the enrolment code is printed and mailed, the only code a message
	// may hold.
	iao := e.newPerson(t, "iao", uidMailIAO)
	e.dsh(0, "", "project", "create", "p1", "--iao", "iao").ok(t)
	iao.login(t).ok(t)
	iao.as("share", "create", "s1", "--project", "p1").ok(t)
	create := e.dsh(0, "", "user", "create", "alice", "--uid", itoa(uidMailAlice), "--email", "alice@example.ac.uk").ok(t)
	code := enrolmentCode(t, create.stdout)
	if !strings.Contains(create.stdout, "also on its way to alice@example.ac.uk") {
		t.Fatalf("user create:\n%s", create.stdout)
	}
	m := rl.find(t, "alice@example.ac.uk", "Your enrolment code")
	checkMessage(t, m)
	if !strings.Contains(m.Body(), "dsh enroll --code "+code) {
		t.Fatalf("the enrolment message lacks the code:\n%s", m.Body())
	}
	q := e.questionsFile(t, uidMailAlice, "q-alice", testAnswers)
	out := e.dsh(uidMailAlice, testPassword+"\n"+testPIN+"\n", "enroll", "--code", code, "--questions-file", q).ok(t).stdout
	alice := &person{e: e, id: "alice", uid: uidMailAlice, secret: secretOf(t, out)}
	alice.login(t).ok(t)
	forbidden := []string{alice.secret, code}

	// Notices: a new token, a membership, a password change.
	tok := e.dsh(uidMailAlice, "1357\n", "token", "create").ok(t).stdout
	newSecret := secretOf(t, tok)
	m = rl.find(t, "alice@example.ac.uk", "A new soft token")
	checkMessage(t, m, append([]string{newSecret}, forbidden...)...)
	if !strings.Contains(m.Body(), "From: the command line") {
		t.Fatalf("the token notice does not say where it came from:\n%s", m.Body())
	}
	iao.as("share", "add", "s1", "alice", "--read-only").ok(t)
	m = rl.find(t, "alice@example.ac.uk", "You were added to share s1")
	checkMessage(t, m, forbidden...)
	if !strings.Contains(m.Body(), "read-only member of the share s1") {
		t.Fatalf("membership notice:\n%s", m.Body())
	}
	iao.as("share", "remove", "s1", "alice").ok(t)
	checkMessage(t, rl.find(t, "alice@example.ac.uk", "You were removed from share s1"), forbidden...)
	newPW := "a new long test password"
	e.dsh(uidMailAlice, testPassword+"\n"+testPIN+"\n"+newPW+"\n", "passwd", "--code", alice.nextCode(t)).ok(t)
	m = rl.find(t, "alice@example.ac.uk", "Your password was changed")
	checkMessage(t, m, append([]string{newPW}, forbidden...)...)
	second := &person{e: e, id: "alice", uid: uidMailAlice, secret: newSecret}
	e.dsh(uidMailAlice, newPW+"\n1357\n"+testPassword+"\n", "passwd", "--code", second.nextCode(t)).ok(t)

	// ICE: the notice says a code was issued, never the code.
	ice := e.dsh(uidMailAlice, testPassword+"\n", "ice", "--user", "alice", "--questions-file", q).ok(t).stdout
	iceCode := iceCodeLine.FindStringSubmatch(ice)[1]
	m = rl.find(t, "alice@example.ac.uk", "An emergency (ICE) code was issued")
	checkMessage(t, m, append([]string{iceCode}, forbidden...)...)
	// Lockout.
	alice.as("logout").ok(t)
	for i := 0; i < 2; i++ {
		e.dsh(uidMailAlice, testPassword+"\n0000\n", "login", "--code", "000000").fails(t, 2, "wrong")
	}
	m = rl.find(t, "alice@example.ac.uk", "Your account is locked")
	checkMessage(t, m, forbidden...)
	if !strings.Contains(m.Body(), "until") {
		t.Fatalf("lockout notice:\n%s", m.Body())
	}
	time.Sleep(2500 * time.Millisecond)

	// A soft token by e-mail: the operator sends a one-time link; the message holds the
	// link, never the token; the link needs the password, works once, and the token it
	// makes logs in.
	alice.as("token", "send", "alice").fails(t, 2, "operator")
	sent := e.dsh(0, "", "token", "send", "alice").ok(t).stdout
	if !strings.Contains(sent, "queued for alice <alice@example.ac.uk>") {
		t.Fatalf("token send: %s", sent)
	}
	m = rl.find(t, "alice@example.ac.uk", "Your Token (MobileID)")
	checkMessage(t, m, forbidden...)
	lm := linkLine.FindStringSubmatch(m.Body())
	if lm == nil || lm[1] != "alice" || !strings.HasPrefix(lm[0], "https://"+e.portal+"/claim#") {
		t.Fatalf("no one-time link to the portal in:\n%s", m.Body())
	}
	linkCode := lm[2]
	e.dsh(uidMailAlice, "not the password\n2222\n", "token", "claim", "--code", linkCode).fails(t, 2, "wrong")
	e.dsh(uidMailBob, testPassword+"\n2222\n", "token", "claim", "--code", linkCode, "--user", "alice").fails(t, 2, "wrong")
	claimed := e.dsh(uidMailAlice, testPassword+"\n2222\n", "token", "claim", "--code", linkCode).ok(t).stdout
	mailed := &person{e: e, id: "alice", uid: uidMailAlice, secret: secretOf(t, claimed)}
	e.dsh(uidMailAlice, testPassword+"\n2222\n", "token", "claim", "--code", linkCode).fails(t, 2, "wrong")
	if strings.Contains(m.Body(), mailed.secret) {
		t.Fatal("the mailed link message holds the token's secret")
	}
	e.dsh(uidMailAlice, testPassword+"\n2222\n", "login", "--code", mailed.nextCode(t)).ok(t)

	// A relay that hangs holds up nothing: commands that cause notices return.
	release := rl.Hang()
	before := len(rl.Messages())
	e.dsh(uidMailAlice, "1470\n", "token", "create").ok(t)
	waitUntil(t, "the relay to hold a message", rl.Hanging)
	e.dsh(uidMailAlice, "1471\n", "token", "create").ok(t)
	alice.as("logout").ok(t)
	e.dsh(uidMailAlice, testPassword+"\n2222\n", "login", "--code", mailed.nextCode(t)).ok(t)
	release()
	rl.Wait(before+2, 60*time.Second)

	// A relay that refuses: the messages wait in the outbox (encrypted in the store), are
	// retried, and survive a restart of the daemon.
	rl.SetFailing(true)
	before = len(rl.Messages())
	e.dsh(uidMailAlice, "1472\n", "token", "create").ok(t)
	iao.as("share", "add", "s1", "alice").ok(t)
	waitUntil(t, "a failed attempt", func() bool {
		st := e.dsh(0, "", "mail", "status").ok(t).stdout
		return strings.Contains(st, "waiting: 2") && strings.Contains(st, "451")
	})
	for _, want := range []string{`dsh_mail_messages_total{kind="token_link",result="sent"} 1`, `dsh_mail_messages_total{kind="enrolment",result="sent"} 2`,
		`dsh_mail_messages_total{kind="notice",result="retried"}`, `dsh_mail_messages_total{kind="notice",result="refused"} 0`} {
		waitUntil(t, "metrics to show "+want, func() bool { return strings.Contains(e.scrape(), want) })
	}
	e.stop()
	rl.SetFailing(false)
	if got := len(rl.Messages()); got != before {
		t.Fatalf("%d messages went through a refusing relay", got-before)
	}
	e.start(true, rl.args...)
	checkMessage(t, rl.find(t, "alice@example.ac.uk", "You were added to share s1"), forbidden...)
	waitUntil(t, "the outbox to empty after the restart", func() bool {
		return strings.Contains(e.dsh(0, "", "mail", "status").ok(t).stdout, "waiting: 0")
	})
	// The store holds no message in plain text.
	if out := e.shOK(t, 0, "grep -rl 'Your Token' "+e.data+" || true"); strings.TrimSpace(out) != "" {
		t.Fatalf("a message is in plain text in the store: %s", out)
	}

	// A test message from the operator.
	e.dsh(0, "", "mail", "test", "--to", "ops@example.ac.uk").ok(t)
	checkMessage(t, rl.find(t, "ops@example.ac.uk", "Test message"))
	// The relay has the message a moment before the daemon counts it as sent.
	for _, want := range []string{`dsh_mail_messages_total{kind="notice",result="sent"} 2`, `dsh_mail_messages_total{kind="test",result="sent"} 1`, "dsh_mail_outbox_messages 0"} {
		waitUntil(t, "metrics to show "+want, func() bool { return strings.Contains(e.scrape(), want) })
	}
	audit := e.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{"mail.sent", "token.link.issue", "token.link.claim"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	for _, secret := range []string{linkCode, rl.Password, alice.secret, mailed.secret} {
		if strings.Contains(audit, secret) || strings.Contains(e.serverLog(), secret) {
			t.Fatalf("a secret reached the audit log or the daemon's log")
		}
	}
}

// waitUntil polls cond for up to a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
