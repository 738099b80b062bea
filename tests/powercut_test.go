package tests

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var powercutBin string

// buildPowercut builds the power-cut harness (tests/powercut) once.
func buildPowercut(t *testing.T) string {
	t.Helper()
	if powercutBin != "" {
		return powercutBin
	}
	out := filepath.Join(filepath.Dir(dshBin), "powercut")
	build := exec.Command("go", "build", "-o", out, "./tests/powercut")
	build.Dir = ".."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the power-cut harness: %v\n%s", err, b)
	}
	powercutBin = out
	return out
}

// disk is a power-cut harness mounted on a data folder over an underlying folder: what is
// in the underlying folder is what a power cut leaves.
type disk struct {
	t           *testing.T
	under, data string
	cmd         *exec.Cmd
	out         *bufio.Reader
	done        chan struct{}
}

func mountDisk(t *testing.T, under, data string) *disk {
	t.Helper()
	cmd := exec.Command(buildPowercut(t), under, data)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &disk{t: t, under: under, data: data, cmd: cmd, out: bufio.NewReader(stdout), done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	if line, err := d.out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("the power-cut harness did not mount: %q %v", line, err)
	}
	t.Cleanup(d.unmount)
	return d
}

// cut is the power cut: the harness dies with everything unsynced, and its mount with it.
// It returns how much was unsynced at that moment.
func (d *disk) cut() string {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGUSR1)
	line, _ := d.out.ReadString('\n')
	d.cmd.Process.Kill()
	<-d.done
	syscall.Unmount(d.data, syscall.MNT_DETACH)
	return strings.TrimPrefix(strings.TrimSpace(line), "unsynced ")
}

func (d *disk) unmount() {
	select {
	case <-d.done:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	syscall.Unmount(d.data, syscall.MNT_DETACH)
}

// rewriterScript overwrites file f with version i (its content a function of i) over and
// over, each time fsync'd, logging i once that returned.
func rewriterScript(f, done string) string {
	return fmt.Sprintf(`i=1
while [ $i -le 100000 ]; do
  yes "version $i" | head -c $((100000 + i * 7 %% 50000)) | dd of=%[1]s bs=64k conv=fsync status=none || exit 0
  echo $i >> %[2]s || exit 1
  i=$((i + 1))
done`, f, done)
}

// patcherScript writes 4 KiB blocks into the 64 blocks of file f in place, each fsync'd
// (a database's writes: they become patches over the file's segment), logging "block i"
// once the fsync returned. Write i of round r holds "r<r> w<i> " padded with spaces.
func patcherScript(f, log string, round int) string {
	return fmt.Sprintf(`i=1
while [ $i -le 100000 ]; do
  k=$(( (i * 7919) %% 64 ))
  printf 'r%[3]d w%%d %%4090s' $i "" | head -c 4096 | dd of=%[1]s bs=4096 seek=$k count=1 conv=notrunc,fsync status=none || exit 0
  echo "$k $i" >> %[2]s || exit 1
  i=$((i + 1))
done`, f, log, round)
}

// checkBlocks checks that every block of the patched file holds one whole write, at least
// the last one fsync'd to it this round.
func checkBlocks(t *testing.T, e *env, f, log string, round int) int {
	t.Helper()
	last := map[int]int{}
	if b, err := os.ReadFile(log); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var k, i int
			if n, _ := fmt.Sscanf(l, "%d %d", &k, &i); n == 2 {
				last[k] = i
			}
		}
	}
	// Read as the member: root has no session.
	data := []byte(e.shOK(t, uidAlice, "cat "+f))
	if len(data) != 64*4096 {
		t.Fatalf("round %d: the patched file is %d bytes", round, len(data))
	}
	block := regexp.MustCompile(`^r(\d+) w(\d+) +$`)
	for k := range 64 {
		b := string(data[k*4096 : (k+1)*4096])
		if strings.Trim(b, "\x00") == "" {
			if last[k] > 0 {
				t.Fatalf("round %d: block %d is empty, though write %d was fsync'd to it", round, k, last[k])
			}
			continue
		}
		m := block.FindStringSubmatch(b)
		if m == nil {
			t.Fatalf("round %d: block %d holds no whole write: %q", round, k, b[:40])
		}
		r, _ := strconv.Atoi(m[1])
		i, _ := strconv.Atoi(m[2])
		if last[k] > 0 && (r != round || i < last[k]) {
			t.Fatalf("round %d: block %d holds write r%d w%d, but w%d of this round was fsync'd to it", round, k, r, i, last[k])
		}
	}
	return len(last)
}

// TestPowerCut cuts the power of the data folder's disk, a FUSE harness that keeps every
// write in memory until an fsync covers it (tests/powercut), at a random moment while
// several processes create, write, fsync and rewrite files, then restarts everything on
// what the disk kept. Every time: the store unseals (its parts agree), every file whose
// close or fsync returned reads back whole, every file there reads without an integrity
// error, rewritten files hold one whole version no older than the last one fsync'd, and
// the audit chain verifies. DSH_POWERCUT_ROUNDS sets the number of rounds (default 3).
func TestPowerCut(t *testing.T) {
	requireFUSE(t)
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("DSH_POWERCUT_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	e := newEnvOnDisk(t)
	S := filepath.Join(e.dir, "S")
	logs := filepath.Join(e.dir, "logs")
	for _, d := range []string{S, logs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(logs, uidAlice, uidAlice)
	serve := []string{"--group", S, "--gc-interval", "200ms"}
	e.start(true, serve...)
	iao := setupProject(t, e)
	alice := e.newPerson(t, "alice", uidAlice)
	iao.as("share", "add", "s1", "alice").ok(t)
	alice.login(t).ok(t)
	tokens := alice.spare(t, rounds)
	share := S + "/s1"
	blocks := share + "/blocks"
	e.shOK(t, uidAlice, "head -c 262144 /dev/zero > "+blocks)
	const writers = 3
	for round := range rounds {
		dir := fmt.Sprintf("%s/round%d", share, round)
		e.shOK(t, uidAlice, "mkdir "+dir)
		done := make(chan result, writers+1)
		for p := range writers {
			log := fmt.Sprintf("%s/r%d-w%d", logs, round, p)
			go func() { done <- e.sh(uidAlice, writerScript(dir, log, p, 300)) }()
		}
		rewritten := share + "/rewritten"
		rewrites := fmt.Sprintf("%s/rewrites-r%d", logs, round)
		go func() { done <- e.sh(uidAlice, rewriterScript(rewritten, rewrites)) }()
		patches := fmt.Sprintf("%s/patches-r%d", logs, round)
		go func() { done <- e.sh(uidAlice, patcherScript(blocks, patches, round)) }()
		killAfter := time.Duration(300+rand.IntN(2200)) * time.Millisecond
		time.Sleep(killAfter)
		dropped := e.disk.cut()
		e.crash()
		for range writers + 2 {
			<-done
		}
		waitUnmounted(t, S, "after the cut")

		e.disk = mountDisk(t, e.disk.under, e.data)
		e.start(true, serve...)
		tokens[round].login(t).ok(t)

		var check strings.Builder
		closed := 0
		for p := range writers {
			b, err := os.ReadFile(fmt.Sprintf("%s/r%d-w%d", logs, round, p))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			for _, name := range strings.Fields(string(b)) {
				fmt.Fprintf(&check, "yes %q | head -c %d | cmp -s - %s/%s || echo BAD %s\n", name, len(expected(t, name)), dir, name, name)
				closed++
			}
		}
		if bad := e.shOK(t, uidAlice, check.String()); bad != "" {
			t.Fatalf("round %d: files closed before the cut do not read back exactly:\n%s", round, bad)
		}
		e.shOK(t, uidAlice, "for f in "+dir+"/* "+share+"/rewritten; do [ -e \"$f\" ] || continue; cat \"$f\" > /dev/null || exit 1; done")
		version := checkRewritten(t, e, rewritten, rewrites)
		patched := checkBlocks(t, e, blocks, patches, round)
		audit := e.dsh(0, "", "audit", "verify").ok(t).stdout
		t.Logf("round %d: cut after %v (unsynced then: %s); %d closed files read back, the rewritten file holds version %d (0: empty, truncated for the next), %d blocks written in place hold their last fsync'd write; %s",
			round, killAfter, dropped, closed, version, patched, strings.TrimSpace(audit))
	}
}

// checkRewritten checks that the rewritten file holds one whole version, at least the last
// one whose fsync returned, or nothing: dd truncates the file (durably, at once) before it
// writes the next version, and a cut before that version's fsync leaves it empty, as on a
// local disk. It returns the version, 0 for an empty file.
func checkRewritten(t *testing.T, e *env, f, log string) int {
	t.Helper()
	last := 0
	if b, err := os.ReadFile(log); err == nil {
		if fs := strings.Fields(string(b)); len(fs) > 0 {
			last, _ = strconv.Atoi(fs[len(fs)-1])
		}
	}
	r := e.sh(uidAlice, "head -c 20 "+f)
	if r.code != 0 {
		if last > 0 {
			t.Fatalf("the rewritten file does not read, though version %d was fsync'd: %s", last, r.stderr)
		}
		return 0
	}
	if r.stdout == "" {
		return 0
	}
	m := regexp.MustCompile(`^version (\d+)\n`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the rewritten file starts with %q", r.stdout)
	}
	v, _ := strconv.Atoi(m[1])
	if v < last {
		t.Fatalf("the rewritten file holds version %d, but version %d was fsync'd", v, last)
	}
	size := 100000 + v*7%50000
	e.shOK(t, uidAlice, fmt.Sprintf("yes 'version %d' | head -c %d | cmp - %s", v, size, f))
	return v
}

// newEnvOnDisk is newEnv with the data folder on a power-cut harness (e.disk).
func newEnvOnDisk(t *testing.T) *env {
	t.Helper()
	e := newEnvWith(t, func(e *env) {
		under := filepath.Join(e.dir, "disk")
		for _, d := range []string{under, e.data} {
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		e.disk = mountDisk(t, under, e.data)
	})
	e.dsh(0, "", "init", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t)
	return e
}
