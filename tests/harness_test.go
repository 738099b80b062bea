// Package tests holds the end-to-end tests of dsh: they build bin/dsh, run `dsh init` and
// `dsh serve` for real, talk to the control socket as several uids and read the store's
// files on disk.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Uids the tests act as. They need no account in /etc/passwd: the kernel and dsh only see
// numbers.
const (
	uidOutsider = 1000
	uidOther    = 1001
)

var dshBin string

// fsprobeBin makes single system calls as a test uid (tests/fsprobe).
var fsprobeBin string

// fsxBin checks random operations on one file against a model (tests/fsx).
var fsxBin string

// hostileBin floods the control socket as a test uid (tests/hostile).
var hostileBin string

func TestMain(m *testing.M) {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The tests run the binary as other uids too, and the checkout may sit in a folder they
	// cannot enter (CI clones into a 0700 temporary folder): build it into a folder everyone
	// can reach. With DSH_E2E_RACE=1 it is built with the race detector, so that the
	// daemon's concurrency under real FUSE load is checked too (a report fails the test);
	// that run takes about ten minutes here, so make test leaves it to be asked for.
	binDir, err := os.MkdirTemp("", "dsh-e2e-bin-")
	if err == nil {
		err = os.Chmod(binDir, 0o755)
	}
	if err == nil {
		args := []string{"build", "-o", filepath.Join(binDir, "dsh")}
		if os.Getenv("DSH_E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		build := exec.Command("go", append(args, "./cmd/dsh")...)
		build.Dir = root
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		err = build.Run()
	}
	for _, tool := range []struct {
		name string
		bin  *string
	}{{"fsprobe", &fsprobeBin}, {"fsx", &fsxBin}, {"hostile", &hostileBin}} {
		if err != nil {
			break
		}
		build := exec.Command("go", "build", "-o", filepath.Join(binDir, tool.name), "./tests/"+tool.name)
		build.Dir = root
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		err = build.Run()
		*tool.bin = filepath.Join(binDir, tool.name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "build the binaries under test:", err)
		os.Exit(1)
	}
	dshBin = filepath.Join(binDir, "dsh")
	code := m.Run()
	stopSharedClamd()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// env is one store on disk, and the daemon when it runs.
type env struct {
	t        *testing.T
	dir      string // world-traversable, so other uids can reach the socket
	data     string
	passFile string
	socket   string

	mu      sync.Mutex
	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan error
	metrics string
	// portal is the address of the daemon's HTTPS portal.
	portal string
	// disk, when set, is the power-cut harness the data folder is on (powercut_test.go).
	disk *disk
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newEnv makes a folder with a passphrase file and runs `dsh init` in it.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := newEnvWith(t, nil)
	r := e.dsh(0, "", "init", "--data", e.data, "--unseal-passphrase-file", e.passFile)
	r.ok(t)
	if !strings.Contains(r.stdout, "initialised") {
		t.Fatalf("init said %q", r.stdout)
	}
	return e
}

// newEnvWith makes an env's folder and passphrase file; prepare, if given, then readies
// the data folder (a disk of its own) before anything is written in it, and the caller
// runs `dsh init`.
func newEnvWith(t *testing.T, prepare func(e *env)) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "dsh-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, data: filepath.Join(dir, "data"), passFile: filepath.Join(dir, "passphrase"), socket: filepath.Join(dir, "run", "control.sock")}
	if prepare != nil {
		prepare(e)
	}
	if err := os.WriteFile(e.passFile, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// result is what one run of the CLI did.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("dsh %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails checks the run failed with code and a one-line message containing want.
func (r result) fails(t *testing.T, code int, want string) result {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Fatalf("dsh %s: exit %d, stderr %q; want exit %d and %q", strings.Join(r.args, " "), r.code, r.stderr, code, want)
	}
	if n := strings.Count(strings.TrimRight(r.stderr, "\n"), "\n"); n != 0 {
		t.Fatalf("error message is not one line: %q", r.stderr)
	}
	return r
}

// dsh runs the CLI as uid (0 = root) with stdin, against this env's socket.
func (e *env) dsh(uid int, stdin string, args ...string) result {
	e.t.Helper()
	full := append([]string{"--socket", e.socket}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dshBin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "HOME="+e.dir)
	if uid != 0 {
		cmd.SysProcAttr = credential(uid)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run dsh %v: %v", args, err)
	}
	return result{args: args, stdout: out.String(), stderr: errb.String(), code: code}
}

var (
	metricsLine = regexp.MustCompile(`metrics=http://([0-9.:]+)/metrics`)
	portalLine  = regexp.MustCompile(`portal=https://([0-9.:]+)/`)
)

// start runs `dsh serve`; unsealed says whether to pass the passphrase file.
func (e *env) start(unsealed bool, extra ...string) {
	e.t.Helper()
	args := []string{"--socket", e.socket, "serve", "--data", e.data, "--metrics", "127.0.0.1:0", "--portal", "127.0.0.1:0"}
	if unsealed {
		args = append(args, "--unseal-passphrase-file", e.passFile)
	}
	// The malware gate: a test's own --clamd in extra comes later and wins.
	args = append(args, clamdArgs(e.t)...)
	args = append(args, extra...)
	cmd := exec.Command(dshBin, args...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	// If the test binary dies (a -timeout panic), the daemon must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	e.mu.Lock()
	e.cmd, e.log, e.done = cmd, log, done
	e.mu.Unlock()
	// Runs after the daemon stopped (cleanups run last-registered first).
	e.t.Cleanup(func() {
		if out := log.String(); strings.Contains(out, "WARNING: DATA RACE") {
			e.t.Errorf("the race detector reported a data race in the daemon:\n%s", out)
		}
	})
	e.t.Cleanup(func() { e.stopIfRunning() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := metricsLine.FindStringSubmatch(log.String()); m != nil {
			e.metrics = m[1]
			if p := portalLine.FindStringSubmatch(log.String()); p != nil {
				e.portal = p[1]
			}
			break
		}
		select {
		case err := <-done:
			// It is gone: the cleanup must not wait for it.
			e.mu.Lock()
			e.cmd = nil
			e.mu.Unlock()
			e.t.Fatalf("dsh serve exited early (%v):\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("dsh serve did not come up:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks the daemon exits 0 and removes its socket.
func (e *env) stop() {
	e.t.Helper()
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		e.t.Fatal("stop: daemon not running")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			e.t.Fatalf("dsh serve exited with %v on SIGTERM:\n%s", err, e.log.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		e.t.Fatalf("dsh serve ignored SIGTERM:\n%s", e.log.String())
	}
	if _, err := os.Stat(e.socket); err == nil {
		e.t.Fatal("socket left behind after a clean stop")
	}
}

// crash kills the daemon with SIGKILL, as a power cut would from the daemon's point of view.
func (e *env) crash() {
	e.t.Helper()
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd = nil
	e.mu.Unlock()
	cmd.Process.Kill()
	<-done
}

func (e *env) stopIfRunning() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// serverLog is what the daemon printed so far.
func (e *env) serverLog() string { return e.log.String() }

// rawRequest sends one HTTP request straight to the socket as root, like curl --unix-socket.
func (e *env) rawRequest(method, path, body string) (int, string) {
	e.t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", e.socket)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://dsh"+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape returns the daemon's /metrics text.
func (e *env) scrape() string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.metrics + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("/metrics: %s", resp.Status)
	}
	return string(b)
}

// metricValue finds one sample line "name value" in a scrape.
func metricValue(t *testing.T, scrape, name string) string {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	t.Fatalf("metric %s not in scrape", name)
	return ""
}

// requireTool finds a program the tests need; under CI a missing one is a failure, since
// `make test` installs it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; make test installs it (scripts/deps.sh)", name)
		}
		t.Skipf("%s is missing; run make test, which installs it", name)
	}
	return p
}

// credential makes a child process run as uid (and the same gid), with no extra groups.
func credential(uid int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
}

// httpGet returns an error for any answer other than 200.
func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}

// ctxT bounds a command that is expected to end by itself, so a regression fails the test
// instead of hanging the suite.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
