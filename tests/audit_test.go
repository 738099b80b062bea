package tests

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAuditChangesAndShow: truncate, chmod, chown attempts and extended attributes are
// audited before they take effect; a file name made to look like a record cannot forge a
// line of `dsh audit show`; show filters and streams JSON lines.
func TestAuditChangesAndShow(t *testing.T) {
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "echo hello > "+S+"/f && truncate -s 2 "+S+"/f && chmod 600 "+S+"/f && chown "+itoa(uidAlice)+" "+S+"/f")
	g.shFails(t, uidAlice, "chown 0 "+S+"/f", "Operation not permitted")
	if got := g.probe(t, uidAlice, "setxattr", S+"/f", "user.project", "cohort"); got != "ok" {
		t.Fatalf("setxattr: %s", got)
	}
	if got := g.probe(t, uidAlice, "removexattr", S+"/f", "user.project"); got != "ok" {
		t.Fatalf("removexattr: %s", got)
	}
	g.shOK(t, uidAlice, "echo again > "+S+"/f") // O_TRUNC
	g.shOK(t, uidAlice, "chmod 644 "+S+"/f")
	g.shFails(t, uidRO, "chmod 600 "+S+"/f", "Permission denied")
	if got := g.probe(t, uidRO, "setxattr", S+"/f", "user.x", "y"); got != "err EACCES" {
		t.Fatalf("setxattr by a read-only member: %s", got)
	}
	// A name that carries a newline and a whole forged record after it.
	forged := "x\n   999 2026-01-01T00:00:00Z uid=0 user=- vault.seal \"\" ok"
	g.shOK(t, uidAlice, "mv "+S+"/f \""+S+"/$(printf '"+strings.ReplaceAll(forged, "\n", `\n`)+"')\" && ls "+S)

	shown := g.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{
		`user=alice fs.truncate "group:s1/f" ok (size 2)`,
		`user=alice fs.chmod "group:s1/f" ok (mode 0600)`,
		`user=alice fs.chown "group:s1/f" ok (uid 2101)`,
		`user=alice fs.chown "group:s1/f" denied (uid 0)`,
		`user=alice fs.setxattr "group:s1/f" ok (user.project)`,
		`user=alice fs.removexattr "group:s1/f" ok (user.project)`,
		// O_TRUNC: the kernel truncates by a setattr before the open.
		`user=alice fs.truncate "group:s1/f" ok (size 0)`,
		`user=ro fs.chmod "group:s1/f" denied (mode 0600)`,
		`user=ro fs.setxattr "group:s1/f" denied (user.x)`,
		`user=alice fs.rename "group:s1/f" ok ("to s1/x\n   999 2026-01-01T00:00:00Z uid=0 user=- vault.seal \"\" ok")`,
	} {
		if !strings.Contains(shown, want) {
			t.Errorf("audit show lacks %s\n%s", want, shown)
		}
	}
	// One line per record, each starting with its seq: the forged record is no line.
	lines := strings.Split(strings.TrimSuffix(shown, "\n"), "\n")
	lineStart := regexp.MustCompile(`^ *(\d+) \d{4}-\d\d-\d\dT`)
	for i, l := range lines {
		m := lineStart.FindStringSubmatch(l)
		if m == nil || m[1] != strconv.Itoa(i+1) {
			t.Fatalf("line %d is not record %d: %q", i+1, i+1, l)
		}
	}
	verified := g.dsh(0, "", "audit", "verify").ok(t).stdout
	if !strings.Contains(verified, "audit chain ok: "+strconv.Itoa(len(lines))+" records") {
		t.Fatalf("show printed %d lines; verify says %s", len(lines), verified)
	}

	// Filters, and JSON lines for a SIEM.
	js := g.dsh(0, "", "audit", "show", "--user", "alice", "--action", "fs.*", "--json").ok(t).stdout
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(js, "\n"), "\n") {
		var r struct {
			Seq                          uint64
			Time                         time.Time
			User, Action, Object, Result string
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		if r.User != "alice" || !strings.HasPrefix(r.Action, "fs.") || r.Seq == 0 || r.Time.IsZero() {
			t.Fatalf("filtered record %+v", r)
		}
		if strings.Contains(r.Object, "999") && r.Object != "group:s1/"+forged {
			t.Fatalf("the name did not survive JSON: %q", r.Object)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d of alice's fs records", n)
	}
	if out := g.dsh(0, "", "audit", "show", "--action", "fs.chown", "--limit", "1").ok(t).stdout; strings.Count(out, "\n") != 1 || !strings.Contains(out, "fs.chown") {
		t.Fatalf("--limit 1: %q", out)
	}
	if out := g.dsh(0, "", "audit", "show", "--until", "2000-01-01T00:00:00Z").ok(t).stdout; out != "" {
		t.Fatalf("--until before the store: %q", out)
	}
	if out := g.dsh(0, "", "audit", "show", "--since", "1s", "--action", "no.such").ok(t).stdout; out != "" {
		t.Fatalf("no match: %q", out)
	}
	g.dsh(0, "", "audit", "show", "--since", "yesterday").fails(t, 1, "RFC 3339")
	g.dsh(uidAlice, "", "audit", "show").fails(t, 2, "operator")
	// Offline, the same.
	g.stop()
	off := g.dsh(0, "", "audit", "show", "--data", g.data, "--unseal-passphrase-file", g.passFile, "--user", "ro").ok(t).stdout
	if !strings.Contains(off, `user=ro fs.chmod "group:s1/f" denied (mode 0600)`) || strings.Contains(off, "user=alice") {
		t.Fatalf("offline show --user ro:\n%s", off)
	}
}
