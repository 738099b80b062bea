package acl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestACL runs the whole suite against every kv backend: what holds on Mem must hold on
// Badger, where the daemon runs it.
func TestACL(t *testing.T) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"Users", testUsers},
		{"InvalidInput", testInvalidInput},
		{"Projects", testProjects},
		{"ShareRoles", testShareRoles},
		{"OutsidersLearnNothing", testOutsidersLearnNothing},
		{"Members", testMembers},
		{"ListShares", testListShares},
		{"DisableKeepsMemberships", testDisableKeepsMemberships},
		{"ActorMustMatchState", testActorMustMatchState},
		{"Decide", testDecide},
		{"DecisionsChangeAtOnce", testDecisionsChangeAtOnce},
		{"Keys", testKeys},
		{"AuditRecords", testAuditRecords},
		{"AuditBeforeEffect", testAuditBeforeEffect},
		{"FailingAuditorChangesNothing", testFailingAuditor},
		{"RaceBetweenCheckAndCommit", testRace},
		{"RequireSession", testRequireSession},
		{"ReloadSeesSameState", testReload},
		{"ConcurrentDecide", testConcurrentDecide},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Close", testClose},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, newEnv(t, b.open(t), Options{Now: fixedNow}))
				})
			}
		})
	}
}

func testUsers(t *testing.T, e *env) {
	u, err := e.s.CreateUser(ctx, operator, NewUser{ID: "ccaeabc", UID: 5001, Email: "c.abc@ucl.ac.uk"})
	e.ok(err)
	want := User{ID: "ccaeabc", UID: 5001, Email: "c.abc@ucl.ac.uk", Status: StatusActive,
		Created: fixedNow().Truncate(time.Microsecond)}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("created %+v, want %+v", u, want)
	}
	if got, ok := e.s.UserByUID(5001); !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("UserByUID = %+v %v", got, ok)
	}
	_, err = e.s.CreateUser(ctx, operator, NewUser{ID: "ccaeabc", UID: 5002, Email: "x@y.z"})
	wantErr(t, err, ErrExists)
	_, err = e.s.CreateUser(ctx, operator, NewUser{ID: "other", UID: 5001, Email: "x@y.z"})
	wantErr(t, err, ErrExists)
	if !strings.Contains(err.Error(), "uid 5001 already belongs to user ccaeabc") {
		t.Errorf("message %q does not name the holder of the uid", err)
	}
	_, err = e.s.CreateUser(ctx, operator, NewUser{ID: "b2", UID: 5002, Email: "b@y.z"})
	e.ok(err)

	// Only the operator creates, disables, enables and lists users.
	e.world()
	for _, who := range []string{"iao1", "iaa1", "mem1", "out1"} {
		_, err = e.s.CreateUser(ctx, e.as(who), NewUser{ID: "x" + who, UID: 7000 + worldUIDs[who], Email: "x@y.z"})
		wantErr(t, err, ErrForbidden)
		wantErr(t, e.s.DisableUser(ctx, e.as(who), "mem1"), ErrForbidden)
		wantErr(t, e.s.EnableUser(ctx, e.as(who), "dis1"), ErrForbidden)
		_, err = e.s.ListUsers(ctx, e.as(who))
		wantErr(t, err, ErrForbidden)
	}
	users, err := e.s.ListUsers(ctx, operator)
	e.ok(err)
	var ids []string
	for _, u := range users {
		ids = append(ids, u.ID)
	}
	if got := strings.Join(ids, " "); got != "b2 ccaeabc dis1 iaa1 iaa2 iao1 iao2 mem1 mem2 out1 ro1" {
		t.Fatalf("ListUsers = %s", got)
	}

	wantErr(t, e.s.DisableUser(ctx, operator, "nobody"), ErrNotFound)
	wantErr(t, e.s.EnableUser(ctx, operator, "nobody"), ErrNotFound)
	wantErr(t, e.s.DisableUser(ctx, operator, "dis1"), ErrExists)
	wantErr(t, e.s.EnableUser(ctx, operator, "mem1"), ErrExists)
	e.ok(e.s.DisableUser(ctx, operator, "mem1"))
	if u, _ := e.s.UserByUID(worldUIDs["mem1"]); u.Status != StatusDisabled {
		t.Fatalf("mem1 is %s after disable", u.Status)
	}
	e.ok(e.s.EnableUser(ctx, operator, "mem1"))
	if u, _ := e.s.UserByUID(worldUIDs["mem1"]); u.Status != StatusActive {
		t.Fatalf("mem1 is %s after enable", u.Status)
	}
	e.checkCache()
}

func testInvalidInput(t *testing.T, e *env) {
	e.world()
	badIDs := []string{"..", ".", "A", "", strings.Repeat("a", 65), "a/b", "a b", "-a", "_a",
		"a\x00", "a\n", "é", "a.b", "/", "s1/../s2"}
	for _, id := range badIDs {
		_, err := e.s.CreateUser(ctx, operator, NewUser{ID: id, UID: 6000, Email: "x@y.z"})
		wantErr(t, err, ErrInvalid)
		_, err = e.s.CreateProject(ctx, operator, id, "iao1")
		wantErr(t, err, ErrInvalid)
		_, err = e.s.CreateProject(ctx, operator, "p9", id)
		wantErr(t, err, ErrInvalid)
		_, err = e.s.CreateShare(ctx, e.as("iao1"), id, "p1")
		wantErr(t, err, ErrInvalid)
		wantErr(t, e.s.AddMember(ctx, e.as("iao1"), id, "mem1", ReadWrite), ErrInvalid)
		wantErr(t, e.s.AddMember(ctx, e.as("iao1"), "s1", id, ReadWrite), ErrInvalid)
		wantErr(t, e.s.RemoveMember(ctx, e.as("iao1"), "s1", id), ErrInvalid)
		wantErr(t, e.s.AddIAA(ctx, e.as("iao1"), "p1", id), ErrInvalid)
		_, err = e.s.ShareMembers(ctx, e.as("iao1"), id)
		wantErr(t, err, ErrInvalid)
		_, err = e.s.ShareKey(ctx, id)
		wantErr(t, err, ErrInvalid)
		_, err = e.s.ArrivalsKey(ctx, id)
		wantErr(t, err, ErrInvalid)
	}
	for _, id := range []string{"a", "0", "9a", "a-b_c", strings.Repeat("z", 64)} {
		if !validID(id) {
			t.Errorf("validID(%q) = false", id)
		}
	}
	for _, uid := range []int{0, -1, MaxUID + 1} {
		_, err := e.s.CreateUser(ctx, operator, NewUser{ID: "u9", UID: uid, Email: "x@y.z"})
		wantErr(t, err, ErrInvalid)
	}
	_, err := e.s.CreateUser(ctx, operator, NewUser{ID: "umax", UID: MaxUID, Email: "x@y.z"})
	e.ok(err)
	badEmails := []string{"", "x", "@y", "x@", "x@@y", "x@y@z", "x y@z", "x@y\n", "x\t@y",
		"x@.y", "x@y.", "x@y..z", strings.Repeat("a", 250) + "@b.cd", "\xff@y"}
	for _, em := range badEmails {
		_, err := e.s.CreateUser(ctx, operator, NewUser{ID: "u9", UID: 6001, Email: em})
		wantErr(t, err, ErrInvalid)
	}
	for _, m := range []Mode{"", "RW", "w", "rwx"} {
		wantErr(t, e.s.AddMember(ctx, e.as("iao1"), "s1", "out1", m), ErrInvalid)
	}
	// Messages are one line and quote what they refuse.
	_, err = e.s.CreateUser(ctx, operator, NewUser{ID: "a\nb", UID: 6002, Email: "x@y.z"})
	if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || !strings.Contains(msg, `"a\nb"`) {
		t.Errorf("message %q is not one line quoting the ID", msg)
	}
	_, err = e.s.CreateUser(ctx, operator, NewUser{ID: strings.Repeat("x", 10000), UID: 6002, Email: "x@y.z"})
	if len(err.Error()) > 300 {
		t.Errorf("message of %d bytes echoes a huge input", len(err.Error()))
	}
	if _, err := e.s.ActorFor(ctx, -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("ActorFor(-1) = %v", err)
	}
	e.checkCache()
}

func testProjects(t *testing.T, e *env) {
	e.world()
	for _, who := range []string{"iao1", "iaa1", "mem1", "out1"} {
		_, err := e.s.CreateProject(ctx, e.as(who), "p9", who)
		wantErr(t, err, ErrForbidden)
	}
	_, err := e.s.CreateProject(ctx, operator, "p1", "iao2")
	wantErr(t, err, ErrExists)
	_, err = e.s.CreateProject(ctx, operator, "p9", "nobody")
	wantErr(t, err, ErrNotFound)
	_, err = e.s.CreateProject(ctx, operator, "p9", "dis1")
	wantErr(t, err, ErrInvalid)

	// IAAs: the IAO and the operator name them; nobody else does.
	e.ok(e.s.AddIAA(ctx, e.as("iao1"), "p1", "mem1"))
	e.ok(e.s.AddIAA(ctx, operator, "p1", "ro1"))
	for _, who := range []string{"iaa1", "mem1", "out1", "iao2", "iaa2", "dis1"} {
		wantErr(t, e.s.AddIAA(ctx, e.as(who), "p1", "out1"), ErrForbidden)
		wantErr(t, e.s.RemoveIAA(ctx, e.as(who), "p1", "mem1"), ErrForbidden)
	}
	wantErr(t, e.s.AddIAA(ctx, e.as("iao1"), "p1", "mem1"), ErrExists)
	wantErr(t, e.s.AddIAA(ctx, e.as("iao1"), "p1", "iao1"), ErrInvalid)
	wantErr(t, e.s.AddIAA(ctx, e.as("iao1"), "p1", "nobody"), ErrNotFound)
	wantErr(t, e.s.RemoveIAA(ctx, e.as("iao1"), "p1", "out1"), ErrNotFound)
	wantErr(t, e.s.AddIAA(ctx, operator, "p9", "out1"), ErrNotFound)
	e.ok(e.s.RemoveIAA(ctx, e.as("iao1"), "p1", "mem1"))

	projects, err := e.s.ListProjects(ctx, operator)
	e.ok(err)
	if len(projects) != 2 || projects[0].Name != "p1" || projects[1].Name != "p2" {
		t.Fatalf("operator's projects: %+v", projects)
	}
	if got := projects[0].IAAs; !reflect.DeepEqual(got, []string{"iaa1", "ro1"}) {
		t.Fatalf("IAAs of p1 = %v", got)
	}
	mine := func(who string) string {
		ps, err := e.s.ListProjects(ctx, e.as(who))
		e.ok(err)
		var names []string
		for _, p := range ps {
			names = append(names, p.Name)
		}
		return strings.Join(names, " ")
	}
	for who, want := range map[string]string{"iao1": "p1", "iaa1": "p1", "ro1": "p1", "iaa2": "p2", "mem1": "", "out1": ""} {
		if got := mine(who); got != want {
			t.Errorf("projects of %s = %q, want %q", who, got, want)
		}
	}
	_, err = e.s.ListProjects(ctx, e.as("dis1"))
	wantErr(t, err, ErrForbidden)
	// A returned project is a copy: changing it changes nothing stored.
	projects[0].IAAs[0] = "mallory"
	if ps, _ := e.s.ListProjects(ctx, operator); ps[0].IAAs[0] != "iaa1" {
		t.Fatal("a listed project shares its IAAs with the cache")
	}
	e.checkCache()
}

func testShareRoles(t *testing.T, e *env) {
	e.world()
	// Who may create a share against p1.
	for who, kind := range map[string]error{"iao1": nil, "iaa1": nil, "iao2": ErrForbidden, "iaa2": ErrForbidden,
		"mem1": ErrForbidden, "out1": ErrForbidden, "dis1": ErrForbidden} {
		_, err := e.s.CreateShare(ctx, e.as(who), "new-"+who, "p1")
		wantErr(t, err, kind)
	}
	_, err := e.s.CreateShare(ctx, operator, "new-op", "p1")
	e.ok(err)
	_, err = e.s.CreateShare(ctx, operator, "new-op2", "p9")
	wantErr(t, err, ErrNotFound)
	_, err = e.s.CreateShare(ctx, e.as("iao1"), "s2", "p1") // s2 is p2's: names are global
	wantErr(t, err, ErrExists)
	if err == nil || !strings.Contains(err.Error(), "share s2 already exists") {
		t.Errorf("message %v", err)
	}

	// Who may add, remove and list members of s1 (project p1).
	cases := map[string]error{"iao1": nil, "iaa1": nil, "iao2": ErrForbidden, "iaa2": ErrForbidden,
		"mem1": ErrForbidden, "ro1": ErrForbidden, "out1": ErrForbidden, "dis1": ErrForbidden}
	for who, kind := range cases {
		a := e.as(who)
		wantErr(t, e.s.AddMember(ctx, a, "s1", "out1", ReadOnly), kind)
		_, err := e.s.ShareMembers(ctx, a, "s1")
		wantErr(t, err, kind)
		wantErr(t, e.s.RemoveMember(ctx, a, "s1", "out1"), kind)
	}
	a := operator
	e.ok(e.s.AddMember(ctx, a, "s1", "out1", ReadOnly))
	_, err = e.s.ShareMembers(ctx, a, "s1")
	e.ok(err)
	e.ok(e.s.RemoveMember(ctx, a, "s1", "out1"))
	// An IAA of project B touching a share of project A.
	err = e.s.AddMember(ctx, e.as("iaa2"), "s1", "mem2", ReadWrite)
	wantErr(t, err, ErrForbidden)
	if !strings.Contains(err.Error(), "iaa2 may not manage share s1") {
		t.Errorf("message %q", err)
	}
	// A uid without an account is refused everything.
	nobody := Actor{UID: 4242}
	wantErr(t, e.s.AddMember(ctx, nobody, "s1", "out1", ReadOnly), ErrForbidden)
	_, err = e.s.ListShares(ctx, nobody)
	wantErr(t, err, ErrForbidden)
	e.checkCache()
}

// testOutsidersLearnNothing: a caller who does not manage a share or project gets the same
// answer whether or not it exists.
func testOutsidersLearnNothing(t *testing.T, e *env) {
	e.world()
	same := func(what string, exists, missing error, name, other string) {
		t.Helper()
		if !errors.Is(exists, ErrForbidden) || !errors.Is(missing, ErrForbidden) {
			t.Fatalf("%s: errors %v / %v, want ErrForbidden for both", what, exists, missing)
		}
		if exists.Error() != strings.ReplaceAll(missing.Error(), other, name) {
			t.Fatalf("%s: messages differ:\n%s\n%s", what, exists, missing)
		}
	}
	for _, who := range []string{"out1", "mem1", "iaa2", "iao2"} {
		a := e.as(who)
		same(who+" add", e.s.AddMember(ctx, a, "s1", "out1", ReadWrite), e.s.AddMember(ctx, a, "zz", "out1", ReadWrite), "s1", "zz")
		same(who+" remove", e.s.RemoveMember(ctx, a, "s1", "mem1"), e.s.RemoveMember(ctx, a, "zz", "mem1"), "s1", "zz")
		_, e1 := e.s.ShareMembers(ctx, a, "s1")
		_, e2 := e.s.ShareMembers(ctx, a, "zz")
		same(who+" members", e1, e2, "s1", "zz")
		_, e1 = e.s.CreateShare(ctx, a, "new", "p1")
		_, e2 = e.s.CreateShare(ctx, a, "new", "zz")
		same(who+" create", e1, e2, "p1", "zz")
		same(who+" iaa", e.s.AddIAA(ctx, a, "p1", "out1"), e.s.AddIAA(ctx, a, "zz", "out1"), "p1", "zz")
	}
	// A manager of s1 is told plainly about users and memberships.
	wantErr(t, e.s.RemoveMember(ctx, e.as("iao1"), "s1", "out1"), ErrNotFound)
	wantErr(t, e.s.AddMember(ctx, e.as("iao1"), "s1", "nobody", ReadWrite), ErrNotFound)
	// The operator sees everything, so is told what does not exist.
	wantErr(t, e.s.AddMember(ctx, operator, "zz", "out1", ReadWrite), ErrNotFound)
	_, err := e.s.ShareMembers(ctx, operator, "zz")
	wantErr(t, err, ErrNotFound)
}

func testMembers(t *testing.T, e *env) {
	e.world()
	iaa := e.as("iaa1")
	wantErr(t, e.s.AddMember(ctx, iaa, "s1", "mem1", ReadWrite), ErrExists)
	e.ok(e.s.AddMember(ctx, iaa, "s1", "out1", ReadOnly))
	// Adding again with another mode changes the mode, and says so in the audit log.
	e.ok(e.s.AddMember(ctx, iaa, "s1", "out1", ReadWrite))
	if r := e.aud.last(); r.Action != "share.add" || r.Result != "ok" || r.Detail != "mode was ro" {
		t.Fatalf("audit of a mode change: %+v", r)
	}
	if d := e.s.Decide(worldUIDs["out1"], Group, "s1", Write); !d.Allow {
		t.Fatalf("after the mode change: %+v", d)
	}
	members, err := e.s.ShareMembers(ctx, iaa, "s1")
	e.ok(err)
	want := []Member{{"dis1", ReadWrite, StatusDisabled}, {"mem1", ReadWrite, StatusActive},
		{"out1", ReadWrite, StatusActive}, {"ro1", ReadOnly, StatusActive}}
	if !reflect.DeepEqual(members, want) {
		t.Fatalf("members of s1: %+v", members)
	}
	wantErr(t, e.s.RemoveMember(ctx, iaa, "s1", "iao1"), ErrNotFound) // not a member
	wantErr(t, e.s.RemoveMember(ctx, iaa, "s1", "nobody"), ErrNotFound)
	e.ok(e.s.RemoveMember(ctx, iaa, "s1", "out1"))
	wantErr(t, e.s.RemoveMember(ctx, iaa, "s1", "out1"), ErrNotFound)
	// Managers may add themselves; until then they are not members.
	if d := e.s.Decide(worldUIDs["iao1"], Group, "s1", Read); d.Allow {
		t.Fatal("the IAO reads a share without being a member")
	}
	e.ok(e.s.AddMember(ctx, e.as("iao1"), "s1", "iao1", ReadOnly))
	if d := e.s.Decide(worldUIDs["iao1"], Group, "s1", Read); !d.Allow {
		t.Fatal("the IAO cannot read after adding itself")
	}
	e.checkCache()
}

func testListShares(t *testing.T, e *env) {
	e.world()
	_, err := e.s.CreateShare(ctx, e.as("iao1"), "s0", "p1")
	e.ok(err)
	e.ok(e.s.AddMember(ctx, e.as("iao2"), "s2", "mem1", ReadOnly))
	e.ok(e.s.AddMember(ctx, e.as("iao1"), "s1", "iaa1", ReadOnly))
	show := func(acc []ShareAccess) string {
		var parts []string
		for _, a := range acc {
			s := a.Share + ":" + a.Project + ":" + string(a.Mode)
			if a.Manager {
				s += ":manager"
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " ")
	}
	cases := map[string]string{
		"mem1": "s1:p1:rw s2:p2:ro",
		"ro1":  "s1:p1:ro",
		"out1": "",
		"iao1": "s0:p1::manager s1:p1::manager",
		"iaa1": "s0:p1::manager s1:p1:ro:manager",
		"iaa2": "s2:p2::manager",
	}
	for who, want := range cases {
		acc, err := e.s.ListShares(ctx, e.as(who))
		e.ok(err)
		if got := show(acc); got != want {
			t.Errorf("ListShares(%s) = %q, want %q", who, got, want)
		}
	}
	acc, err := e.s.ListShares(ctx, operator)
	e.ok(err)
	if got := show(acc); got != "s0:p1::manager s1:p1::manager s2:p2::manager" {
		t.Errorf("ListShares(operator) = %q", got)
	}
	_, err = e.s.ListShares(ctx, e.as("dis1"))
	wantErr(t, err, ErrForbidden)
	// SharesOf is what the S root lists: memberships only, never managed shares.
	if got := show(e.s.SharesOf(worldUIDs["iaa1"])); got != "s1:p1:ro" {
		t.Errorf("SharesOf(iaa1) = %q", got)
	}
	if got := show(e.s.SharesOf(worldUIDs["mem1"])); got != "s1:p1:rw s2:p2:ro" {
		t.Errorf("SharesOf(mem1) = %q", got)
	}
	for _, uid := range []int{0, 4242, worldUIDs["out1"], worldUIDs["dis1"]} {
		if got := e.s.SharesOf(uid); len(got) != 0 {
			t.Errorf("SharesOf(%d) = %v", uid, got)
		}
	}
}

func testDisableKeepsMemberships(t *testing.T, e *env) {
	e.world()
	uid := worldUIDs["mem1"]
	before := e.s.SharesOf(uid)
	e.ok(e.s.DisableUser(ctx, operator, "mem1"))
	if d := e.s.Decide(uid, Group, "s1", Read); d.Allow || d.Reason != ReasonDisabled {
		t.Fatalf("disabled member: %+v", d)
	}
	if d := e.s.Decide(uid, Arrivals, "mem1", List); d.Allow || d.Reason != ReasonDisabled {
		t.Fatalf("disabled owner of Arrivals: %+v", d)
	}
	if got := e.s.SharesOf(uid); len(got) != 0 {
		t.Fatalf("a disabled user sees shares: %v", got)
	}
	members, err := e.s.ShareMembers(ctx, e.as("iao1"), "s1")
	e.ok(err)
	if !reflect.DeepEqual(members[1], Member{"mem1", ReadWrite, StatusDisabled}) {
		t.Fatalf("membership not kept while disabled: %+v", members)
	}
	// A disabled IAO cannot manage, and comes back with its role.
	e.ok(e.s.DisableUser(ctx, operator, "iao1"))
	wantErr(t, e.s.AddMember(ctx, e.as("iao1"), "s1", "out1", ReadWrite), ErrForbidden)
	wantErr(t, e.s.AddIAA(ctx, e.as("iao1"), "p1", "out1"), ErrForbidden)
	_, err = e.s.CreateShare(ctx, e.as("iao1"), "s9", "p1")
	wantErr(t, err, ErrForbidden)
	e.ok(e.s.EnableUser(ctx, operator, "iao1"))
	e.ok(e.s.AddMember(ctx, e.as("iao1"), "s1", "out1", ReadWrite))

	e.ok(e.s.EnableUser(ctx, operator, "mem1"))
	if d := e.s.Decide(uid, Group, "s1", Write); !d.Allow {
		t.Fatalf("enabled member: %+v", d)
	}
	if got := e.s.SharesOf(uid); !reflect.DeepEqual(got, before) {
		t.Fatalf("after enable %v, before disable %v", got, before)
	}
	e.checkCache()
}

func testActorMustMatchState(t *testing.T, e *env) {
	e.world()
	forged := []Actor{
		{UID: worldUIDs["mem1"], User: "iao1"},                // claims another account
		{UID: 0, Operator: false},                             // uid 0 without the flag
		{UID: worldUIDs["iao1"], Operator: true},              // the flag without uid 0
		{UID: 0, Operator: true, User: "iao1"},                // the operator has no account
		{UID: 4242, User: "iao1"},                             // no account at all
		{UID: worldUIDs["dis1"], User: "dis1"},                // disabled
		{UID: worldUIDs["out1"], User: "out1", Session: true}, // a session lends no role
	}
	for _, a := range forged {
		wantErr(t, e.s.AddMember(ctx, a, "s1", "out1", ReadWrite), ErrForbidden)
		_, err := e.s.CreateUser(ctx, a, NewUser{ID: "x", UID: 9999, Email: "x@y.z"})
		wantErr(t, err, ErrForbidden)
	}
	// An Actor with only its uid resolves as ActorFor would.
	e.ok(e.s.AddMember(ctx, Actor{UID: worldUIDs["iao1"]}, "s1", "out1", ReadWrite))
	if a, _ := e.s.ActorFor(ctx, 0); a != operator {
		t.Fatalf("ActorFor(0) = %+v", a)
	}
	if a, _ := e.s.ActorFor(ctx, 4242); a != (Actor{UID: 4242}) {
		t.Fatalf("ActorFor(4242) = %+v", a)
	}
	if a := e.as("iaa1"); a != (Actor{UID: worldUIDs["iaa1"], User: "iaa1"}) {
		t.Fatalf("ActorFor(iaa1) = %+v", a)
	}
}

func testRequireSession(t *testing.T, e *env) {
	e.world()
	e.opts.RequireSession = true
	e.s = e.reload() // the same state, now with sessions required
	iao := e.as("iao1")
	wantErr(t, e.s.AddMember(ctx, iao, "s1", "out1", ReadWrite), ErrForbidden)
	wantErr(t, e.s.AddIAA(ctx, iao, "p1", "out1"), ErrForbidden)
	_, err := e.s.CreateShare(ctx, iao, "s9", "p1")
	wantErr(t, err, ErrForbidden)
	if err == nil || !strings.Contains(err.Error(), "session") {
		t.Fatalf("refusal does not say a session is needed: %v", err)
	}
	_, err = e.s.ShareMembers(ctx, iao, "s1")
	wantErr(t, err, ErrForbidden)
	iao.Session = true
	e.ok(e.s.AddMember(ctx, iao, "s1", "out1", ReadWrite))
	e.ok(e.s.AddIAA(ctx, iao, "p1", "out1"))
	_, err = e.s.ShareMembers(ctx, iao, "s1")
	e.ok(err)
	// The operator has no account to hold a session with.
	e.ok(e.s.RemoveMember(ctx, operator, "s1", "out1"))
	// A session lends no role to someone without one.
	mem := e.as("mem1")
	mem.Session = true
	err = e.s.AddMember(ctx, mem, "s1", "out1", ReadWrite)
	wantErr(t, err, ErrForbidden)
	if strings.Contains(err.Error(), "session") {
		t.Fatalf("a non-manager is told about sessions: %v", err)
	}
	// Members use their shares without the management session.
	if d := e.s.Decide(worldUIDs["mem1"], Group, "s1", Write); !d.Allow {
		t.Fatalf("member denied: %+v", d)
	}
}

func testReload(t *testing.T, e *env) {
	e.world()
	e.ok(e.s.AddMember(ctx, e.as("iao1"), "s1", "ro1", ReadWrite))
	e.ok(e.s.RemoveMember(ctx, e.as("iao1"), "s1", "mem1"))
	e.ok(e.s.RemoveIAA(ctx, e.as("iao1"), "p1", "iaa1"))
	e.checkCache()
	s2 := e.reload()
	for _, uid := range worldUIDs {
		for _, share := range []string{"s1", "s2", "zz"} {
			for _, op := range []Op{Read, Write, List, Delete} {
				if a, b := e.s.Decide(uid, Group, share, op), s2.Decide(uid, Group, share, op); a != b {
					t.Fatalf("Decide(%d %s %s): %+v before reload, %+v after", uid, share, op, a, b)
				}
			}
		}
	}
}

func testClose(t *testing.T, e *env) {
	e.world()
	uid := worldUIDs["mem1"]
	if !e.s.Decide(uid, Group, "s1", Read).Allow {
		t.Fatal("not allowed before Close")
	}
	iao := e.as("iao1")
	e.s.Close()
	if d := e.s.Decide(uid, Group, "s1", Read); d.Allow {
		t.Fatalf("allowed after Close: %+v", d)
	}
	wantErr(t, e.s.AddMember(ctx, iao, "s1", "out1", ReadWrite), ErrClosed)
	_, err := e.s.ListShares(ctx, operator)
	wantErr(t, err, ErrClosed)
	_, err = e.s.ShareKey(ctx, "s1")
	wantErr(t, err, ErrClosed)
	_, err = e.s.ActorFor(ctx, uid)
	wantErr(t, err, ErrClosed)
	if got := e.s.SharesOf(uid); len(got) != 0 {
		t.Fatalf("SharesOf after Close: %v", got)
	}
}

func TestErrorsNameTheThing(t *testing.T) {
	e := newEnv(t, openMem(t), Options{})
	e.world()
	cases := []struct {
		err  error
		want string
	}{
		{e.s.AddIAA(ctx, e.as("iaa1"), "p1", "out1"), "iaa1 is not the IAO of project p1"},
		{func() error { _, err := e.s.CreateShare(ctx, e.as("out1"), "s9", "p1"); return err }(), "out1 is not the IAO or an IAA of project p1"},
		{e.s.RemoveMember(ctx, e.as("iao1"), "s1", "out1"), "out1 is not a member of share s1"},
		{e.s.AddMember(ctx, e.as("iao1"), "s1", "mem1", ReadWrite), "mem1 is already a member of share s1 (rw)"},
		{e.s.DisableUser(ctx, operator, "zz"), "user zz not found"},
		{e.s.AddMember(ctx, e.as("dis1"), "s1", "out1", ReadWrite), "user dis1 is disabled"},
		{e.s.AddMember(ctx, Actor{UID: 4242}, "s1", "out1", ReadWrite), "uid 4242 has no DSH account"},
	}
	for _, c := range cases {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("got %v, want %q", c.err, c.want)
		}
	}
}
