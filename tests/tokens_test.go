package tests

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Uids of the token tests' cast.
const (
	uidAlice = 2101 + iota
	uidBob
	uidIAO
	uidStranger
)

// setupProject makes project p1 with an enrolled, logged-in IAO and share s1.
func setupProject(t *testing.T, e *env) *person {
	t.Helper()
	iao := e.newPerson(t, "iao", uidIAO)
	e.dsh(0, "", "project", "create", "p1", "--iao", "iao").ok(t)
	// IAO actions need a two-factor session.
	iao.as("share", "create", "s1", "--project", "p1").fails(t, 2, "needs an active two-factor session")
	iao.login(t).ok(t)
	iao.as("share", "create", "s1", "--project", "p1").ok(t)
	return iao
}

func TestEnrolLoginTokensPasswd(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	setupProject(t, e)

	// Enrolment: the code is printed on its own line, used once, from the user's own uid.
	create := e.dsh(0, "", "user", "create", "alice", "--uid", itoa(uidAlice), "--email", "alice@example.ac.uk", "--share", "s1").ok(t)
	code := enrolmentCode(t, create.stdout)
	q := e.questionsFile(t, uidAlice, "q-alice", testAnswers)
	qs := e.questionsFile(t, uidStranger, "q-stranger", testAnswers)
	enrol := func(uid int, stdin, qfile string) result {
		return e.dsh(uid, stdin, "enroll", "--code", code, "--questions-file", qfile)
	}
	good := testPassword + "\n" + testPIN + "\n"
	enrol(uidAlice, "short pw\n"+testPIN+"\n", q).fails(t, 2, "at least 12")
	enrol(uidAlice, testPassword+"\n12a4\n", q).fails(t, 2, "4 digits")
	enrol(uidAlice, testPassword+"\n12345\n", q).fails(t, 2, "4 digits")
	enrol(uidStranger, good, qs).fails(t, 2, "wrong user ID, password, PIN or code")
	bad := e.questionsFile(t, uidAlice, "q-bad", "only one line\n")
	enrol(uidAlice, good, bad).fails(t, 1, "question<TAB>answer")
	e.dsh(uidAlice, good, "enroll", "--code", "not-the-code", "--questions-file", q).fails(t, 2, "enrolment code invalid, used or expired")
	out := enrol(uidAlice, good, q).ok(t).stdout
	secret := secretOf(t, out)
	if !strings.ContainsAny(out, "█▀▄") {
		t.Fatalf("enroll printed no QR code:\n%s", out)
	}
	enrol(uidAlice, good, q).fails(t, 2, "enrolment code invalid, used or expired")
	alice := &person{e: e, id: "alice", uid: uidAlice, secret: secret}

	// Before login: no session, and nothing that needs one works.
	if got := alice.as("status").ok(t).stdout; !strings.Contains(got, "not logged in") {
		t.Fatalf("status before login: %q", got)
	}
	alice.as("token", "list").fails(t, 2, "session")

	// Wrong factors: one message, whichever factor was wrong.
	const wrong = "wrong user ID, password, PIN or code"
	codeNow := totpAt(t, secret, time.Now())
	e.dsh(uidAlice, "wrong password!!\n"+testPIN+"\n", "login", "--code", codeNow).fails(t, 2, wrong)
	e.dsh(uidAlice, testPassword+"\n9999\n", "login", "--code", codeNow).fails(t, 2, wrong)
	e.dsh(uidAlice, good, "login", "--code", "000000").fails(t, 2, wrong)
	e.dsh(uidAlice, good, "login", "--user", "iao", "--code", codeNow).fails(t, 2, wrong)
	e.dsh(uidStranger, good, "login", "--user", "alice", "--code", codeNow).fails(t, 2, wrong)
	e.dsh(uidAlice, good, "login").fails(t, 1, "exactly one of --code and --emergency-code")
	e.dsh(uidAlice, good, "login", "--code", "12345").fails(t, 2, "6 digits")

	// A good login, shown by status with the share and the end of the session.
	c := alice.nextCode(t)
	got := e.dsh(uidAlice, good, "login", "--user", "alice", "--code", c).ok(t).stdout
	if !strings.Contains(got, "logged in as alice until") || !regexp.MustCompile(`s1\s+p1\s+read-write`).MatchString(got) {
		t.Fatalf("login said %q", got)
	}
	st := alice.as("status").ok(t).stdout
	if !strings.Contains(st, "logged in as alice (uid 2101) until") || !strings.Contains(st, "left") || !strings.Contains(st, "s1") {
		t.Fatalf("status: %q", st)
	}
	// The same code again is a replay, refused even inside its window.
	e.dsh(uidAlice, good, "login", "--code", c).fails(t, 2, wrong)

	// Tokens: list never shows a secret; create, set-pin, revoke.
	list := alice.as("token", "list").ok(t).stdout
	if !strings.Contains(list, "totp") || strings.Contains(list, secret) {
		t.Fatalf("token list: %q", list)
	}
	firstID := strings.Fields(strings.Split(strings.TrimSpace(list), "\n")[1])[0]
	e.dsh(uidAlice, "12\n", "token", "create").fails(t, 2, "4 digits")
	created := e.dsh(uidAlice, "1357\n", "token", "create").ok(t).stdout
	second := &person{e: e, id: "alice", uid: uidAlice, secret: secretOf(t, created)}
	// Codes for attempts that must fail are not marked as spent: a refused login spends nothing.
	peek := func(p *person) string { return totpAt(t, p.secret, time.Now()) }
	e.dsh(uidAlice, good, "login", "--code", peek(second)).fails(t, 2, wrong) // its PIN is 1357
	e.dsh(uidAlice, testPassword+"\n1357\n", "login", "--code", second.nextCode(t)).ok(t)
	secondID := ""
	for _, line := range strings.Split(alice.as("token", "list").ok(t).stdout, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 && f[0] != firstID {
			secondID = f[0]
		}
	}
	e.dsh(uidAlice, "8642\n", "token", "set-pin", secondID).ok(t)
	e.dsh(uidAlice, "8642\n", "token", "set-pin", "nosuchtoken").fails(t, 2, "not found")
	e.dsh(uidAlice, testPassword+"\n1357\n", "login", "--code", peek(second)).fails(t, 2, wrong)
	e.dsh(uidAlice, testPassword+"\n8642\n", "login", "--code", second.nextCode(t)).ok(t)
	// A revoked token's codes stop working at once: a step it never used is refused.
	alice.as("token", "revoke", firstID).ok(t)
	alice.as("token", "revoke", firstID).fails(t, 2, "not found")
	if l := alice.as("token", "list").ok(t).stdout; strings.Contains(l, firstID) {
		t.Fatalf("revoked token still listed: %q", l)
	}
	e.dsh(uidAlice, good, "login", "--code", totpAt(t, secret, time.Now().Add(30*time.Second))).fails(t, 2, wrong)

	// Password change needs the current password, the PIN and a code.
	third := &person{e: e, id: "alice", uid: uidAlice, secret: secretOf(t, e.dsh(uidAlice, "3333\n", "token", "create").ok(t).stdout)}
	newPW := "another long password"
	e.dsh(uidAlice, "wrong password!!\n3333\n"+newPW+"\n", "passwd", "--code", peek(third)).fails(t, 2, wrong)
	e.dsh(uidAlice, testPassword+"\n3333\nshort\n", "passwd", "--code", peek(third)).fails(t, 2, "at least 12")
	e.dsh(uidAlice, testPassword+"\n3333\n"+newPW+"\n", "passwd", "--code", third.nextCode(t)).ok(t)
	e.dsh(uidAlice, testPassword+"\n3333\n", "login", "--code", peek(third)).fails(t, 2, wrong)
	e.dsh(uidAlice, newPW+"\n3333\n", "login", "--code", third.nextCode(t)).ok(t)

	// Logout ends the session; a second logout says there is none.
	alice.as("logout").ok(t)
	if got := alice.as("status").ok(t).stdout; !strings.Contains(got, "not logged in") {
		t.Fatalf("status after logout: %q", got)
	}
	alice.as("logout").fails(t, 2, "no session")

	// Every event is audited, and no secret reaches the audit log or the metrics.
	audit := e.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{"token.enrol", "token.login.token", "token.create", "token.revoke", "token.set-pin", "token.passwd", "token.session.end"} {
		if !strings.Contains(audit, want) {
			t.Fatalf("audit log has no %s:\n%s", want, audit)
		}
	}
	scrape := e.scrape()
	for _, secretText := range []string{testPassword, newPW, secret, second.secret, third.secret, code, "Leeds", "St Mary's"} {
		if strings.Contains(audit, secretText) || strings.Contains(scrape, secretText) || strings.Contains(e.serverLog(), secretText) {
			t.Fatalf("a secret (%q) leaked into the audit log, the metrics or the daemon's log", secretText)
		}
	}
	// PINs are short, so look for them as whole words (timestamps are full of digits).
	for _, pin := range []string{testPIN, "1357", "8642", "3333"} {
		w := regexp.MustCompile(`\b` + pin + `\b`)
		if w.MatchString(audit) || w.MatchString(e.serverLog()) {
			t.Fatalf("a PIN (%s) leaked into the audit log or the daemon's log", pin)
		}
	}
	if v := metricValue(t, scrape, `dsh_logins_total{method="token",result="ok"}`); v == "0" {
		t.Fatal("successful logins not counted")
	}
	if v := metricValue(t, scrape, `dsh_logins_total{method="token",result="denied"}`); v == "0" {
		t.Fatal("failed logins not counted")
	}
	if v := metricValue(t, scrape, "dsh_sessions_active"); v != "1" { // the IAO
		t.Fatalf("dsh_sessions_active = %s, want 1", v)
	}
}

// The ±1 step window, with codes computed by oathtool for the neighbouring steps.
func TestTOTPWindow(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	bob := e.newPerson(t, "bob", uidBob)
	login := func(at time.Time) result {
		return e.dsh(uidBob, testPassword+"\n"+testPIN+"\n", "login", "--code", totpAt(t, bob.secret, at))
	}
	// Keep clear of a step boundary, so "now" means the same step to oathtool and the daemon.
	if s := time.Now().Unix() % 30; s > 25 {
		time.Sleep(time.Duration(31-s) * time.Second)
	}
	now := time.Now()
	login(now.Add(-90*time.Second)).fails(t, 2, "wrong")
	login(now.Add(90*time.Second)).fails(t, 2, "wrong")
	login(now.Add(-30 * time.Second)).ok(t) // one step behind: clock drift
	login(now.Add(30 * time.Second)).ok(t)  // one step ahead
	login(now).fails(t, 2, "wrong")         // an earlier step than one already used
}

func TestLockoutAndICE(t *testing.T) {
	e := newEnv(t)
	e.start(true, "--lockout-threshold", "3", "--lockout-duration", "4s", "--ice-validity", "3s")
	bob := e.newPerson(t, "bob", uidBob)
	good := testPassword + "\n" + testPIN + "\n"

	for i := 0; i < 3; i++ {
		e.dsh(uidBob, good, "login", "--code", "000000").fails(t, 2, "wrong user ID, password, PIN or code")
	}
	// Locked: even the right credentials fail, and the message says until when.
	r := e.dsh(uidBob, good, "login", "--code", totpAt(t, bob.secret, time.Now())).fails(t, 2, "locked until")
	_ = r
	if v := metricValue(t, e.scrape(), "dsh_lockouts_total"); v != "1" {
		t.Fatalf("dsh_lockouts_total = %s", v)
	}
	time.Sleep(4500 * time.Millisecond)
	bob.login(t).ok(t)
	bob.as("logout").ok(t)

	// ICE: the answers are case-sensitive; the code works once.
	q := e.questionsFile(t, uidBob, "q-bob", testAnswers)
	qWrong := e.questionsFile(t, uidBob, "q-bob-wrong", strings.Replace(testAnswers, "Leeds", "leeds", 1))
	e.dsh(uidBob, testPassword+"\n", "ice", "--user", "bob", "--questions-file", qWrong).fails(t, 2, "wrong")
	e.dsh(uidBob, "wrong password!!\n", "ice", "--user", "bob", "--questions-file", q).fails(t, 2, "wrong")
	e.dsh(uidStranger, testPassword+"\n", "ice", "--user", "bob", "--questions-file", e.questionsFile(t, uidStranger, "q-s", testAnswers)).fails(t, 2, "wrong")
	out := e.dsh(uidBob, testPassword+"\n", "ice", "--user", "bob", "--questions-file", q).ok(t).stdout
	m := iceCodeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no emergency code line in %q", out)
	}
	e.dsh(uidBob, "wrong password!!\n", "login", "--emergency-code", m[1]).fails(t, 2, "wrong")
	e.dsh(uidBob, testPassword+"\n", "login", "--emergency-code", m[1]).ok(t)
	// After an ICE login the user can make a new soft token.
	fresh := &person{e: e, id: "bob", uid: uidBob, secret: secretOf(t, e.dsh(uidBob, "1111\n", "token", "create").ok(t).stdout)}
	bob.as("logout").ok(t)
	e.dsh(uidBob, testPassword+"\n", "login", "--emergency-code", m[1]).fails(t, 2, "wrong")
	e.dsh(uidBob, testPassword+"\n1111\n", "login", "--code", fresh.nextCode(t)).ok(t)

	// An emergency code expires.
	out = e.dsh(uidBob, testPassword+"\n", "ice", "--user", "bob", "--questions-file", q).ok(t).stdout
	m = iceCodeLine.FindStringSubmatch(out)
	time.Sleep(3500 * time.Millisecond)
	e.dsh(uidBob, testPassword+"\n", "login", "--emergency-code", m[1]).fails(t, 2, "wrong")

	// New security questions (password, PIN and a fresh code): the old answers stop working.
	newQs := "Favourite river?\tTyne\nFirst car?\tMini\nGrandmother's name?\tEdith\n"
	qNew := e.questionsFile(t, uidBob, "q-bob-new", newQs)
	e.dsh(uidBob, testPassword+"\n9999\n", "questions", "--code", totpAt(t, fresh.secret, time.Now()), "--questions-file", qNew).fails(t, 2, "wrong user ID, password, PIN or code")
	e.dsh(uidBob, testPassword+"\n1111\n", "questions", "--code", fresh.nextCode(t), "--questions-file", qNew).ok(t)
	e.dsh(uidBob, testPassword+"\n", "ice", "--user", "bob", "--questions-file", q).fails(t, 2, "wrong")
	e.dsh(uidBob, testPassword+"\n", "ice", "--user", "bob", "--questions-file", qNew).ok(t)

	audit := e.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{"token.lockout", "token.ice.issue", "token.login.ice", "token.questions"} {
		if !strings.Contains(audit, want) {
			t.Fatalf("audit log has no %s:\n%s", want, audit)
		}
	}
	if strings.Contains(audit, m[1]) {
		t.Fatal("an emergency code reached the audit log")
	}
}

// A session's keyring follows membership at once, and disable, expiry and seal end it.
func TestSessionFollowsMembershipAndEnds(t *testing.T) {
	e := newEnv(t)
	ttl := 5 * time.Second
	if os.Getenv("DSH_E2E_RACE") == "1" {
		ttl = 45 * time.Second // a race-built daemon is slow to hash passwords
	}
	e.start(true, "--session-ttl", ttl.String())
	iao := setupProject(t, e)
	alice := e.newPerson(t, "alice", uidAlice)
	alice.login(t).ok(t)
	shares := func() string { return alice.as("status").ok(t).stdout }
	if strings.Contains(shares(), "s1") {
		t.Fatal("s1 in the keyring before alice was added")
	}
	iao.as("share", "add", "s1", "alice").ok(t)
	if !regexp.MustCompile(`s1\s+p1\s+read-write`).MatchString(shares()) {
		t.Fatalf("added share not in the live session: %q", shares())
	}
	iao.as("share", "remove", "s1", "alice").ok(t)
	if strings.Contains(shares(), "s1") {
		t.Fatal("removed share still in the live session")
	}

	// Expiry: the session ends by itself.
	time.Sleep(ttl + 500*time.Millisecond)
	if !strings.Contains(shares(), "not logged in") {
		t.Fatalf("session outlived its lifetime: %q", shares())
	}
	iao.as("share", "add", "s1", "alice").fails(t, 2, "session") // the IAO's expired too

	// Disable ends the session before the command returns; a disabled user cannot log in.
	bob := e.newPerson(t, "bob", uidBob)
	bob.login(t).ok(t)
	e.dsh(0, "", "user", "disable", "bob").ok(t)
	if !strings.Contains(bob.as("status").ok(t).stdout, "not logged in") {
		t.Fatal("disabled user still has a session")
	}
	bob.try(t).fails(t, 2, "disabled")
	e.dsh(0, "", "user", "enable", "bob").ok(t)

	// Seal ends every session; while sealed, logins fail with a clear message.
	alice.login(t).ok(t)
	e.dsh(0, "", "operator", "seal").ok(t)
	alice.try(t).fails(t, 2, "store is sealed")
	e.dsh(0, "correct horse battery staple\n", "operator", "unseal").ok(t)
	if !strings.Contains(shares(), "not logged in") {
		t.Fatal("a session survived seal")
	}
	if v := metricValue(t, e.scrape(), "dsh_sessions_active"); v != "0" {
		t.Fatalf("dsh_sessions_active = %s after seal", v)
	}
}

// Re-enrolment: the operator issues a new code; the old token stops working.
func TestReEnrolment(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	bob := e.newPerson(t, "bob", uidBob)
	bob.as("user", "enrolment-code", "bob").fails(t, 2, "operator")
	e.dsh(0, "", "user", "enrolment-code", "nobody").fails(t, 2, "not found")
	code := enrolmentCode(t, e.dsh(0, "", "user", "enrolment-code", "bob").ok(t).stdout)
	q := e.questionsFile(t, uidBob, "q-bob", testAnswers)
	out := e.dsh(uidBob, "a new long password\n1212\n", "enroll", "--code", code, "--questions-file", q).ok(t).stdout
	e.dsh(uidBob, "a new long password\n1212\n", "login", "--code", bob.nextCode(t)).fails(t, 2, "wrong")
	fresh := &person{e: e, id: "bob", uid: uidBob, secret: secretOf(t, out)}
	e.dsh(uidBob, "a new long password\n1212\n", "login", "--code", fresh.nextCode(t)).ok(t)
}
