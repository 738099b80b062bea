package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Through Samba, each user gets exactly their rights: a member lists and copies, a
// read-only member is refused a write, a non-member sees no share, a user without a dsh
// session is refused at tree connect even with the right SMB password, and the audit log
// names each of them.
func TestSMBSharesAndRights(t *testing.T) {
	s := newSMBEnv(t)

	// A member lists S (only the shares it belongs to) and copies in and out.
	src := filepath.Join(s.dir, "local.txt")
	if err := os.WriteFile(src, []byte("participant,age\n1,54\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := s.smbOK(t, s.alice.uid, "S", "ls; put "+src+" s1/cohort.csv; ls s1/*; get s1/cohort.csv "+src+".back")
	if !regexp.MustCompile(`(?m)^\s+s1\s+D\s`).MatchString(out) || !strings.Contains(out, "cohort.csv") {
		t.Fatalf("member's listing:\n%s", out)
	}
	if b, err := os.ReadFile(src + ".back"); err != nil || string(b) != "participant,age\n1,54\n" {
		t.Fatalf("copied back %q, %v", b, err)
	}
	// The file is the member's, through the mount too.
	if got := s.shOK(t, s.erin.uid, "cat "+s.S+"/s1/cohort.csv"); got != "participant,age\n1,54\n" {
		t.Fatalf("through the mount: %q", got)
	}

	// A read-only member reads and is refused every change.
	s.smbOK(t, s.ro.uid, "S", "get s1/cohort.csv "+src+".ro")
	s.smbFails(t, s.ro.uid, "S", "put "+src+" s1/ro.txt", "NT_STATUS_ACCESS_DENIED")
	s.smbFails(t, s.ro.uid, "S", "del s1/cohort.csv", "NT_STATUS_ACCESS_DENIED")
	s.smbFails(t, s.ro.uid, "S", "mkdir s1/d", "NT_STATUS_ACCESS_DENIED")

	// A logged-in non-member sees no share and cannot name one.
	out = s.smbOK(t, s.carol.uid, "S", "ls")
	if strings.Contains(out, "s1") {
		t.Fatalf("non-member's listing shows the share:\n%s", out)
	}
	s.smbFails(t, s.carol.uid, "S", "ls s1/*", "NT_STATUS_OBJECT_NAME_NOT_FOUND")
	s.smbFails(t, s.carol.uid, "S", "get s1/cohort.csv "+src+".carol", "NT_STATUS_OBJECT_")

	// An SMB password alone opens nothing: dave, a member, sets one while logged in, then
	// logs out; his tree connect is refused. A wrong password fails before that.
	s.dave.login(t).ok(t)
	s.smbPassword(t, s.dave)
	s.smbOK(t, s.dave.uid, "S", "ls s1/*")
	s.dave.as("logout").ok(t)
	s.smbFails(t, s.dave.uid, "S", "ls", "NT_STATUS_ACCESS_DENIED")
	s.smbFails(t, s.dave.uid, "Q", "ls", "NT_STATUS_ACCESS_DENIED")
	if err := os.WriteFile(s.auth[s.dave.uid], []byte("username = "+s.accounts[s.dave.uid]+"\npassword = not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.smbFails(t, s.dave.uid, "S", "ls", "NT_STATUS_LOGON_FAILURE")
	// A password for an account without a session cannot be had either.
	s.dave.as("smb", "password").fails(t, 2, "needs an active two-factor session")

	// Only root may ask the tree-connect question, and the daemon checks what it is told.
	s.erin.as("smb", "check", "--user", s.accounts[s.erin.uid], "--share", "S", "--client", "127.0.0.1").fails(t, 2, "operator (root) only")
	s.dsh(0, "", "smb", "check", "--user", s.accounts[s.erin.uid], "--share", "S", "--client", "not-an-ip").fails(t, 2, "not an IP address")
	s.dsh(0, "", "smb", "check", "--user", "nosuchaccount", "--share", "S", "--client", "127.0.0.1").fails(t, 2, "no such Unix account")
	s.dsh(0, "", "smb", "check", "--user", s.accounts[s.erin.uid], "--share", "S", "--client", "127.0.0.1").ok(t)

	// The audit log names each user: their tree connects, allowed and refused, and what
	// they did through Samba, as for local access. (The read-only member's write never
	// reached dsh: Samba refuses it from the mode bits dsh shows that member.)
	log := s.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{
		`uid=` + itoa(s.alice.uid) + ` user=alice smb.connect "S" ok (account ` + s.accounts[s.alice.uid] + ` from 127.0.0.1)`,
		`uid=` + itoa(s.alice.uid) + ` user=alice fs.create "group:s1/cohort.csv" ok`,
		`uid=` + itoa(s.ro.uid) + ` user=ro fs.open "group:s1/cohort.csv" ok (read)`,
		`uid=` + itoa(s.carol.uid) + ` user=carol smb.connect "S" ok`,
		`uid=` + itoa(s.dave.uid) + ` user=dave smb.connect "S" denied (account ` + s.accounts[s.dave.uid] + ` from 127.0.0.1: no live dsh session)`,
		`uid=` + itoa(s.dave.uid) + ` user=dave smb.password "` + s.accounts[s.dave.uid] + `" denied (no live dsh session)`,
		`uid=` + itoa(s.erin.uid) + ` user=erin smb.connect "S" ok`, // the operator's own check names erin too
	} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
	if strings.Contains(log, s.password[s.alice.uid]) {
		t.Fatal("an SMB password is in the audit log")
	}
	if t.Failed() {
		t.Logf("audit log:\n%s", log)
	}
}

// Arrivals through Samba: the owner sees and copies an upload, may delete it, and may not
// create, write or rename anything there; nobody else sees the folder.
func TestSMBArrivals(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	s := newSMBEnv(t)
	src := filepath.Join(s.dir, "wave2.csv")
	if err := os.WriteFile(src, []byte("participant,age\n2,61\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.dsh(s.alice.uid, "", "upload", src).ok(t)
	out := s.smbOK(t, s.alice.uid, "Q", "ls; ls alice/*; get alice/wave2.csv "+src+".back")
	if !strings.Contains(out, "wave2.csv") {
		t.Fatalf("the owner's Q listing:\n%s", out)
	}
	if b, _ := os.ReadFile(src + ".back"); string(b) != "participant,age\n2,61\n" {
		t.Fatalf("copied back %q", b)
	}
	out = s.smbOK(t, s.erin.uid, "Q", "ls")
	if strings.Contains(out, "alice") {
		t.Fatalf("another user sees alice's Arrivals:\n%s", out)
	}
	s.smbFails(t, s.erin.uid, "Q", "ls alice/*", "NT_STATUS_OBJECT_NAME_NOT_FOUND")
	// Inbound only: no create, no overwrite, no rename, no folder.
	s.smbFails(t, s.alice.uid, "Q", "put "+src+" alice/new.csv", "NT_STATUS_ACCESS_DENIED")
	s.smbFails(t, s.alice.uid, "Q", "put "+src+" alice/wave2.csv", "NT_STATUS_ACCESS_DENIED")
	s.smbFails(t, s.alice.uid, "Q", "rename alice/wave2.csv alice/w.csv", "NT_STATUS_ACCESS_DENIED")
	s.smbFails(t, s.alice.uid, "Q", "mkdir alice/d", "NT_STATUS_ACCESS_DENIED")
	// Copy into the share from Q, as a desktop user would, then delete from Arrivals.
	s.smbOK(t, s.alice.uid, "S", "put "+src+".back s1/wave2.csv")
	s.smbOK(t, s.alice.uid, "Q", "del alice/wave2.csv")
	if got := s.shOK(t, s.alice.uid, "ls -A "+s.Q+"/alice"); got != "" {
		t.Fatalf("after the delete, Arrivals holds %q", got)
	}
	log := s.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{`user=alice fs.open "arrivals:alice/wave2.csv" ok (read)`, `user=alice fs.delete "arrivals:alice/wave2.csv" ok`, `user=alice fs.create "arrivals:alice/new.csv" denied`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("audit log:\n%s", log)
	}
}

// Removal, logout, disable and seal reach an SMB session that is already connected and a
// file it holds open, at its next read or write, as they do for local processes.
func TestSMBRevocation(t *testing.T) {
	s := newSMBEnv(t)
	s.shOK(t, s.alice.uid, "echo secret > "+s.S+"/s1/f.txt")
	p := s.smbProbe(t)
	open := func(c string, uid int, f string) {
		t.Helper()
		if got := s.connect(t, p, c, uid, "S"); got != "ok" {
			t.Fatalf("tree connect as uid %d: %s", uid, got)
		}
		access := "rw"
		if uid == s.ro.uid {
			access = "r"
		}
		want(t, p, "open "+c+" "+f+" s1/f.txt "+access+" rw", "ok")
		want(t, p, "read "+f+" 0 6", "ok secret")
	}

	// Removal of a member while its SMB session holds the file open.
	open("e", s.erin.uid, "fe")
	s.iao.as("share", "remove", "s1", "erin").ok(t)
	want(t, p, "read fe 0 6", "err STATUS_ACCESS_DENIED")
	want(t, p, "write fe 0 changed", "err STATUS_ACCESS_DENIED")
	// Its connected tree no longer shows the share, and a new connect shows nothing either.
	want(t, p, "open e fe2 s1/f.txt r rw", "err STATUS_OBJECT_PATH_NOT_FOUND")
	if out := s.smbOK(t, s.erin.uid, "S", "ls"); strings.Contains(out, "s1") {
		t.Fatalf("removed member still lists the share:\n%s", out)
	}

	// Logout: the held file fails, and a new tree connect is refused.
	open("a", s.alice.uid, "fa")
	s.alice.as("logout").ok(t)
	want(t, p, "read fa 0 6", "err STATUS_ACCESS_DENIED")
	s.smbFails(t, s.alice.uid, "S", "ls", "NT_STATUS_ACCESS_DENIED")

	// Disable.
	open("r", s.ro.uid, "fr")
	s.dsh(0, "", "user", "disable", "ro").ok(t)
	want(t, p, "read fr 0 6", "err STATUS_ACCESS_DENIED")
	s.smbFails(t, s.ro.uid, "S", "ls", "NT_STATUS_ACCESS_DENIED")

	// Seal: every SMB session loses everything; unsealing gives nothing back without a new
	// login.
	s.dave.login(t).ok(t)
	s.smbPassword(t, s.dave)
	open("d", s.dave.uid, "fd")
	s.dsh(0, "", "operator", "seal").ok(t)
	want(t, p, "read fd 0 6", "err STATUS_ACCESS_DENIED")
	s.dsh(0, "correct horse battery staple\n", "operator", "unseal").ok(t)
	want(t, p, "read fd 0 6", "err STATUS_ACCESS_DENIED")
	s.smbFails(t, s.dave.uid, "S", "ls", "NT_STATUS_ACCESS_DENIED")

	// The refusals on held handles are audited, naming the opener.
	log := s.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{`user=erin fs.read "group:s1/f.txt" denied (open handle)`, `user=alice fs.read "group:s1/f.txt" denied (open handle)`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %q:\n%s", want, log)
		}
	}
}

// Two users in one smbd at once: one connection, two SMB sessions (smbclient's logon), so
// one smbd process and its I/O threads serve both. Each gets exactly their own rights,
// including on reads and writes the thread pool performs, and after one of them is
// removed the other still reads.
func TestSMBTwoUsersOneSmbd(t *testing.T) {
	s := newSMBEnv(t)
	big := filepath.Join(s.dir, "big.bin")
	writeRandom(t, big, 24<<20)
	back := filepath.Join(s.dir, "big.back")
	cmds := strings.Join([]string{
		"put " + big + " s1/big.bin",                                 // alice writes through the pool
		"logon " + s.accounts[s.ro.uid] + " " + s.password[s.ro.uid], // a second session on the same connection
		"tcon S",
		"get s1/big.bin " + back, // ro reads through the pool
		"put " + big + " s1/ro.bin",
	}, "\n") + "\n"
	r := s.smbclientStdin(t, s.alice.uid, "S", cmds)
	if !strings.Contains(r, "NT_STATUS_ACCESS_DENIED opening remote file \\s1\\ro.bin") {
		t.Fatalf("the read-only session's write was not refused:\n%s", r)
	}
	s.sameFile(t, big, back)
	s.sameFile(t, big, s.S+"/s1/big.bin")

	// Now remove alice from the share; in one smbd, ro still reads and alice cannot.
	cmds = strings.Join([]string{
		"get s1/big.bin " + back + ".1", // alice, before
		"logon " + s.accounts[s.ro.uid] + " " + s.password[s.ro.uid],
		"tcon S",
		"!" + s.removeScript(t, "alice"),
		"get s1/big.bin " + back + ".2", // ro, after: allowed
	}, "\n") + "\n"
	r = s.smbclientStdin(t, s.alice.uid, "S", cmds)
	s.sameFile(t, big, back+".1")
	s.sameFile(t, big, back+".2")
	s.smbFails(t, s.alice.uid, "S", "get s1/big.bin "+back+".3", "NT_STATUS_OBJECT_")
	if strings.Contains(r, "NT_STATUS") {
		t.Fatalf("smbclient:\n%s", r)
	}
}

// removeScript writes a script that removes user from s1 as the IAO, for smbclient's "!"
// shell escape, so the removal happens between two commands of one SMB connection.
func (s *smbEnv) removeScript(t *testing.T, user string) string {
	t.Helper()
	p := filepath.Join(s.dir, "remove-"+user+".sh")
	script := "#!/bin/sh\nexec setpriv --reuid " + itoa(uidIAO) + " --regid " + itoa(uidIAO) + " --clear-groups " +
		dshBin + " --socket " + s.socket + " share remove s1 " + user + " >/dev/null\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// smbclientStdin runs smbclient as uid with commands on its standard input (one per line),
// for sessions that need more than -c allows, and returns all it printed.
func (s *smbEnv) smbclientStdin(t *testing.T, uid int, share, commands string) string {
	t.Helper()
	cmd := execCommand(t, "smbclient", "//127.0.0.1/"+share, "-p", s.port, "-A", s.auth[uid])
	cmd.Stdin = strings.NewReader(commands)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// What Windows expects of a drive: DOS attributes and alternate data streams stored in dsh,
// byte-range locks and share modes between two SMB clients, change notification between
// them, and file IDs that are dsh's inode numbers.
func TestSMBWindowsSemantics(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	s := newSMBEnv(t)
	s.shOK(t, s.alice.uid, "printf 'hello world' > "+s.S+"/s1/f.txt")

	// DOS attributes: set through one connection, seen through a new one (a new smbd
	// process, so they came from dsh), and stored as user.DOSATTRIB in dsh.
	s.smbOK(t, s.alice.uid, "S", "setmode s1/f.txt +hs")
	out := s.smbOK(t, s.erin.uid, "S", "allinfo s1/f.txt")
	if !regexp.MustCompile(`attributes: HSA? \(2[26]\)|attributes: HS`).MatchString(out) {
		t.Fatalf("attributes after setmode +hs:\n%s", out)
	}
	if got := s.shOK(t, s.erin.uid, `/usr/bin/python3 -c "import os,sys; print(len(os.getxattr(sys.argv[1], 'user.DOSATTRIB')))" `+s.S+"/s1/f.txt"); strings.TrimSpace(got) == "0" {
		t.Fatal("no user.DOSATTRIB stored")
	}
	s.smbOK(t, s.alice.uid, "S", "setmode s1/f.txt -hs")
	if out := s.smbOK(t, s.erin.uid, "S", "allinfo s1/f.txt"); strings.Contains(out, "attributes: HS") {
		t.Fatalf("attributes after -hs:\n%s", out)
	}

	// Alternate data streams (streams_xattr): up to 65,535 bytes each.
	stream := filepath.Join(s.dir, "stream")
	writeRandom(t, stream, 65535)
	s.smbOK(t, s.alice.uid, "S", "put "+stream+" s1/f.txt:Zone.Identifier")
	out = s.smbOK(t, s.erin.uid, "S", "allinfo s1/f.txt; get s1/f.txt:Zone.Identifier "+stream+".back")
	if !strings.Contains(out, "stream: [:Zone.Identifier:$DATA], 65535 bytes") || !strings.Contains(out, "stream: [::$DATA], 11 bytes") {
		t.Fatalf("streams:\n%s", out)
	}
	s.sameFile(t, stream, stream+".back")
	writeRandom(t, stream+".big", 65536)
	s.smbFails(t, s.alice.uid, "S", "put "+stream+".big s1/f.txt:big", "NT_STATUS_FILE_SYSTEM_LIMITATION")
	if got := s.shOK(t, s.alice.uid, "cat "+s.S+"/s1/f.txt"); got != "hello world" {
		t.Fatalf("the file's data after streams: %q", got)
	}

	// Byte-range locks and share modes between two SMB clients (alice and erin).
	p := s.smbProbe(t)
	for _, c := range []struct {
		name string
		uid  int
	}{{"a", s.alice.uid}, {"e", s.erin.uid}} {
		if got := s.connect(t, p, c.name, c.uid, "S"); got != "ok" {
			t.Fatalf("tree connect: %s", got)
		}
	}
	want(t, p, "open a fa s1/f.txt rw rw", "ok")
	want(t, p, "open e fe s1/f.txt rw rw", "ok")
	want(t, p, "lock fa 0 5 x", "ok")
	want(t, p, "lock fe 0 5 s", "err STATUS_LOCK_NOT_GRANTED")
	want(t, p, "lock fe 2 10 x", "err STATUS_LOCK_NOT_GRANTED")
	want(t, p, "read fe 0 5", "err STATUS_FILE_LOCK_CONFLICT")
	want(t, p, "write fe 1 X", "err STATUS_FILE_LOCK_CONFLICT")
	want(t, p, "read fe 6 5", "ok world")
	want(t, p, "lock fe 6 5 s", "ok")
	want(t, p, "write fa 6 W", "err STATUS_FILE_LOCK_CONFLICT")
	want(t, p, "unlock fa 0 5", "ok")
	want(t, p, "lock fe 0 5 x", "ok")
	want(t, p, "read fa 0 5", "err STATUS_FILE_LOCK_CONFLICT")
	want(t, p, "close fe", "ok") // closing releases erin's locks
	want(t, p, "lock fa 0 11 x", "ok")
	want(t, p, "write fa 0 H", "ok 1")
	want(t, p, "close fa", "ok")
	// Share modes: an open that shares nothing keeps others out, and a file open without
	// FILE_SHARE_DELETE cannot be deleted.
	want(t, p, "open a fx s1/f.txt r -", "ok")
	want(t, p, "open e fy s1/f.txt r rw", "err STATUS_SHARING_VIOLATION")
	s.smbFails(t, s.erin.uid, "S", "del s1/f.txt", "NT_STATUS_SHARING_VIOLATION")
	want(t, p, "close fx", "ok")
	want(t, p, "open a fx s1/f.txt r rw", "ok")
	s.smbFails(t, s.erin.uid, "S", "del s1/f.txt", "NT_STATUS_SHARING_VIOLATION")
	want(t, p, "close fx", "ok")
	if got := s.shOK(t, s.alice.uid, "cat "+s.S+"/s1/f.txt"); got != "Hello world" {
		t.Fatalf("after the locked write: %q", got)
	}

	// Change notification between SMB clients: erin watches the folder, alice creates a file.
	watch := execCommand(t, "stdbuf", "-o0", "smbclient", "//127.0.0.1/S", "-p", s.port, "-A", s.auth[s.erin.uid])
	stdin, _ := watch.StdinPipe()
	var notes syncBuffer
	watch.Stdout, watch.Stderr = &notes, &notes
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "notify s1\n")
	time.Sleep(time.Second) // the watch is placed
	s.smbOK(t, s.alice.uid, "S", "put "+stream+" s1/new.bin")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(notes.String(), "new.bin") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stdin.Close()
	watch.Process.Kill()
	watch.Wait()
	if !regexp.MustCompile(`(?m)^0001 new\.bin$`).MatchString(notes.String()) {
		t.Fatalf("no change notification for the new file:\n%s", notes.String())
	}
}

// A 1 GiB file goes in and comes out byte-exact through Samba.
func TestSMBLargeFile(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	s := newSMBEnv(t)
	size := int64(1 << 30)
	if os.Getenv("DSH_E2E_RACE") == "1" {
		size = 128 << 20 // a race-built daemon is many times slower
	}
	big := filepath.Join(s.dir, "big.bin")
	writeRandom(t, big, size)
	s.smbOK(t, s.alice.uid, "S", "put "+big+" s1/big.bin")
	s.smbOK(t, s.erin.uid, "S", "get s1/big.bin "+big+".back")
	s.sameFile(t, big, big+".back")
	os.Remove(big + ".back")
	if st, err := os.Stat(s.S + "/s1/big.bin"); err == nil {
		t.Fatalf("root can stat inside the share: %v", st)
	}
}

// execCommand is exec.Command bounded in time, so a hung tool fails the test.
func execCommand(t *testing.T, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, name, args...)
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

// writeRandom writes n random bytes to path, readable by everyone.
func writeRandom(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := io.CopyN(f, src, n); err != nil {
		t.Fatal(err)
	}
}

// sameFile compares two files by their SHA-256; b may be inside a mount only its members
// reach, so it is read as erin (a member) when root cannot.
func (s *smbEnv) sameFile(t *testing.T, a, b string) {
	t.Helper()
	sum := func(p string) []byte {
		f, err := os.Open(p)
		if err != nil {
			cmd := execCommand(t, "sha256sum", p)
			cmd.SysProcAttr = credential(s.erin.uid)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("read %s: %v", p, err)
			}
			return []byte(strings.Fields(string(out))[0])
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return []byte(hexString(h.Sum(nil)))
	}
	if x, y := sum(a), sum(b); !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}
