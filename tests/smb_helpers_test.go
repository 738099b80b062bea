package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smbEnv is a daemon with both trees mounted and Samba in front of them, started from the
// smb.conf that `dsh smb config` writes (its own port on 127.0.0.1 and its own state
// folder, so it never touches a system Samba). Its cast have Unix accounts (Samba needs
// them) and SMB passwords from `dsh smb password`: alice and erin read-write members of
// s1, ro a read-only member, carol logged in but no member, dave a member who never logs
// in.
type smbEnv struct {
	*groupEnv
	Q, conf, port string
	dave          *person
	// accounts maps a uid to its Unix account name, auth to its smbclient credentials file.
	accounts map[int]string
	auth     map[int]string
	password map[int]string

	smbd *exec.Cmd
	out  *syncBuffer
	done chan error
}

// requireSamba finds smbd, smbclient and the SMB probe's Python library, which make test
// installs (scripts/deps.sh).
func requireSamba(t *testing.T) {
	t.Helper()
	requireTool(t, "smbd")
	requireTool(t, "smbclient")
	requireTool(t, "smbpasswd")
	requireTool(t, "useradd")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/samba/vfs/streams_xattr.so"); err != nil {
		if matches, _ := filepath.Glob("/usr/lib/*/samba/vfs/streams_xattr.so"); len(matches) == 0 {
			if os.Getenv("CI") == "true" {
				t.Fatal("Samba's VFS modules (samba-vfs-modules) are missing; make test installs them")
			}
			t.Skip("samba-vfs-modules is missing; run make test, which installs it")
		}
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import impacket").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3-impacket is missing; make test installs it")
		}
		t.Skip("python3-impacket is missing; run make test, which installs it")
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func newSMBEnv(t *testing.T, extra ...string) *smbEnv {
	t.Helper()
	requireFUSE(t)
	requireSamba(t)
	e := newEnv(t)
	s := &smbEnv{groupEnv: &groupEnv{env: e, S: filepath.Join(e.dir, "S")}, Q: filepath.Join(e.dir, "Q"),
		port: freePort(t), accounts: map[int]string{}, auth: map[int]string{}, password: map[int]string{}}
	for _, d := range []string{s.S, s.Q} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(e.dir, "samba")
	s.conf = filepath.Join(state, "smb.conf")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	e.dsh(0, "", "smb", "config", "--group", s.S, "--arrivals", s.Q, "--listen", "127.0.0.1", "--port", s.port,
		"--state", state, "--dsh", dshBin, "--out", s.conf).ok(t)
	e.start(true, append([]string{"--group", s.S, "--arrivals", s.Q, "--smb-conf", s.conf}, extra...)...)
	s.iao = setupProject(t, e)
	// The cast's uids are drawn for this test, since they get Unix accounts: a test run in
	// another checkout, or one that was killed before it removed its accounts, has others.
	base := smbUIDBase()
	s.alice = e.newPerson(t, "alice", base+1)
	s.erin = e.newPerson(t, "erin", base+2)
	s.ro = e.newPerson(t, "ro", base+3)
	s.carol = e.newPerson(t, "carol", base+4)
	s.dave = e.newPerson(t, "dave", base+5)
	for _, m := range []string{"alice", "erin", "dave"} {
		s.iao.as("share", "add", "s1", m).ok(t)
	}
	s.iao.as("share", "add", "s1", "ro", "--read-only").ok(t)
	for _, p := range []*person{s.alice, s.erin, s.ro, s.carol, s.dave} {
		s.addAccount(t, p.uid, p.id)
	}
	for _, p := range []*person{s.alice, s.erin, s.ro, s.carol} {
		p.login(t).ok(t)
		s.smbPassword(t, p)
	}
	s.startSmbd(t)
	return s
}

// smbUIDBase draws the first of ten uids, from 3,000,000 up, for one SMB test's cast.
func smbUIDBase() int {
	b := make([]byte, 4)
	rand.Read(b)
	return 3_000_000 + int(binary.BigEndian.Uint32(b)%1_000_000)*10
}

// addAccount gives uid a Unix account, which Samba needs to map an SMB user to a uid. Its
// name is the user ID with a random prefix, so that test runs in other checkouts never
// collide; it is removed when the test ends.
func (s *smbEnv) addAccount(t *testing.T, uid int, id string) {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name := "t" + hex.EncodeToString(b) + id
	out, err := exec.Command("useradd", "-M", "-N", "-g", "users", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
		"-u", itoa(uid), name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-f", name).CombinedOutput(); err != nil {
			t.Logf("userdel %s: %v: %s", name, err, out)
		}
	})
	s.accounts[uid] = name
}

var smbPasswordLine = regexp.MustCompile(`(?m)^password: (\S+)$`)

// smbPassword has p get a new SMB password with `dsh smb password` and keeps it in a
// credentials file for smbclient (so it is never on a command line).
func (s *smbEnv) smbPassword(t *testing.T, p *person) string {
	t.Helper()
	out := p.as("smb", "password").ok(t).stdout
	if !strings.Contains(out, "account: "+s.accounts[p.uid]+"\n") {
		t.Fatalf("smb password said %q", out)
	}
	m := smbPasswordLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no password line in %q", out)
	}
	auth := filepath.Join(s.dir, "samba", "auth-"+p.id)
	if err := os.WriteFile(auth, []byte("username = "+s.accounts[p.uid]+"\npassword = "+m[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.auth[p.uid], s.password[p.uid] = auth, m[1]
	return m[1]
}

// startSmbd runs smbd in the foreground on the test's config until the test ends.
func (s *smbEnv) startSmbd(t *testing.T) {
	t.Helper()
	smbd := requireTool(t, "smbd")
	cmd := exec.Command(smbd, "--foreground", "--no-process-group", "--debug-stdout", "-s", s.conf)
	s.out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Its own process group: smbd signals its whole group when it stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.smbd, s.done = cmd, make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+s.port, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-s.done:
			t.Fatalf("smbd exited (%v):\n%s", err, s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("smbd did not listen on %s:\n%s", s.port, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smbclient runs smbclient against share as p (its SMB credentials), with commands.
func (s *smbEnv) smbclient(t *testing.T, uid int, share, commands string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "smbclient", "//127.0.0.1/"+share, "-p", s.port, "-A", s.auth[uid], "-c", commands)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Dir = s.dir
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("smbclient: %v", err)
	}
	return result{args: []string{share, commands}, stdout: out.String(), stderr: errb.String(), code: code}
}

// smbOK runs smbclient commands that must all succeed and returns what it printed.
func (s *smbEnv) smbOK(t *testing.T, uid int, share, commands string) string {
	t.Helper()
	r := s.smbclient(t, uid, share, commands)
	all := r.stdout + r.stderr
	if r.code != 0 || strings.Contains(all, "NT_STATUS_") {
		t.Fatalf("smbclient as uid %d on %s: %s\nexit %d\n%s\nsmbd:\n%s\ndaemon:\n%s", uid, share, commands, r.code, all,
			tail(s.out.String(), 20), tail(s.serverLog(), 20))
	}
	return all
}

// smbFails runs smbclient commands whose output must show status (an NT_STATUS_ name).
func (s *smbEnv) smbFails(t *testing.T, uid int, share, commands, status string) string {
	t.Helper()
	r := s.smbclient(t, uid, share, commands)
	all := r.stdout + r.stderr
	if !strings.Contains(all, status) {
		t.Fatalf("smbclient as uid %d on %s: %s\nwant %s, got exit %d:\n%s", uid, share, commands, status, r.code, all)
	}
	return all
}

// smbProbe starts tests/smbprobe, an SMB client process that answers one line per request
// (connections, opens held across revocations, locks, share modes).
func (s *smbEnv) smbProbe(t *testing.T) *holder {
	t.Helper()
	root, err := filepath.Abs("smbprobe/smbprobe.py")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", root, "127.0.0.1", s.port)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{t: t, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		h.close()
		if e := errb.String(); e != "" {
			t.Logf("smbprobe stderr: %s", e)
		}
	})
	return h
}

// connect opens connection c of the probe as uid, with a tree connect on share; it
// returns the probe's answer to the tree connect.
func (s *smbEnv) connect(t *testing.T, h *holder, c string, uid int, share string) string {
	t.Helper()
	if got := h.do(fmt.Sprintf("conn %s %s %s", c, s.accounts[uid], s.password[uid])); got != "ok" {
		t.Fatalf("probe conn as uid %d: %s", uid, got)
	}
	return h.do("tree " + c + " " + share)
}

// want checks one answer of the probe.
func want(t *testing.T, h *holder, req, answer string) {
	t.Helper()
	if got := h.do(req); got != answer {
		t.Fatalf("probe %q: got %q, want %q", req, got, answer)
	}
}
