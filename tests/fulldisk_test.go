package tests

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A full disk, a log reader that goes away, and a daemon that dies: none of them may leave
// the service stuck.

// newEnvOnTmpfs is newEnv with the data folder on a tmpfs of size bytes of its own, so
// that a test can fill the disk without touching anyone else's.
func newEnvOnTmpfs(t *testing.T, size int64) *env {
	t.Helper()
	e := newEnvWith(t, func(e *env) {
		if err := os.Mkdir(e.data, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", e.data, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
			t.Fatalf("mount a tmpfs for the data folder: %v", err)
		}
		// Runs after the daemon stopped (cleanups run last-registered first).
		t.Cleanup(func() { syscall.Unmount(e.data, syscall.MNT_DETACH) })
	})
	e.dsh(0, "", "init", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t)
	return e
}

// freeBytes is what the data folder's disk has free.
func (e *env) freeBytes(t *testing.T) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.data, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill grows the filler file beside the store until the disk has about left bytes free
// (0: full), as anything else on the disk could.
func (e *env) fill(t *testing.T, left int64) {
	t.Helper()
	filler := filepath.Join(e.data, "filler")
	fi, _ := os.Stat(filler)
	var have int64
	if fi != nil {
		have = fi.Size()
	}
	grow := e.freeBytes(t) - left
	f, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if grow <= 0 {
		if err := f.Truncate(max(0, have+grow)); err != nil {
			t.Fatal(err)
		}
		return
	}
	buf := make([]byte, 1<<20)
	for off := have; grow > 0; {
		n := int64(len(buf))
		if n > grow {
			n = grow
		}
		w, err := f.WriteAt(buf[:n], off)
		off += int64(w)
		grow -= int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestFullDiskRecovers fills the data folder's disk: file writes get ENOSPC while the audit
// log and the metadata still record what happens, and once space returns everything works
// again without a restart. A disk so full that even the audit log cannot write fails the
// opens (fail closed) until space returns, then the log goes on by itself.
func TestFullDiskRecovers(t *testing.T) {
	requireFUSE(t)
	e := newEnvOnTmpfs(t, 256<<20)
	S := filepath.Join(e.dir, "S")
	if err := os.Mkdir(S, 0o755); err != nil {
		t.Fatal(err)
	}
	e.start(true, "--group", S, "--free-space-reserve", fmt.Sprint(64<<20))
	iao := setupProject(t, e)
	alice := e.newPerson(t, "alice", uidAlice)
	iao.as("share", "add", "s1", "alice").ok(t)
	alice.login(t).ok(t)
	share := S + "/s1"
	e.shOK(t, uidAlice, "echo kept > "+share+"/kept")

	// Below the reserve: writes fail with ENOSPC, everything else goes on and is audited.
	e.fill(t, 40<<20)
	e.shFails(t, uidAlice, "head -c 3000000 /dev/zero > "+share+"/big", "No space left on device")
	e.shOK(t, uidAlice, "cat "+share+"/kept && mkdir "+share+"/d && ls "+share)
	shown := e.dsh(0, "", "audit", "show").ok(t).stdout
	if !strings.Contains(shown, "group:s1/kept") || !strings.Contains(shown, "group:s1/d") {
		t.Fatalf("opens and changes on a full disk not audited:\n%s", tail(shown, 10))
	}

	// Space returns: writes work again, no restart.
	e.fill(t, 150<<20)
	e.shOK(t, uidAlice, "head -c 3000000 /dev/zero > "+share+"/big && cmp -n 3000000 /dev/zero "+share+"/big")

	// Quite full: not even the audit log can write. An open that cannot be audited is
	// refused; the daemon stays up.
	time.Sleep(1500 * time.Millisecond) // the metadata's note of the audit head is current
	e.fill(t, 0)
	// The log's last page may still have room for a few records.
	r := e.sh(uidAlice, "for i in $(seq 200); do cat "+share+"/kept > /dev/null || exit 1; done")
	if r.code == 0 || !strings.Contains(r.stderr, "Input/output error") {
		t.Fatalf("opens on a disk too full for the audit log: exit %d, %q; want EIO", r.code, r.stderr)
	}
	e.fill(t, 150<<20)
	if out := e.shOK(t, uidAlice, "cat "+share+"/kept"); out != "kept\n" {
		t.Fatalf("read after the disk recovered: %q", out)
	}
	e.stop()
	e.dsh(0, "", "audit", "verify", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t)
}

// TestLogReaderGone starts the daemon with its log piped to a reader that reads one line
// and goes away (dsh serve 2>&1 | head -n 1): the next log lines must not kill it.
func TestLogReaderGone(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	S := filepath.Join(e.dir, "S")
	if err := os.Mkdir(S, 0o755); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dshBin, "--socket", e.socket, "serve", "--data", e.data, "--metrics", "127.0.0.1:0",
		"--portal", "", "--group", S, "--unseal-passphrase-file", e.passFile)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	// head -n 1: one line, then the reader is gone.
	if _, err := bufio.NewReader(r).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	r.Close()
	deadline := time.Now().Add(30 * time.Second)
	for e.dsh(0, "", "operator", "status").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every one of these logs a line into the broken pipe.
	pass, _ := os.ReadFile(e.passFile)
	for range 3 {
		e.dsh(0, "", "operator", "seal").ok(t)
		e.dsh(0, string(pass), "operator", "unseal").ok(t)
	}
	e.dsh(0, "not the passphrase\n", "operator", "unseal").fails(t, 2, "already unsealed")
	if st := e.dsh(0, "", "operator", "status").ok(t).stdout; !strings.Contains(st, "unsealed") {
		t.Fatalf("status after logging into a closed pipe:\n%s", st)
	}
	if _, err := os.ReadDir(S); err != nil {
		t.Fatalf("the mount after logging into a closed pipe: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the daemon exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	if isMounted(t, S) {
		t.Fatal("the tree is still mounted after a clean stop")
	}
}

// isMounted reports whether dir is a mount point.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// waitUnmounted waits for dir to stop being a mount point.
func waitUnmounted(t *testing.T, dir, how string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for isMounted(t, dir) {
		if time.Now().After(deadline) {
			var st syscall.Stat_t
			t.Fatalf("%s: %s is still mounted (stat: %v)", how, dir, syscall.Stat(dir, &st))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEveryWayOutUnmounts stops the daemon every way it can stop: a signal it handles,
// one it cannot (SIGKILL, as a crash or the OOM killer), and a hangup. Each time both
// trees are unmounted, never left answering "Transport endpoint is not connected".
func TestEveryWayOutUnmounts(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	S, Q := filepath.Join(e.dir, "S"), filepath.Join(e.dir, "Q")
	for _, d := range []string{S, Q} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, how := range []string{"SIGKILL", "SIGHUP", "SIGTERM", "SIGKILL"} {
		e.start(true, "--group", S, "--arrivals", Q)
		if !isMounted(t, S) || !isMounted(t, Q) {
			t.Fatal("trees not mounted")
		}
		e.mu.Lock()
		cmd, done := e.cmd, e.done
		e.cmd = nil
		e.mu.Unlock()
		sig := map[string]syscall.Signal{"SIGKILL": syscall.SIGKILL, "SIGHUP": syscall.SIGHUP, "SIGTERM": syscall.SIGTERM}[how]
		cmd.Process.Signal(sig)
		err := <-done
		if sig != syscall.SIGKILL && err != nil {
			t.Fatalf("%s: the daemon exited with %v:\n%s", how, err, e.serverLog())
		}
		waitUnmounted(t, S, how)
		waitUnmounted(t, Q, how)
	}
}
