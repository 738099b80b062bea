package tests

import (
	"bytes"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestInitCreatesSealedStoreAndRefusesAgain(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"root.key", "meta", "blobs", "audit"} {
		if _, err := os.Stat(filepath.Join(e.data, name)); err != nil {
			t.Fatalf("init did not create %s: %v", name, err)
		}
	}
	fi, _ := os.Stat(e.data)
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data folder mode %v, want 0700", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(filepath.Join(e.data, "root.key"))
	e.dsh(0, "", "init", "--data", e.data, "--unseal-passphrase-file", e.passFile).fails(t, 2, "already exists")
	after, _ := os.ReadFile(filepath.Join(e.data, "root.key"))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused init changed the root key file")
	}
	other := filepath.Join(e.dir, "notempty")
	os.MkdirAll(other, 0o700)
	os.WriteFile(filepath.Join(other, "x"), []byte("x"), 0o600)
	e.dsh(0, "", "init", "--data", other, "--unseal-passphrase-file", e.passFile).fails(t, 2, "not empty")
	empty := filepath.Join(e.dir, "emptypass")
	os.WriteFile(empty, []byte("\n"), 0o600)
	e.dsh(0, "", "init", "--data", filepath.Join(e.dir, "new"), "--unseal-passphrase-file", empty).fails(t, 2, "empty")
	e.dsh(0, "", "init", "--data", filepath.Join(e.dir, "new")).fails(t, 1, "needs --data and --unseal-passphrase-file")

	// A data folder others may enter is refused, for serve and for a new init.
	os.Chmod(e.data, 0o755)
	out, err := exec.CommandContext(ctxT(t), dshBin, "--socket", e.socket, "serve", "--data", e.data, "--metrics", "127.0.0.1:0", "--portal", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "open to other users") {
		t.Fatalf("serve on a 0755 data folder: %v %s", err, out)
	}
	os.Chmod(e.data, 0o700)
	foreign := filepath.Join(e.dir, "foreign")
	os.Mkdir(foreign, 0o700)
	os.Chown(foreign, uidOutsider, uidOutsider)
	e.dsh(0, "", "init", "--data", foreign, "--unseal-passphrase-file", e.passFile).fails(t, 2, "belongs to uid 1000")
}

func TestOperatorStatusIsForRootOnly(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	out := e.dsh(0, "", "operator", "status").ok(t).stdout
	if !regexp.MustCompile(`store:\s+unsealed`).MatchString(out) || !strings.Contains(out, "version:") || !strings.Contains(out, "uptime:") {
		t.Fatalf("status said %q", out)
	}
	for _, args := range [][]string{{"operator", "status"}, {"operator", "seal"}, {"audit", "verify"}, {"audit", "show"}} {
		e.dsh(uidOutsider, "", args...).fails(t, 2, "for the operator (root) only")
	}
	e.dsh(uidOutsider, "anything\n", "operator", "unseal").fails(t, 2, "for the operator (root) only")
	// --socket after the subcommand and DSH_SOCKET both work.
	cmd := exec.Command(dshBin, "operator", "status", "--socket", e.socket)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "unsealed") {
		t.Fatalf("--socket after the subcommand: %v %s", err, out)
	}
	cmd = exec.Command(dshBin, "operator", "status")
	cmd.Env = append(os.Environ(), "DSH_SOCKET="+e.socket)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "unsealed") {
		t.Fatalf("DSH_SOCKET: %v %s", err, out)
	}
	// The outsider's refusals are in the audit log, with their uid.
	show := e.dsh(0, "", "audit", "show").ok(t).stdout
	if !regexp.MustCompile(`uid=1000 user=- operator.status "" denied`).MatchString(show) {
		t.Fatalf("denied status not audited:\n%s", show)
	}
}

func TestSealUnsealCycle(t *testing.T) {
	e := newEnv(t)
	e.start(false)
	if !regexp.MustCompile(`store:\s+sealed`).MatchString(e.dsh(0, "", "operator", "status").ok(t).stdout) {
		t.Fatal("daemon without a passphrase file should start sealed")
	}
	if v := metricValue(t, e.scrape(), "dsh_vault_sealed"); v != "1" {
		t.Fatalf("dsh_vault_sealed = %s while sealed", v)
	}
	e.dsh(0, "", "audit", "verify").fails(t, 2, "store is sealed")
	e.dsh(0, "not the passphrase\n", "operator", "unseal").fails(t, 2, "wrong unseal passphrase")
	if !regexp.MustCompile(`store:\s+sealed`).MatchString(e.dsh(0, "", "operator", "status").ok(t).stdout) {
		t.Fatal("a wrong passphrase unsealed the store")
	}
	e.dsh(0, "", "operator", "unseal").fails(t, 1, "standard input")
	e.dsh(0, "correct horse battery staple\n", "operator", "unseal").ok(t)
	if !regexp.MustCompile(`store:\s+unsealed`).MatchString(e.dsh(0, "", "operator", "status").ok(t).stdout) {
		t.Fatal("not unsealed")
	}
	if v := metricValue(t, e.scrape(), "dsh_vault_sealed"); v != "0" {
		t.Fatalf("dsh_vault_sealed = %s while unsealed", v)
	}
	e.dsh(0, "correct horse battery staple\n", "operator", "unseal").fails(t, 2, "already unsealed")
	e.dsh(0, "", "operator", "seal").ok(t)
	e.dsh(0, "", "operator", "seal").fails(t, 2, "already sealed")
	if v := metricValue(t, e.scrape(), "dsh_vault_sealed"); v != "1" {
		t.Fatalf("dsh_vault_sealed = %s after seal", v)
	}
	e.dsh(0, "correct horse battery staple\n", "operator", "unseal").ok(t)
	out := e.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{"store.init", "vault.unseal", "vault.seal"} {
		if !strings.Contains(out, want) {
			t.Fatalf("audit show lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "horse") || strings.Contains(e.serverLog(), "horse") {
		t.Fatal("the passphrase leaked into the audit log or the daemon's log")
	}
}

func TestSecondServeRefused(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	cmd := exec.CommandContext(ctxT(t), dshBin, "--socket", filepath.Join(e.dir, "other.sock"), "serve", "--data", e.data, "--metrics", "127.0.0.1:0", "--portal", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another dsh serve") {
		t.Fatalf("second serve: %v %s", err, out)
	}
	// A second daemon on another store but the same socket is refused too.
	e2 := newEnv(t)
	cmd = exec.CommandContext(ctxT(t), dshBin, "--socket", e.socket, "serve", "--data", e2.data, "--metrics", "127.0.0.1:0", "--portal", "127.0.0.1:0")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another dsh daemon is listening") {
		t.Fatalf("serve on a live socket: %v %s", err, out)
	}
	// The first daemon is unharmed.
	e.dsh(0, "", "operator", "status").ok(t)
}

func TestCleanStopAndCrashRestart(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	e.dsh(0, "", "operator", "status").ok(t)
	e.stop()
	e.dsh(0, "", "operator", "status").fails(t, 2, "is dsh serve running")
	e.start(true)
	e.dsh(uidOutsider, "", "operator", "status").fails(t, 2, "root")
	e.crash()
	// After kill -9 the socket file and the lock are stale; a new daemon takes over.
	e.start(true)
	r := e.dsh(0, "", "audit", "verify").ok(t)
	if !regexp.MustCompile(`^audit chain ok: \d+ records`).MatchString(r.stdout) {
		t.Fatalf("verify after crash: %q", r.stdout)
	}
	e.stop()
}

func TestAuditVerifyOnlineOfflineAndTamper(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	e.dsh(uidOutsider, "", "operator", "status").fails(t, 2, "root")
	online := e.dsh(0, "", "audit", "verify").ok(t).stdout
	n := recordCount(t, online)
	if n < 3 {
		t.Fatalf("expected init, unseal and a denial in the log, got %d records", n)
	}
	// Offline while the daemon runs: reading is safe beside the writer.
	off := e.dsh(0, "", "audit", "verify", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t).stdout
	if recordCount(t, off) < n {
		t.Fatalf("offline verify saw fewer records: %q vs %q", off, online)
	}
	e.stop()
	off = e.dsh(0, "", "audit", "verify", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t).stdout
	total := recordCount(t, off)
	show := e.dsh(0, "", "audit", "show", "--data", e.data, "--unseal-passphrase-file", e.passFile).ok(t).stdout
	if got := strings.Count(strings.TrimSpace(show), "\n") + 1; got != total {
		t.Fatalf("show printed %d records, verify counted %d", got, total)
	}
	if !strings.Contains(show, "daemon.stop") {
		t.Fatalf("clean stop not audited:\n%s", show)
	}
	e.dsh(0, "", "audit", "verify", "--data", e.data).fails(t, 1, "needs --unseal-passphrase-file")
	wrong := filepath.Join(e.dir, "wrongpass")
	os.WriteFile(wrong, []byte("nope nope nope\n"), 0o600)
	e.dsh(0, "", "audit", "verify", "--data", e.data, "--unseal-passphrase-file", wrong).fails(t, 2, "wrong unseal passphrase")

	// Flip one byte in the middle of the log: verify names a record and fails.
	logPath := filepath.Join(e.data, "audit", "audit.log")
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(logPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.dsh(0, "", "audit", "verify", "--data", e.data, "--unseal-passphrase-file", e.passFile)
	r.fails(t, 2, "audit chain broken")
	if !regexp.MustCompile(`record|seq`).MatchString(r.stderr) {
		t.Fatalf("verify does not name the bad record: %q", r.stderr)
	}
	// Unseal checks only what follows the head's record (the last one at a clean stop):
	// the daemon starts, walks the whole log in the background, and counts and audits
	// what it finds; the online verify names the record too.
	e.start(true)
	deadline := time.Now().Add(60 * time.Second)
	for metricValue(t, e.scrape(), "dsh_integrity_errors_total") == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("the background walk did not report the damaged log:\n%s", e.serverLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := e.dsh(0, "", "audit", "verify"); out.code == 0 || !strings.Contains(out.stderr, "audit chain broken") {
		t.Fatalf("online verify of a damaged log: %+v", out)
	}
	if !strings.Contains(e.serverLog(), "the audit log is damaged") {
		t.Errorf("the background walk's finding is not logged:\n%s", e.serverLog())
	}
	e.stop()
	// A log damaged at the head's record, where unseal looks, is refused at once: the daemon
	// does not append to it.
	b, err = os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5] ^= 0x01
	if err := os.WriteFile(logPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxT(t), dshBin, "--socket", e.socket, "serve", "--data", e.data, "--metrics", "127.0.0.1:0", "--portal", "127.0.0.1:0", "--unseal-passphrase-file", e.passFile)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "audit") {
		t.Fatalf("serve on a tampered audit log: %v %s", err, out)
	}
}

func recordCount(t *testing.T, out string) int {
	t.Helper()
	m := regexp.MustCompile(`audit chain ok: (\d+) records`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no record count in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestControlSocketBadInput(t *testing.T) {
	e := newEnv(t)
	e.start(false)
	cases := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/operator/unseal", `{"passphrase":`, 400, "malformed JSON"},
		{"POST", "/v1/operator/unseal", `{"passphrase":"x","extra":1}`, 400, "unknown field"},
		{"POST", "/v1/operator/unseal", `{"passphrase":"` + strings.Repeat("x", 70000) + `"}`, 413, "larger than"},
		{"GET", "/v1/operator/unseal", ``, 405, "takes POST"},
		{"PUT", "/v1/operator/seal", ``, 405, "takes POST"},
		{"GET", "/v1/nothing", ``, 404, "no such endpoint"},
		{"POST", "/v1/operator/unseal", `{"passphrase":""}`, 400, "empty"},
	}
	for _, c := range cases {
		status, body := e.rawRequest(c.method, c.path, c.body)
		if status != c.status || !strings.Contains(body, `"error":`) || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", c.method, c.path, status, body, c.status, c.want)
		}
	}
	// Garbage that is not HTTP at all: the daemon survives it.
	for i := 0; i < 20; i++ {
		conn, err := net.Dial("unix", e.socket)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 4096)
		rand.Read(junk)
		conn.Write(junk)
		conn.Close()
	}
	if !regexp.MustCompile(`store:\s+sealed`).MatchString(e.dsh(0, "", "operator", "status").ok(t).stdout) {
		t.Fatal("bad input changed the store's state")
	}
}

func TestCurlAsAnotherUidGetsJSON403(t *testing.T) {
	curl := requireTool(t, "curl")
	e := newEnv(t)
	e.start(true)
	cmd := exec.Command(curl, "-s", "-w", "\n%{http_code}", "--unix-socket", e.socket, "http://dsh/v1/operator/status")
	cmd.SysProcAttr = credential(uidOther)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[len(lines)-1] != "403" || !strings.Contains(lines[0], `{"error":`) {
		t.Fatalf("curl as uid %d got %q", uidOther, out)
	}
}

func TestMetricsEndpointPassesPromtool(t *testing.T) {
	promtool := requireTool(t, "promtool")
	e := newEnv(t)
	e.start(true)
	text := e.scrape()
	for _, want := range []string{"dsh_vault_sealed 0", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(text, want) {
			t.Fatalf("scrape lacks %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if _, err := httpGet("http://" + e.metrics + "/debug/pprof/"); err == nil {
		t.Fatal("pprof is served without --pprof")
	}
}
