package acl

import (
	"errors"
	"strings"
	"testing"
	"time"

	"dsh/audit"
	"dsh/vault"
)

// FuzzValidID: whatever passes as an ID is safe as a path element and a kv key part, and
// show never lets an input forge a line or grow without bound.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a/b", "ccaeabc", "a-b_c", "A", "a\x00", "é", strings.Repeat("a", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validID(s) {
			if s == "" || len(s) > MaxIDLen || strings.ContainsAny(s, "/.\\ \x00\n") || strings.ToLower(s) != s {
				t.Fatalf("validID accepted %q", s)
			}
			if checkID("x", s) != nil {
				t.Fatal("validID and checkID disagree")
			}
		} else if err := checkID("x", s); !errors.Is(err, ErrInvalid) {
			t.Fatalf("checkID(%q) = %v", s, err)
		}
		out := show(s)
		if strings.ContainsAny(out, "\n\r\x00") || len(out) > 4*showLimit+8 {
			t.Fatalf("show(%q) = %q", s, out)
		}
		_ = checkEmail(s) // must not panic
	})
}

func TestValidEmails(t *testing.T) {
	for _, em := range []string{"a@b", "c.abc@ucl.ac.uk", "first+tag@example.org", "jörg@example.de",
		strings.Repeat("a", 64) + "@" + strings.Repeat("b", 180) + ".uk"} {
		if err := checkEmail(em); err != nil {
			t.Errorf("checkEmail(%q) = %v", em, err)
		}
	}
}

// TestWithAuditLog runs changes and refusals against the real audit log, so every entry
// the Store writes is one the log accepts and records in order.
func TestWithAuditLog(t *testing.T) {
	dir := t.TempDir()
	key, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(dir, &key, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(openMem(t), newTestWrapper(t), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateUser(ctx, operator, NewUser{ID: "u1", UID: 2001, Email: "u1@x.y"})
	wantErr(t, err, nil)
	_, err = s.CreateProject(ctx, operator, "p1", "u1")
	wantErr(t, err, nil)
	u1, _ := s.ActorFor(ctx, 2001)
	_, err = s.CreateShare(ctx, u1, "s1", "p1")
	wantErr(t, err, nil)
	wantErr(t, s.AddMember(ctx, u1, "s1", "u1", ReadWrite), nil)
	wantErr(t, s.AddMember(ctx, Actor{UID: 2002}, "s1", strings.Repeat("\n", 9000), ReadWrite), ErrForbidden)
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = audit.Read(dir, &key, time.Time{}, func(r audit.Record) error {
		got = append(got, r.Action+" "+r.Result)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "user.create ok,project.create ok,share.create ok,share.add ok,share.add denied"
	if strings.Join(got, ",") != want {
		t.Fatalf("audit log holds %v", got)
	}
	// With the log closed, changes are refused.
	err = s.AddMember(ctx, u1, "s1", "u1", ReadOnly)
	if !errors.Is(err, ErrAudit) || !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("change with a closed audit log: %v", err)
	}
	if d := s.Decide(2001, Group, "s1", Write); !d.Allow {
		t.Fatalf("the refused mode change took effect: %+v", d)
	}
}
