package acl

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"dsh/audit"
)

func testAuditRecords(t *testing.T, e *env) {
	e.world()
	// Every change of the world is recorded "ok", durably, naming actor and object.
	want := map[string]recorded{
		"user.create":    {audit.Entry{UID: 0, Action: "user.create", Object: "user iao1 uid 1001 email iao1@example.ac.uk", Result: "ok"}, audit.Durable},
		"project.create": {audit.Entry{UID: 0, Action: "project.create", Object: "project p1 iao iao1", Result: "ok"}, audit.Durable},
		"iaa":            {audit.Entry{UID: 1001, User: "iao1", Action: "project.iaa_add", Object: "project p1 iaa iaa1", Result: "ok"}, audit.Durable},
		"share.create":   {audit.Entry{UID: 1001, User: "iao1", Action: "share.create", Object: "share s1 project p1", Result: "ok"}, audit.Durable},
		"share.add":      {audit.Entry{UID: 1002, User: "iaa1", Action: "share.add", Object: "share s1 user ro1 ro", Result: "ok"}, audit.Durable},
		"user.disable":   {audit.Entry{UID: 0, Action: "user.disable", Object: "user dis1", Result: "ok"}, audit.Durable},
	}
	all := e.aud.all()
	for name, w := range want {
		found := false
		for _, r := range all {
			found = found || reflect.DeepEqual(r, w)
		}
		if !found {
			t.Errorf("no %s record like %+v among %d", name, w, len(all))
		}
	}
	for _, r := range all {
		if r.Result != "ok" {
			t.Errorf("building the world recorded %+v", r)
		}
	}

	// Denials are recorded (buffered), with the reason.
	wantErr(t, e.s.AddMember(ctx, e.as("iaa2"), "s1", "out1", ReadWrite), ErrForbidden)
	r := e.aud.last()
	if r.UID != 1007 || r.User != "iaa2" || r.Action != "share.add" || r.Object != "share s1 user out1 rw" ||
		r.Result != "denied" || r.Durability != audit.Buffered || !strings.Contains(r.Detail, "may not manage share s1") {
		t.Errorf("denial recorded as %+v", r)
	}
	// So are refusals for bad input and listings refused.
	wantErr(t, e.s.AddMember(ctx, e.as("iaa1"), "s1\nx", "out1", ReadWrite), ErrInvalid)
	r = e.aud.last()
	if r.Result != "error" || r.Object != `share "s1\nx" user out1 rw` || !strings.Contains(r.Detail, "invalid") {
		t.Errorf("bad input recorded as %+v", r)
	}
	_, err := e.s.ListUsers(ctx, e.as("mem1"))
	wantErr(t, err, ErrForbidden)
	if r = e.aud.last(); r.Action != "user.list" || r.Result != "denied" || r.User != "mem1" {
		t.Errorf("refused listing recorded as %+v", r)
	}
	_, err = e.s.ListShares(ctx, Actor{UID: 4242})
	wantErr(t, err, ErrForbidden)
	if r = e.aud.last(); r.Action != "share.list" || r.Result != "denied" || r.UID != 4242 || r.User != "" {
		t.Errorf("refused listing by a uid without account recorded as %+v", r)
	}
	// Allowed listings and decisions are not changes and write nothing.
	n := len(e.aud.all())
	_, err = e.s.ListShares(ctx, e.as("mem1"))
	e.ok(err)
	_, err = e.s.ShareMembers(ctx, e.as("iao1"), "s1")
	e.ok(err)
	e.s.Decide(1003, Group, "s1", Read)
	if got := len(e.aud.all()); got != n {
		t.Errorf("reads wrote %d audit records", got-n)
	}
}

// testAuditBeforeEffect: the "ok" record is written while the change has not yet happened.
func testAuditBeforeEffect(t *testing.T, e *env) {
	e.world()
	seen := false
	e.aud.onAppend = func(en audit.Entry) {
		if en.Action != "share.add" || en.Result != "ok" {
			return
		}
		seen = true
		if d := e.s.Decide(worldUIDs["out1"], Group, "s1", Read); d.Allow {
			t.Error("the change took effect before its audit record was written")
		}
		if _, ok := e.dumpKV()["acl/member/s1/out1"]; ok {
			t.Error("the membership was stored before its audit record was written")
		}
	}
	e.ok(e.s.AddMember(ctx, e.as("iao1"), "s1", "out1", ReadWrite))
	e.aud.onAppend = nil
	if !seen {
		t.Fatal("no ok record for share.add")
	}
	if !e.s.Decide(worldUIDs["out1"], Group, "s1", Read).Allow {
		t.Fatal("the change did not take effect")
	}
}

// testFailingAuditor: when the audit log cannot be written, every change is refused and
// neither the stored state nor the cache changes.
func testFailingAuditor(t *testing.T, e *env) {
	e.world()
	before, snap := e.dumpKV(), e.s.snap.Load()
	iao, op := e.as("iao1"), operator
	e.aud.fail.Store(true)
	changes := map[string]func() error{
		"user.create": func() error {
			_, err := e.s.CreateUser(ctx, op, NewUser{ID: "new", UID: 4000, Email: "n@x.y"})
			return err
		},
		"user.disable": func() error { return e.s.DisableUser(ctx, op, "mem1") },
		"user.enable":  func() error { return e.s.EnableUser(ctx, op, "dis1") },
		"project.create": func() error {
			_, err := e.s.CreateProject(ctx, op, "p9", "iao1")
			return err
		},
		"iaa.add":    func() error { return e.s.AddIAA(ctx, iao, "p1", "out1") },
		"iaa.remove": func() error { return e.s.RemoveIAA(ctx, iao, "p1", "iaa1") },
		"share.create": func() error {
			_, err := e.s.CreateShare(ctx, iao, "s9", "p1")
			return err
		},
		"share.add":    func() error { return e.s.AddMember(ctx, iao, "s1", "out1", ReadWrite) },
		"share.mode":   func() error { return e.s.AddMember(ctx, iao, "s1", "ro1", ReadWrite) },
		"share.remove": func() error { return e.s.RemoveMember(ctx, iao, "s1", "mem1") },
	}
	for name, change := range changes {
		err := change()
		if !errors.Is(err, ErrAudit) || !errors.Is(err, errDiskFull) {
			t.Errorf("%s with a failing audit log: %v", name, err)
		}
	}
	// A refusal is still refused, and says the audit record failed too.
	err := e.s.AddMember(ctx, e.as("out1"), "s1", "out1", ReadWrite)
	if !errors.Is(err, ErrForbidden) || !errors.Is(err, errDiskFull) {
		t.Errorf("refusal with a failing audit log: %v", err)
	}
	if after := e.dumpKV(); !reflect.DeepEqual(after, before) {
		t.Fatal("the stored state changed although the audit log failed")
	}
	if e.s.snap.Load() != snap {
		t.Fatal("the cache changed although the audit log failed")
	}
	if len(e.aud.all()) == 0 {
		t.Fatal("no records at all")
	}
	e.aud.fail.Store(false)
	e.ok(e.s.AddMember(ctx, iao, "s1", "out1", ReadWrite))
}

// testRace: the state changes between a change's check and its commit; the re-check inside
// the transaction refuses it, and an "error" record follows its "ok" record.
func testRace(t *testing.T, e *env) {
	e.world()
	e.s.testHookBeforeUpdate = func() {
		e.s.testHookBeforeUpdate = nil
		_, err := e.s.CreateUser(ctx, operator, NewUser{ID: "dup", UID: 3002, Email: "d@x.y"})
		e.ok(err)
	}
	_, err := e.s.CreateUser(ctx, operator, NewUser{ID: "dup", UID: 3001, Email: "d@x.y"})
	wantErr(t, err, ErrExists)
	if u, ok := e.s.UserByUID(3002); !ok || u.ID != "dup" {
		t.Fatal("the winner of the race is missing")
	}
	if _, ok := e.s.UserByUID(3001); ok {
		t.Fatal("the loser of the race was stored")
	}
	all := e.aud.all()
	tail := all[len(all)-3:]
	if tail[0].Result != "ok" || tail[0].Object != "user dup uid 3001 email d@x.y" ||
		tail[1].Result != "ok" || tail[1].Object != "user dup uid 3002 email d@x.y" ||
		tail[2].Result != "error" || tail[2].Object != tail[0].Object || tail[2].Durability != audit.Durable ||
		!strings.Contains(tail[2].Detail, "already exists") {
		t.Fatalf("audit trail of the race: %+v", tail)
	}

	// The actor loses its role in the window.
	e.s.testHookBeforeUpdate = func() {
		e.s.testHookBeforeUpdate = nil
		e.ok(e.s.RemoveIAA(ctx, e.as("iao1"), "p1", "iaa1"))
	}
	err = e.s.AddMember(ctx, e.as("iaa1"), "s1", "out1", ReadWrite)
	wantErr(t, err, ErrForbidden)
	if d := e.s.Decide(worldUIDs["out1"], Group, "s1", Read); d.Allow {
		t.Fatal("a change whose actor lost its role took effect")
	}
	if r := e.aud.last(); r.Action != "share.add" || r.Result != "error" {
		t.Fatalf("last record %+v", r)
	}
	e.checkCache()
}
