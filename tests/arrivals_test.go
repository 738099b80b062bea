package tests

import (
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

// arrivalsEnv is a daemon with both trees mounted (Q and S), share s1 with alice as a
// read-write member, and alice and bob logged in; dave is enrolled without a session.
type arrivalsEnv struct {
	*groupEnv
	Q   string
	bob *person
	// uploadMark is the Arrivals tree's written bytes when the test last looked.
	uploadMark float64
}

func newArrivalsEnv(t *testing.T, extra ...string) *arrivalsEnv {
	t.Helper()
	return newArrivalsEnvWith(t, func(*env) []string { return extra })
}

// newArrivalsEnvWith is newArrivalsEnv with the daemon's extra flags made by more, which
// may start what they name first (an SMTP relay).
func newArrivalsEnvWith(t *testing.T, more func(e *env) []string) *arrivalsEnv {
	t.Helper()
	requireFUSE(t)
	e := newEnv(t)
	extra := more(e)
	a := &arrivalsEnv{groupEnv: &groupEnv{env: e, S: filepath.Join(e.dir, "S")}, Q: filepath.Join(e.dir, "Q")}
	for _, d := range []string{a.S, a.Q} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.start(true, append([]string{"--group", a.S, "--arrivals", a.Q}, extra...)...)
	a.iao = setupProject(t, e)
	a.alice = e.newPerson(t, "alice", uidAlice)
	a.bob = e.newPerson(t, "bob", uidBob)
	e.newPerson(t, "dave", uidDave)
	a.iao.as("share", "add", "s1", "alice").ok(t)
	a.alice.login(t).ok(t)
	a.bob.login(t).ok(t)
	return a
}

// localFile writes n random bytes to a file in the test folder readable by everyone.
func (a *arrivalsEnv) localFile(t *testing.T, name string, n int) string {
	t.Helper()
	p := filepath.Join(a.dir, name)
	a.shOK(t, 0, "head -c "+itoa(n)+" /dev/urandom > "+p+" && chmod 644 "+p)
	return p
}

func TestArrivalsUploadAndInboundOnly(t *testing.T) {
	a := newArrivalsEnv(t)
	Q, S := a.Q, a.S
	src := a.localFile(t, "data.bin", 3_000_000)
	out := a.dsh(uidAlice, "", "upload", src).ok(t)
	if !strings.Contains(out.stdout, "uploaded "+src+" as data.bin (3000000 bytes") {
		t.Fatalf("upload said %q", out.stdout)
	}
	if !strings.Contains(out.stdout, "uploading data.bin") {
		t.Fatalf("no progress lines when not on a terminal: %q", out.stderr)
	}
	// Visible to its owner only, and only as a whole.
	if got := a.shOK(t, uidAlice, "ls "+Q+" && ls "+Q+"/alice && cmp "+src+" "+Q+"/alice/data.bin && echo same"); got != "alice\ndata.bin\nsame\n" {
		t.Fatalf("alice's Arrivals: %q", got)
	}
	if got := a.shOK(t, uidBob, "ls "+Q); got != "bob\n" {
		t.Fatalf("bob's Arrivals root: %q", got)
	}
	for _, uid := range []int{uidBob, uidDave, 0} {
		a.shFails(t, uid, "ls "+Q+"/alice", "No such file or directory")
	}
	for _, uid := range []int{uidDave, 0} {
		if got := a.shOK(t, uid, "ls -a "+Q); strings.Contains(got, "alice") || strings.Contains(got, "dave") {
			t.Fatalf("uid %d without a session sees %q", uid, got)
		}
	}
	// The same name again gets a distinct name; an upload without a session is refused.
	if out := a.dsh(uidAlice, "", "upload", src).ok(t).stdout; !strings.Contains(out, "as data (1).bin") {
		t.Fatalf("second upload said %q", out)
	}
	a.dsh(uidDave, "", "upload", src).fails(t, 2, "no active session")
	a.dsh(uidAlice, "", "upload", a.dir).fails(t, 1, "not a regular file")
	list := a.dsh(uidAlice, "", "arrivals", "list").ok(t).stdout
	if !regexp.MustCompile(`data\.bin\s+3000000\s+\S+ \S+ \S+\s+\S+ \S+ \S+`).MatchString(list) || !strings.Contains(list, "data (1).bin") {
		t.Fatalf("arrivals list: %q", list)
	}

	// Inbound-only: the owner reads and deletes; nothing is written from inside.
	for _, script := range []string{
		"echo x > " + Q + "/alice/new", "echo x >> " + Q + "/alice/data.bin", "truncate -s 0 " + Q + "/alice/data.bin",
		"mkdir " + Q + "/alice/d", "mv " + Q + "/alice/data.bin " + Q + "/alice/renamed", "ln " + Q + "/alice/data.bin " + Q + "/alice/l",
		"touch " + Q + "/alice/data.bin", "chmod 600 " + Q + "/alice/data.bin",
	} {
		a.shFails(t, uidAlice, script, "ermission denied")
	}
	a.shOK(t, uidAlice, "rm '"+Q+"/alice/data (1).bin'")
	// Into a share: cp works, and mv falls back to copy and delete across the mounts.
	a.shOK(t, uidAlice, "cp "+Q+"/alice/data.bin "+S+"/s1/copied.bin && cmp "+src+" "+S+"/s1/copied.bin")
	a.shOK(t, uidAlice, "mv "+Q+"/alice/data.bin "+S+"/s1/moved.bin && cmp "+src+" "+S+"/s1/moved.bin")
	if got := a.shOK(t, uidAlice, "ls -A "+Q+"/alice"); got != "" {
		t.Fatalf("Arrivals after mv: %q", got)
	}
	audit := a.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{`arrivals.upload "arrivals:alice/data.bin" ok`, `fs.open "arrivals:alice/data.bin" ok`, `fs.delete "arrivals:alice/data (1).bin" ok`, `fs.create "arrivals:alice/new" denied`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	if v := metricValue(t, a.scrape(), `dsh_access_denied_total{reason="inbound_only",tree="arrivals"}`); v == "0" {
		t.Error("inbound-only refusals not counted")
	}
}

// An upload cut off half-way, by the client or by the daemon, leaves nothing visible and
// its objects are collected.
func TestArrivalsInterruptedUpload(t *testing.T) {
	a := newArrivalsEnv(t)
	big := a.localFile(t, "big.bin", 400_000_000)
	before := countObjects(t, a.data)

	// The client is killed half-way.
	a.markUploads(t)
	cmd := exec.Command(dshBin, "--socket", a.socket, "upload", big)
	cmd.SysProcAttr = credential(uidAlice)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.waitUploading(t, 16<<20)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "" {
		t.Fatalf("a killed upload left %q visible", got)
	}
	if got := a.dsh(uidAlice, "", "arrivals", "list").ok(t).stdout; strings.Contains(got, "big.bin") {
		t.Fatalf("arrivals list shows a killed upload: %q", got)
	}

	// A body cut off before its declared length is not a file, however the cut looks.
	if got := a.probe(t, uidAlice, "shortupload", a.socket, "short.bin"); strings.Contains(got, " 200 ") {
		t.Fatalf("a truncated upload was accepted: %s", got)
	}
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "" {
		t.Fatalf("a truncated upload left %q visible", got)
	}

	// The daemon is killed half-way.
	spare := a.alice.spare(t, 1)[0]
	a.markUploads(t)
	cmd = exec.Command(dshBin, "--socket", a.socket, "upload", big)
	cmd.SysProcAttr = credential(uidAlice)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.waitUploading(t, 16<<20)
	a.crash()
	if err := cmd.Wait(); err == nil {
		t.Fatal("upload reported success although the daemon was killed")
	}
	a.start(true, "--group", a.S, "--arrivals", a.Q)
	spare.login(t).ok(t)
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "" {
		t.Fatalf("an upload cut by a daemon crash left %q visible", got)
	}
	// Staged uploads are removed at start and their objects collected.
	deadline := time.Now().Add(30 * time.Second)
	for countObjects(t, a.data) != before {
		if time.Now().After(deadline) {
			t.Fatalf("%d objects stored, %d before the interrupted uploads: not collected", countObjects(t, a.data), before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A complete upload after all that works.
	small := a.localFile(t, "small.bin", 100_000)
	a.dsh(uidAlice, "", "upload", small).ok(t)
	a.shOK(t, uidAlice, "cmp "+small+" "+a.Q+"/alice/small.bin")
}

// markUploads notes how many bytes the Arrivals tree has taken in so far.
func (a *arrivalsEnv) markUploads(t *testing.T) {
	t.Helper()
	a.uploadMark = a.arrivalsWritten(t)
}

// waitUploading waits until an upload started after markUploads has passed n bytes, so a
// test can cut it off half-way whatever the machine's speed (a fixed sleep was sometimes
// longer than the whole transfer).
func (a *arrivalsEnv) waitUploading(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for a.arrivalsWritten(t)-a.uploadMark < n {
		if time.Now().After(deadline) {
			t.Fatal("the upload did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// arrivalsWritten is dsh_written_bytes_total of the Arrivals tree.
func (a *arrivalsEnv) arrivalsWritten(t *testing.T) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(metricValue(t, a.scrape(), `dsh_written_bytes_total{tree="arrivals"}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestArrivalsRetention(t *testing.T) {
	a := newArrivalsEnv(t, "--arrivals-retention", "4s")
	src := a.localFile(t, "f.txt", 1000)
	a.dsh(uidAlice, "", "upload", src).ok(t)
	// A file open when it expires loses its name at once and is deleted when closed: the
	// reader that has it open finishes reading it.
	h := a.hold(t, uidAlice, a.Q+"/alice/f.txt", false)
	time.Sleep(5500 * time.Millisecond)
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "" {
		t.Fatalf("expired file still listed: %q", got)
	}
	if got := h.do("read"); !strings.HasPrefix(got, "ok") {
		t.Fatalf("open handle of an expired file: %q", got)
	}
	h.close()
	if v := metricValue(t, a.scrape(), "dsh_arrivals_expired_total"); v != "1" {
		t.Fatalf("dsh_arrivals_expired_total = %s", v)
	}
	if audit := a.dsh(0, "", "audit", "show").ok(t).stdout; !strings.Contains(audit, `arrivals.expire "arrivals:alice/f.txt" ok`) {
		t.Fatal("expiry not audited")
	}

	// Retention across a restart: what expired while the daemon was down goes at start.
	a.dsh(uidAlice, "", "upload", src).ok(t)
	spare := a.alice.spare(t, 1)[0]
	a.stop()
	time.Sleep(4500 * time.Millisecond)
	a.start(true, "--group", a.S, "--arrivals", a.Q, "--arrivals-retention", "4s")
	spare.login(t).ok(t)
	if got := a.dsh(uidAlice, "", "arrivals", "list").ok(t).stdout; strings.Contains(got, "f.txt") {
		t.Fatalf("a file that expired while the daemon was down survived: %q", got)
	}
	if audit := a.dsh(0, "", "audit", "show").ok(t).stdout; strings.Count(audit, "arrivals.expire") != 2 {
		t.Fatal("expiry at start not audited")
	}
}
