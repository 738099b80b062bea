package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"dsh/scan/clamdtest"
)

// testbed holds the four targets, mounted, and the dsh daemon.
type testbed struct {
	c          config
	work, self string
	dirs       map[string]string
	procs      []*exec.Cmd
	mounts     []string
	daemon     *exec.Cmd
	clamd      *clamdtest.Clamd
	socket     string
	uploadSrc  string
}

const memberPass = "bench password 1234"

func (t *testbed) asUID(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(t.c.uid), Gid: uint32(t.c.uid)}}
	return cmd
}

func (t *testbed) mkdir(name string, owner int) (string, error) {
	p := filepath.Join(t.work, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", err
	}
	return p, os.Chown(p, owner, owner)
}

// waitMount waits until dir is a mount point other than its parent's device.
func waitMount(dir string) error {
	var parent, st syscall.Stat_t
	for i := 0; i < 200; i++ {
		if syscall.Stat(filepath.Dir(dir), &parent) == nil && syscall.Stat(dir, &st) == nil && st.Dev != parent.Dev {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not get mounted", dir)
}

func (t *testbed) setup() error {
	t.dirs = map[string]string{}
	uid := t.c.uid
	var err error
	if t.dirs["plain"], err = t.mkdir("plain", uid); err != nil {
		return err
	}

	// fuse-ceiling: go-fuse loopback, passthrough off.
	src, err := t.mkdir("ceiling-src", uid)
	if err != nil {
		return err
	}
	mnt, err := t.mkdir("ceiling-mnt", 0)
	if err != nil {
		return err
	}
	cmd := exec.Command(t.c.ceil, src, mnt)
	if err := cmd.Start(); err != nil {
		return err
	}
	t.procs = append(t.procs, cmd)
	if err := waitMount(mnt); err != nil {
		return err
	}
	t.mounts = append(t.mounts, mnt)
	t.dirs["fuse-ceiling"] = mnt

	// gocryptfs, with its password in a file.
	pass := filepath.Join(t.work, "gocryptfs.pass")
	if err := os.WriteFile(pass, []byte("bench gocryptfs password\n"), 0o600); err != nil {
		return err
	}
	cipher, err := t.mkdir("gocryptfs-cipher", 0)
	if err != nil {
		return err
	}
	plainMnt, err := t.mkdir("gocryptfs-mnt", 0)
	if err != nil {
		return err
	}
	if out, err := exec.Command("gocryptfs", "-init", "-q", "-passfile", pass, cipher).CombinedOutput(); err != nil {
		return fmt.Errorf("gocryptfs -init: %v: %s", err, out)
	}
	if out, err := exec.Command("gocryptfs", "-q", "-passfile", pass, "-allow_other", cipher, plainMnt).CombinedOutput(); err != nil {
		return fmt.Errorf("gocryptfs mount: %v: %s", err, out)
	}
	t.mounts = append(t.mounts, plainMnt)
	os.Chown(plainMnt, uid, uid)
	t.dirs["gocryptfs"] = plainMnt

	// dsh: a store, the daemon with both trees, a member logged in, a share.
	if err := t.startDSH(); err != nil {
		return err
	}
	// The upload source, readable by the member.
	t.uploadSrc = filepath.Join(t.work, "upload.bin")
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > %s && chmod 644 %s", t.c.uploadSize, t.uploadSrc, t.uploadSrc)).CombinedOutput(); err != nil {
		return fmt.Errorf("make upload source: %v: %s", err, out)
	}
	return nil
}

func (t *testbed) dsh(uid int, stdin string, args ...string) (string, error) {
	cmd := exec.Command(t.c.bin, append([]string{"--socket", t.socket}, args...)...)
	if uid != 0 {
		t.asUID(cmd)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("dsh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (t *testbed) startDSH() error {
	data := filepath.Join(t.work, "dsh-data")
	pass := filepath.Join(t.work, "dsh.pass")
	t.socket = filepath.Join(t.work, "dsh.sock")
	if err := os.WriteFile(pass, []byte("bench unseal passphrase\n"), 0o600); err != nil {
		return err
	}
	if _, err := t.dsh(0, "", "init", "--data", data, "--unseal-passphrase-file", pass); err != nil {
		return err
	}
	S, err := t.mkdir("S", 0)
	if err != nil {
		return err
	}
	Q, err := t.mkdir("Q", 0)
	if err != nil {
		return err
	}
	// Every upload is scanned (the malware gate): row 7 pays for it, with a clamd of its
	// own holding the tests' one-signature database (its scanning speed does not depend on
	// how many signatures it holds as much as on reading the bytes).
	cdir := filepath.Join(t.work, "clamd")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return err
	}
	limit := max(t.c.uploadSize+1<<20, 64<<20)
	if t.clamd, err = clamdtest.Start(context.Background(), cdir, clamdtest.Options{StreamMaxLength: limit}); err != nil {
		return err
	}
	cmd := exec.Command(t.c.bin, "--socket", t.socket, "serve", "--data", data, "--unseal-passphrase-file", pass,
		"--group", S, "--arrivals", Q, "--metrics", "127.0.0.1:0", "--portal", "127.0.0.1:0",
		"--smb-conf", filepath.Join(t.work, "samba", "smb.conf"),
		"--clamd", t.clamd.Socket, "--clamd-max-size", strconv.FormatInt(limit, 10))
	logf, err := os.Create(filepath.Join(t.work, "dsh.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	t.daemon = cmd
	t.mounts = append(t.mounts, S, Q)
	for i := 0; ; i++ {
		if _, err := t.dsh(0, "", "operator", "status"); err == nil {
			break
		} else if i > 200 {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	uid := t.c.uid
	out, err := t.dsh(0, "", "user", "create", "bench", "--uid", strconv.Itoa(uid), "--email", "bench@example.org")
	if err != nil {
		return err
	}
	ecode := strings.TrimSpace(strings.TrimPrefix(lineWith(out, "enrolment code: "), "enrolment code: "))
	q := filepath.Join(t.work, "questions")
	if err := os.WriteFile(q, []byte("a\tb\nc\td\ne\tf\n"), 0o600); err != nil {
		return err
	}
	os.Chown(q, uid, uid)
	out, err = t.dsh(uid, memberPass+"\n2468\n", "enroll", "--code", ecode, "--questions-file", q)
	if err != nil {
		return err
	}
	m := secretRe.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("no otpauth URL in %q", out)
	}
	c, err := code(m[1])
	if err != nil {
		return err
	}
	if _, err := t.dsh(uid, memberPass+"\n2468\n", "login", "--code", c); err != nil {
		return err
	}
	if _, err := t.dsh(0, "", "project", "create", "bench", "--iao", "bench"); err != nil {
		return err
	}
	if _, err := t.dsh(uid, "", "share", "create", "bench", "--project", "bench"); err != nil {
		return err
	}
	if _, err := t.dsh(uid, "", "share", "add", "bench", "bench"); err != nil {
		return err
	}
	t.dirs["dsh"] = filepath.Join(S, "bench")
	return nil
}

func lineWith(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// resetPeak resets the daemon's peak resident set (VmHWM) so the next phase is measured.
func (t *testbed) resetPeak() {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", t.daemon.Process.Pid), []byte("5"), 0)
}

// peakMiB reads the daemon's peak resident set since the last reset.
func (t *testbed) peakMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", t.daemon.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// dropCaches empties the page cache so reads come from the disk.
func (t *testbed) dropCaches() {
	syscall.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// cpPlain copies the upload source onto the plain disk with cp, as the member; MB/s.
func (t *testbed) cpPlain() (float64, error) {
	dst := filepath.Join(t.dirs["plain"], "upload.bin")
	start := time.Now()
	cmd := t.asUID(exec.Command("sh", "-c", "cp "+t.uploadSrc+" "+dst+" && sync "+dst))
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %v: %s", err, out)
	}
	v := float64(t.c.uploadSize) / 1e6 / time.Since(start).Seconds()
	os.Remove(dst)
	return v, nil
}

// upload runs dsh upload as the member; MB/s. The arrival is deleted afterwards.
func (t *testbed) upload() (float64, error) {
	start := time.Now()
	if _, err := t.dsh(t.c.uid, "", "upload", t.uploadSrc); err != nil {
		return 0, err
	}
	v := float64(t.c.uploadSize) / 1e6 / time.Since(start).Seconds()
	exec.Command("sh", "-c", "rm -f "+filepath.Join(t.work, "Q", "bench")+"/*").Run()
	t.asUID(exec.Command("sh", "-c", "rm -f "+filepath.Join(t.work, "Q", "bench")+"/*")).Run()
	return v, nil
}

func (t *testbed) teardown() {
	if t.daemon != nil {
		t.daemon.Process.Signal(syscall.SIGTERM)
		t.daemon.Wait()
	}
	for _, p := range t.procs {
		p.Process.Signal(syscall.SIGTERM)
		p.Wait()
	}
	for _, m := range t.mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if t.clamd != nil {
		t.clamd.Stop()
	}
}

// procWriteBytes reads write_bytes (bytes the process made the kernel send to storage)
// from /proc/<pid>/io.
func procWriteBytes(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// writeBytes is what the process serving target has written so far (0 for the plain disk,
// whose worker reports its own).
func (t *testbed) writeBytes(target string) float64 {
	var pid int
	switch target {
	case "dsh":
		pid = t.daemon.Process.Pid
	case "fuse-ceiling":
		pid = t.procs[0].Process.Pid
	case "gocryptfs":
		pid = t.gocryptfsPID()
	}
	if pid == 0 {
		return 0
	}
	return float64(procWriteBytes(strconv.Itoa(pid)))
}

// gocryptfsPID finds the gocryptfs process serving the mount (it daemonizes itself).
func (t *testbed) gocryptfsPID() int {
	mnt := t.dirs["gocryptfs"]
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "gocryptfs" && slices.Contains(args, mnt) {
			return pid
		}
	}
	return 0
}
