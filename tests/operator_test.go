package tests

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"dsh/kv"
	"dsh/store"
)

// TestOperatorKey: init and rekey refuse weak passphrases and passphrase files others can
// read; rekey changes the passphrase, audited, and the old one stops working; the daemon's
// secrets live in locked memory.
func TestOperatorKey(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	weak := filepath.Join(dir, "weak")
	os.WriteFile(weak, []byte("password\n"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("correct horse battery staple\n"), 0o644)
	e := &env{t: t, dir: dir, socket: filepath.Join(dir, "run", "control.sock")}
	e.dsh(0, "", "init", "--data", filepath.Join(dir, "d1"), "--unseal-passphrase-file", weak).fails(t, 2, "at least 16 characters long and use at least 8 different characters")
	e.dsh(0, "", "init", "--data", filepath.Join(dir, "d2"), "--unseal-passphrase-file", open).fails(t, 2, "open to its group or to others (mode 0644); chmod 600 it")

	e = newEnv(t)
	os.Chmod(e.passFile, 0o640)
	r := e.dsh(0, "", "--socket", e.socket, "serve", "--data", e.data, "--unseal-passphrase-file", e.passFile)
	r.fails(t, 2, "open to its group or to others")
	os.Chmod(e.passFile, 0o600)

	e.start(false)
	const oldPass, newPass = "correct horse battery staple", "a brand new unseal passphrase"
	e.dsh(0, oldPass+"\n"+newPass+"\n", "operator", "rekey").fails(t, 2, "needs the store unsealed")
	e.dsh(0, oldPass+"\n", "operator", "unseal").ok(t)
	e.dsh(0, "not the passphrase\n"+newPass+"\n", "operator", "rekey").fails(t, 2, "wrong unseal passphrase")
	e.dsh(0, oldPass+"\nshort\n", "operator", "rekey").fails(t, 1, "at least 16 characters")
	e.dsh(uidOther, oldPass+"\n"+newPass+"\n", "operator", "rekey").fails(t, 2, "operator")
	e.dsh(0, oldPass+"\n"+newPass+"\n", "operator", "rekey").ok(t)

	// The daemon's keys live in locked memory, and it cannot be dumped.
	e.mu.Lock()
	pid := e.cmd.Process.Pid
	e.mu.Unlock()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmLck:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil || string(m[1]) == "0" {
		t.Errorf("the daemon holds no locked memory:\n%s", status)
	}
	if fi, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/mem"); err == nil {
		_ = fi // a non-dumpable process's /proc files belong to root whatever its uid; as root, nothing to see
	}

	e.dsh(0, "", "operator", "seal").ok(t)
	e.dsh(0, oldPass+"\n", "operator", "unseal").fails(t, 2, "wrong unseal passphrase")
	e.dsh(0, newPass+"\n", "operator", "unseal").ok(t)
	shown := e.dsh(0, "", "audit", "show", "--action", "vault.rekey").ok(t).stdout
	for _, want := range []string{`vault.rekey "" denied (wrong passphrase)`, `vault.rekey "" ok`} {
		if !strings.Contains(shown, want) {
			t.Errorf("audit lacks %s:\n%s", want, shown)
		}
	}
	e.stop()
	os.WriteFile(e.passFile, []byte(newPass+"\n"), 0o600)
	e.dsh(0, "", "audit", "verify", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t)
}

// TestUnsealFailsWhenATreeCannotStart: a tree whose metadata it cannot read at start makes
// the unseal fail with the reason, and the store stays sealed.
func TestUnsealFailsWhenATreeCannotStart(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	// An orphan whose inode record is not one: the tree's start-up reaping cannot read it.
	p, err := store.Unseal(e.data, []byte("correct horse battery staple"), store.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ino := binary.BigEndian.AppendUint64(nil, 1<<40)
	if err := p.KV.Update(context.Background(), func(tx kv.Txn) error {
		if err := tx.Set(append([]byte("fs/i/"), ino...), []byte{0xff, 1, 2}); err != nil {
			return err
		}
		return tx.Set(append([]byte("fs/z/"), ino...), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Checkpoint(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	p.Close()
	S := filepath.Join(e.dir, "S")
	os.Mkdir(S, 0o755)
	e.start(false, "--group", S)
	e.dsh(0, "correct horse battery staple\n", "operator", "unseal").fails(t, 2, "the group tree could not start")
	if st := e.dsh(0, "", "operator", "status").ok(t).stdout; !regexp.MustCompile(`store:\s+sealed`).MatchString(st) {
		t.Fatalf("status after a failed unseal:\n%s", st)
	}
}
