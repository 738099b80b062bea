package tests

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Uids of the cast of the account tests.
const (
	uidIAO1 = 2001 + iota
	uidIAA1
	uidMem1
	uidRO1
	uidOut1
	uidIAO2
	uidLate
)

func TestAccountsProjectsSharesAndRoles(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	op := func(args ...string) result { return e.dsh(0, "", args...) }
	as := func(uid int, args ...string) result { return e.dsh(uid, "", args...) }

	// Operator: accounts and projects. Those who will manage shares enrol and log in, since
	// IAO and IAA actions need a two-factor session.
	for _, u := range []struct {
		id  string
		uid int
	}{{"mem1", uidMem1}, {"ro1", uidRO1}, {"out1", uidOut1}} {
		out := op("user", "create", u.id, "--uid", itoa(u.uid), "--email", u.id+"@example.ac.uk").ok(t).stdout
		if !strings.Contains(out, "created user "+u.id) {
			t.Fatalf("user create said %q", out)
		}
	}
	for _, u := range []struct {
		id  string
		uid int
	}{{"iao1", uidIAO1}, {"iaa1", uidIAA1}, {"iao2", uidIAO2}} {
		e.newPerson(t, u.id, u.uid).login(t).ok(t)
	}
	op("project", "create", "p1", "--iao", "iao1").ok(t)
	op("project", "create", "p2", "--iao", "iao2").ok(t)
	as(uidIAO1, "project", "create", "p3", "--iao", "iao1").fails(t, 2, "operator")
	as(uidIAO1, "user", "create", "x1", "--uid", "3000", "--email", "x@example.org").fails(t, 2, "operator")

	// Bad input: each refused with a clear message, nothing created.
	op("user", "create", "iao1", "--uid", "3001", "--email", "a@b.org").fails(t, 2, "iao1")
	op("user", "create", "newbie", "--uid", itoa(uidIAO1), "--email", "a@b.org").fails(t, 2, itoa(uidIAO1))
	op("user", "create", "Bad..ID", "--uid", "3002", "--email", "a@b.org").fails(t, 2, "Bad..ID")
	op("user", "create", "okid", "--uid", "3003", "--email", "not-an-email").fails(t, 2, "mail")
	op("user", "create", "okid", "--email", "a@b.org").fails(t, 1, "--uid")
	op("user", "create").fails(t, 1, "arg")
	op("project", "create", "p1", "--iao", "iao1").fails(t, 2, "p1")
	op("project", "create", "p9", "--iao", "nobody").fails(t, 2, "nobody")
	users := op("user", "list").ok(t).stdout
	for _, absent := range []string{"newbie", "okid", "Bad", "x1"} {
		if strings.Contains(users, absent) {
			t.Fatalf("a refused create left %s behind:\n%s", absent, users)
		}
	}

	// IAO: nominates an IAA; nobody else may.
	as(uidIAA1, "project", "iaa", "add", "p1", "mem1").fails(t, 2, "iaa1 is not the IAO of project p1")
	as(uidIAO2, "project", "iaa", "add", "p1", "iao2").fails(t, 2, "iao2 is not the IAO of project p1")
	as(uidIAO1, "project", "iaa", "add", "p1", "iaa1").ok(t)
	as(uidIAO1, "project", "iaa", "frobnicate", "p1", "iaa1").fails(t, 1, "add or remove")
	if !regexp.MustCompile(`p1\s+iao1\s+iaa1`).MatchString(op("project", "list").ok(t).stdout) {
		t.Fatal("project list does not show the IAA")
	}

	// IAA: creates a share against p1 and manages its members.
	as(uidIAA1, "share", "create", "s1", "--project", "p1").ok(t)
	as(uidIAA1, "share", "create", "s9", "--project", "p2").fails(t, 2, "iaa1 is not the IAO or an IAA of project p2")
	as(uidIAA1, "share", "create", "s9", "--project", "nosuch").fails(t, 2, "nosuch")
	as(uidIAA1, "share", "add", "s1", "mem1").ok(t)
	as(uidIAA1, "share", "add", "s1", "ro1", "--read-only").ok(t)
	as(uidIAA1, "share", "add", "s1", "ghost").fails(t, 2, "ghost")
	as(uidIAO2, "share", "create", "s2", "--project", "p2").ok(t)
	// An IAA of project A touching a share of project B is refused.
	as(uidIAA1, "share", "add", "s2", "mem1").fails(t, 2, "iaa1 may not manage share s2")
	// The refusal reads the same whether the share exists or not.
	real := as(uidIAA1, "share", "members", "s2").fails(t, 2, "iaa1 may not manage share s2")
	ghost := as(uidIAA1, "share", "members", "nosuch").fails(t, 2, "iaa1 may not manage share nosuch")
	if strings.ReplaceAll(real.stderr, "s2", "X") != strings.ReplaceAll(ghost.stderr, "nosuch", "X") {
		t.Fatalf("refusals differ for an existing and a missing share:\n%s%s", real.stderr, ghost.stderr)
	}
	// Members and outsiders manage nothing.
	as(uidMem1, "share", "add", "s1", "out1").fails(t, 2, "mem1 may not manage share s1")
	as(uidOut1, "share", "members", "s1").fails(t, 2, "out1 may not manage share s1")
	as(uidOut1, "share", "remove", "s1", "mem1").fails(t, 2, "out1 may not manage share s1")
	as(uidIAO1, "share", "remove", "s1", "out1").fails(t, 2, "out1")

	members := as(uidIAO1, "share", "members", "s1").ok(t).stdout
	if !regexp.MustCompile(`mem1\s+read-write\s+active`).MatchString(members) || !regexp.MustCompile(`ro1\s+read-only\s+active`).MatchString(members) {
		t.Fatalf("members of s1:\n%s", members)
	}
	if out := as(uidMem1, "share", "list").ok(t).stdout; !regexp.MustCompile(`s1\s+p1\s+read-write`).MatchString(out) || strings.Contains(out, "s2") {
		t.Fatalf("mem1's share list:\n%s", out)
	}
	if out := as(uidRO1, "share", "list").ok(t).stdout; !regexp.MustCompile(`s1\s+p1\s+read-only`).MatchString(out) {
		t.Fatalf("ro1's share list:\n%s", out)
	}
	if out := as(uidIAA1, "share", "list").ok(t).stdout; !regexp.MustCompile(`s1\s+p1\s+manager`).MatchString(out) {
		t.Fatalf("iaa1's share list:\n%s", out)
	}
	if out := as(uidOut1, "share", "list").ok(t).stdout; strings.Contains(out, "s1") || strings.Contains(out, "s2") {
		t.Fatalf("an outsider sees shares:\n%s", out)
	}
	// A uid with no account at all.
	as(uidOutsider, "share", "list").fails(t, 2, "uid 1000 has no DSH account")

	// Create a user straight into a share; a wrong share name changes nothing.
	op("user", "create", "late", "--uid", itoa(uidLate), "--email", "late@example.org", "--share", "nosuch").fails(t, 2, "nosuch")
	if strings.Contains(op("user", "list").ok(t).stdout, "late") {
		t.Fatal("user created although its share does not exist")
	}
	out := op("user", "create", "late", "--uid", itoa(uidLate), "--email", "late@example.org", "--share", "s1").ok(t).stdout
	if !strings.Contains(out, "added late to share s1") {
		t.Fatalf("user create --share said %q", out)
	}

	// Disable keeps memberships; enable restores them.
	op("user", "disable", "mem1").ok(t)
	if !regexp.MustCompile(`mem1\s+2003\s+mem1@example.ac.uk\s+disabled`).MatchString(op("user", "list").ok(t).stdout) {
		t.Fatal("user list does not show mem1 disabled")
	}
	as(uidMem1, "share", "list").fails(t, 2, "disabled")
	op("user", "disable", "mem1").fails(t, 2, "mem1")
	op("user", "enable", "mem1").ok(t)
	if !regexp.MustCompile(`s1\s+p1\s+read-write`).MatchString(as(uidMem1, "share", "list").ok(t).stdout) {
		t.Fatal("enable did not restore mem1's membership")
	}
	op("user", "disable", "nobody").fails(t, 2, "nobody")

	// IAO removes a member and an IAA.
	as(uidIAO1, "share", "remove", "s1", "ro1").ok(t)
	if strings.Contains(as(uidRO1, "share", "list").ok(t).stdout, "s1") {
		t.Fatal("removed member still lists s1")
	}
	as(uidIAO1, "project", "iaa", "remove", "p1", "iaa1").ok(t)
	as(uidIAA1, "share", "add", "s1", "ro1").fails(t, 2, "iaa1 may not manage share s1")

	// Everything above is in the audit log, and the chain holds.
	show := op("audit", "show").ok(t).stdout
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`uid=0 .*user.create .*ok`),
		regexp.MustCompile(`uid=2001 user=iao1 .*iaa.add.*ok|uid=2001 user=iao1 .*project.iaa.*ok`),
		regexp.MustCompile(`uid=2002 user=iaa1 .*share.create.*ok`),
		regexp.MustCompile(`uid=2002 user=iaa1 .*share.add.*denied`),
		regexp.MustCompile(`uid=2003 user=mem1 .*share.add.*denied`),
		regexp.MustCompile(`user.disable.*ok`),
		regexp.MustCompile(`share.remove.*ok`),
	} {
		if !want.MatchString(show) {
			t.Errorf("audit show lacks %v", want)
		}
	}
	if !strings.Contains(op("audit", "verify").ok(t).stdout, "audit chain ok") {
		t.Fatal("audit chain broken")
	}

	// State survives a restart.
	e.stop()
	e.start(true)
	if !regexp.MustCompile(`s1\s+p1\s+read-write`).MatchString(as(uidMem1, "share", "list").ok(t).stdout) {
		t.Fatal("memberships lost across a restart")
	}
}

func TestAccountsBadRequestsChangeNothing(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	e.dsh(0, "", "user", "create", "u1", "--uid", "2100", "--email", "u1@example.org").ok(t)
	before := e.dsh(0, "", "user", "list").ok(t).stdout
	cases := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/users/create", `{"id":"u2","uid":2101,"email":"u2@example.org"`, 400},
		{"POST", "/v1/users/create", `{"id":"u2","uid":2101,"email":"u2@example.org","admin":true}`, 400},
		{"POST", "/v1/users/create", `{"id":"u2","uid":"2101","email":"u2@example.org"}`, 400},
		{"POST", "/v1/users/create", `{"id":"u2","uid":2101,"email":"u2@example.org","pad":"` + strings.Repeat("x", 70000) + `"}`, 413},
		{"GET", "/v1/users/create", ``, 405},
		{"POST", "/v1/users", ``, 405},
		{"POST", "/v1/users/disable", `{"id":"u1"} {"id":"u1"}`, 400},
		{"POST", "/v1/shares/remove", `{"share":"s","user":"u1","read_only":true}`, 400},
		{"GET", "/v1/shares/members", ``, 400},
		{"POST", "/v1/users/create", `{"id":"../etc","uid":2102,"email":"u@example.org"}`, 400},
		{"POST", "/v1/users/create", `{"id":"root","uid":0,"email":"u@example.org"}`, 400},
	}
	for _, c := range cases {
		status, body := e.rawRequest(c.method, c.path, c.body)
		if status != c.status || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s %s %.60q: %d %s; want %d and a JSON error", c.method, c.path, c.body, status, body, c.status)
		}
	}
	if after := e.dsh(0, "", "user", "list").ok(t).stdout; after != before {
		t.Fatalf("bad requests changed the users:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
