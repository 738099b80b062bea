package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The tamper tests: someone with the disk (or a backup) changes the store while the daemon
// is stopped. Every change below must make unseal fail with the reason, counted in
// dsh_integrity_errors_total and audited, instead of serving the changed store.

// saveCopy copies part of the data folder aside, as a backup or a disk image would.
func (e *env) saveCopy(t *testing.T, part string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), part)
	if out, err := exec.Command("cp", "-a", filepath.Join(e.data, part), dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return dst
}

// putBack replaces part of the data folder with a copy saved earlier.
func (e *env) putBack(t *testing.T, part, saved string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(e.data, part)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", saved, filepath.Join(e.data, part)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
}

// unsealRefused starts the daemon sealed, checks that `dsh operator unseal` fails saying
// why, that the store stays sealed, and that the refusal is counted and audited.
func (e *env) unsealRefused(t *testing.T, why string) {
	t.Helper()
	e.start(false)
	pass, err := os.ReadFile(e.passFile)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.dsh(0, string(pass), "operator", "unseal"); r.code != 2 || !strings.Contains(r.stderr, why) {
		t.Fatalf("unseal: exit %d, %q; want exit 2 and %q\ndaemon log:\n%s", r.code, r.stderr, why, tail(e.serverLog(), 40))
	}
	if st := e.dsh(0, "", "operator", "status").ok(t).stdout; !strings.Contains(st, "sealed") || strings.Contains(st, "unsealed") {
		t.Fatalf("store not sealed after a refused unseal:\n%s", st)
	}
	if v := metricValue(t, e.scrape(), "dsh_integrity_errors_total"); v == "0" {
		t.Error("the refused unseal is not counted in dsh_integrity_errors_total")
	}
	e.stop()
	shown := e.dsh(0, "", "audit", "show", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t).stdout
	if !strings.Contains(shown, "store.integrity") || !strings.Contains(shown, "refused") {
		t.Errorf("the refused unseal is not in the audit log:\n%s", tail(shown, 5))
	}
}

// TestTamperFlippedByteInMeta flips one byte in each table of the metadata store.
func TestTamperFlippedByteInMeta(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	setupProject(t, e)
	e.stop()
	var tables []string
	filepath.Walk(filepath.Join(e.data, "meta"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".sst") {
			tables = append(tables, p)
		}
		return nil
	})
	if len(tables) == 0 {
		t.Fatal("no metadata tables after a clean stop")
	}
	sort.Strings(tables)
	for _, p := range tables {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/3] ^= 0x08
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.unsealRefused(t, "failed its integrity check (a table failed its checksum)")
}

// TestTamperMembershipRolledBack puts back a copy of the metadata taken while a user was a
// member of a share, after the user's removal.
func TestTamperMembershipRolledBack(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	iao := setupProject(t, e)
	e.newPerson(t, "bob", uidOther)
	iao.as("share", "add", "s1", "bob").ok(t)
	again := iao.spare(t, 1)[0]
	e.stop()
	old := e.saveCopy(t, "meta")
	e.start(true)
	again.login(t).ok(t)
	again.as("share", "remove", "s1", "bob").ok(t)
	e.stop()
	e.putBack(t, "meta", old)
	e.unsealRefused(t, "the metadata is older than the audit log")
}

// TestTamperFileRolledBack puts back a file's metadata and objects from before it was
// rewritten: a consistent older copy of both, against today's audit log.
func TestTamperFileRolledBack(t *testing.T) {
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "echo 'dose: 5 mg' > "+S+"/prescription")
	tokens := g.alice.spare(t, 1)
	g.stop()
	oldMeta, oldBlobs := g.saveCopy(t, "meta"), g.saveCopy(t, "blobs")
	g.start(true, "--group", g.S)
	tokens[0].login(t).ok(t)
	g.shOK(t, uidAlice, "echo 'dose: 50 mg' > "+S+"/prescription")
	g.stop()
	g.putBack(t, "meta", oldMeta)
	g.putBack(t, "blobs", oldBlobs)
	g.unsealRefused(t, "the metadata is older than the audit log")
}
