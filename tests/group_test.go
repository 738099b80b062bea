package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Uids of the Group tree tests (the IAO is uidIAO from the token tests).
const (
	uidErin = 2201 + iota
	uidRO
	uidCarol
	uidDave
)

// requireFUSE fails under CI and skips elsewhere when /dev/fuse is missing.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("/dev/fuse is missing: the Group tree tests need FUSE")
		}
		t.Skip("/dev/fuse is missing")
	}
	requireTool(t, "fusermount3")
}

// groupEnv is a running daemon with the Group tree mounted on S, project p1 with share s1,
// and its cast enrolled: alice and erin read-write, ro read-only, carol logged in but no
// member, dave a member who never logs in.
type groupEnv struct {
	*env
	S                           string
	iao, alice, erin, ro, carol *person
}

func newGroupEnv(t *testing.T, extra ...string) *groupEnv {
	t.Helper()
	requireFUSE(t)
	e := newEnv(t)
	S := filepath.Join(e.dir, "S")
	if err := os.Mkdir(S, 0o755); err != nil {
		t.Fatal(err)
	}
	e.start(true, append([]string{"--group", S}, extra...)...)
	g := &groupEnv{env: e, S: S}
	g.iao = setupProject(t, e)
	g.alice = e.newPerson(t, "alice", uidAlice)
	g.erin = e.newPerson(t, "erin", uidErin)
	g.ro = e.newPerson(t, "ro", uidRO)
	g.carol = e.newPerson(t, "carol", uidCarol)
	e.newPerson(t, "dave", uidDave)
	for _, m := range []string{"alice", "erin", "dave"} {
		g.iao.as("share", "add", "s1", m).ok(t)
	}
	g.iao.as("share", "add", "s1", "ro", "--read-only").ok(t)
	for _, p := range []*person{g.alice, g.erin, g.ro, g.carol} {
		p.login(t).ok(t)
	}
	return g
}

// sh runs a shell script as uid in the test folder and returns what it did.
func (e *env) sh(uid int, script string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = e.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "HOME="+e.dir, "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1")
	if uid != 0 {
		cmd.SysProcAttr = credential(uid)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run %q: %v", script, err)
	}
	return result{args: []string{script}, stdout: out.String(), stderr: errb.String(), code: code}
}

// shOK runs a script that must succeed and returns its output.
func (e *env) shOK(t *testing.T, uid int, script string) string {
	t.Helper()
	r := e.sh(uid, script)
	if r.code != 0 {
		t.Fatalf("as uid %d: %s\nexit %d\nstdout: %s\nstderr: %s\ndaemon log:\n%s", uid, script, r.code, r.stdout, r.stderr, tail(e.serverLog(), 30))
	}
	return r.stdout
}

// shFails runs a script that must fail with want in its error output.
func (e *env) shFails(t *testing.T, uid int, script, want string) {
	t.Helper()
	r := e.sh(uid, script)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("as uid %d: %s\nexit %d, stderr %q; want failure with %q", uid, script, r.code, r.stderr, want)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// probe runs fsprobe as uid.
func (e *env) probe(t *testing.T, uid int, args ...string) string {
	t.Helper()
	cmd := exec.Command(fsprobeBin, args...)
	cmd.Dir = e.dir
	cmd.SysProcAttr = credential(uid)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fsprobe %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// holder is a process holding a file open as some uid, reading or writing on request.
type holder struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func (e *env) hold(t *testing.T, uid int, path string, rw bool) *holder {
	t.Helper()
	args := []string{"hold", path}
	if rw {
		args = append(args, "rw")
	}
	return e.holdWith(t, uid, "ok open", args...)
}

// holdWith starts fsprobe with args as uid, a process that answers requests on stdin,
// and checks its first line.
func (e *env) holdWith(t *testing.T, uid int, first string, args ...string) *holder {
	t.Helper()
	cmd := exec.Command(fsprobeBin, args...)
	cmd.SysProcAttr = credential(uid)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{t: t, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(h.close)
	if got := h.line(); got != first {
		t.Fatalf("fsprobe %v: %q", args, got)
	}
	return h
}

func (h *holder) line() string {
	h.t.Helper()
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() {
		s, err := h.out.ReadString('\n')
		c <- res{s, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			h.t.Fatalf("holder: %v", r.err)
		}
		return strings.TrimSpace(r.s)
	case <-time.After(30 * time.Second):
		h.t.Fatal("holder did not answer")
		return ""
	}
}

// do sends one request ("read" or "write") and returns the answer line.
func (h *holder) do(req string) string {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, req+"\n"); err != nil {
		h.t.Fatal(err)
	}
	return h.line()
}

func (h *holder) close() {
	h.stdin.Close()
	h.cmd.Wait()
}

func TestGroupEnumerationAndAccess(t *testing.T) {
	g := newGroupEnv(t)
	S := g.S
	// Access-based enumeration: each uid sees only its own shares.
	if got := g.shOK(t, uidAlice, "ls "+S); strings.TrimSpace(got) != "s1" {
		t.Fatalf("alice sees %q", got)
	}
	for _, uid := range []int{uidCarol, uidDave, 0} {
		if got := g.shOK(t, uid, "ls -a "+S); strings.Contains(got, "s1") {
			t.Fatalf("uid %d sees the share: %q", uid, got)
		}
		// Right after a member looked the share up (the kernel may cache the name), it
		// still does not exist for anyone else, whatever they try.
		g.shOK(t, uidAlice, "stat "+S+"/s1 >/dev/null")
		g.shFails(t, uid, "ls "+S+"/s1", "No such file or directory")
		g.shFails(t, uid, "stat "+S+"/s1", "No such file or directory")
		g.shFails(t, uid, "cd "+S+"/s1", "")
		g.shFails(t, uid, "cat "+S+"/s1/x", "No such file or directory")
	}

	// Read-write member writes; each member sees the files as their own.
	g.shOK(t, uidAlice, "echo hello > "+S+"/s1/a.txt")
	if got := g.shOK(t, uidErin, "cat "+S+"/s1/a.txt"); got != "hello\n" {
		t.Fatalf("erin reads %q", got)
	}
	for _, uid := range []int{uidAlice, uidErin, uidRO} {
		want := itoa(uid)
		if got := strings.TrimSpace(g.shOK(t, uid, "stat -c %u "+S+"/s1/a.txt")); got != want {
			t.Fatalf("uid %d sees owner %s", uid, got)
		}
	}
	// Read-only member: reads, every change refused, no write bits shown.
	if got := g.shOK(t, uidRO, "cat "+S+"/s1/a.txt; stat -c %A "+S+"/s1/a.txt"); got != "hello\n-r--r--r--\n" {
		t.Fatalf("read-only member: %q", got)
	}
	for _, script := range []string{
		"echo x > " + S + "/s1/a.txt", "echo x > " + S + "/s1/new.txt", "rm " + S + "/s1/a.txt",
		"mkdir " + S + "/s1/d", "mv " + S + "/s1/a.txt " + S + "/s1/b.txt", "chmod 600 " + S + "/s1/a.txt",
		"truncate -s 0 " + S + "/s1/a.txt", "touch " + S + "/s1/a.txt", "ln -s x " + S + "/s1/l",
	} {
		g.shFails(t, uidRO, script, "ermission denied")
	}
	// Nothing is created at the root, where only shares live.
	g.shFails(t, uidAlice, "touch "+S+"/new", "ermission denied")
	g.shFails(t, uidAlice, "mkdir "+S+"/new", "ermission denied")
	g.shFails(t, uidAlice, "mv "+S+"/s1/a.txt "+S+"/a.txt", "ermission denied")
	g.shFails(t, uidAlice, "rmdir "+S+"/s1", "ermission denied")
	// chown to anyone else is refused; to oneself changes nothing and succeeds.
	g.shFails(t, uidAlice, "chown 0 "+S+"/s1/a.txt", "Operation not permitted")
	g.shOK(t, uidAlice, "chown "+itoa(uidAlice)+" "+S+"/s1/a.txt")
	// A file without write bits is read-only for every member until someone chmods it.
	g.shOK(t, uidAlice, "echo v1 > "+S+"/s1/locked.txt && chmod 444 "+S+"/s1/locked.txt")
	g.shFails(t, uidErin, "echo v2 > "+S+"/s1/locked.txt", "ermission denied")
	g.shOK(t, uidErin, "chmod 644 "+S+"/s1/locked.txt && echo v2 > "+S+"/s1/locked.txt")
	// Executable bits work.
	g.shOK(t, uidAlice, "printf '#!/bin/sh\\necho ran\\n' > "+S+"/s1/run.sh && chmod 755 "+S+"/s1/run.sh")
	if got := g.shOK(t, uidErin, S+"/s1/run.sh"); got != "ran\n" {
		t.Fatalf("script output %q", got)
	}

	// A change that is allowed but then fails is audited as failed too.
	g.shOK(t, uidAlice, "mkdir "+S+"/s1/d2 && touch "+S+"/s1/d2/f")
	g.shFails(t, uidAlice, "rmdir "+S+"/s1/d2", "Directory not empty")

	// Every open, create and delete is audited, allowed or denied.
	audit := g.dsh(0, "", "audit", "show").ok(t).stdout
	for _, re := range []string{
		`uid=2101 user=alice fs.delete "group:s1/d2" ok (directory)`,
		`uid=2101 user=alice fs.delete "group:s1/d2" error (directory not empty)`,
		`uid=2101 user=alice fs.create "group:s1/a.txt" ok`,
		`uid=2201 user=erin fs.open "group:s1/a.txt" ok`,
		`uid=2202 user=ro fs.open "group:s1/a.txt" denied`,
		`uid=2202 user=ro fs.delete "group:s1/a.txt" denied`,
	} {
		if !strings.Contains(audit, re) {
			t.Errorf("audit log lacks %s", re)
		}
	}
	scrape := g.scrape()
	for _, m := range []string{
		`dsh_fuse_operations_total{op="open",result="ok",tree="group"}`,
		`dsh_access_denied_total{reason="read_only",tree="group"}`,
		`dsh_access_denied_total{reason="no_session",tree="group"}`,
	} {
		if v := metricValue(t, scrape, m); v == "0" {
			t.Errorf("%s = 0", m)
		}
	}
}

// writeTree makes a small tree of files, folders, a symlink and an executable.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	for i, p := range []string{"a.txt", "sub/b.bin", "sub/deeper/c.txt", "empty"} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, i*70000)
		rand.Read(b)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/b.bin", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tool.sh"), []byte("#!/bin/sh\necho tool\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Everyone may read the source tree; the test uids copy from it.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			os.Chmod(p, map[bool]os.FileMode{true: 0o755, false: 0o644}[d.IsDir() || strings.HasSuffix(p, ".sh")])
		}
		return nil
	})
}

func TestGroupTools(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	for _, tool := range []string{"git", "sqlite3", "rsync", "tar", "cp"} {
		requireTool(t, tool)
	}
	g := newGroupEnv(t)
	S := g.S + "/s1"
	src := filepath.Join(g.dir, "src")
	writeTree(t, src)

	// cp -a, tar x and rsync -a give back identical trees.
	g.shOK(t, uidAlice, "cp -a src "+S+"/cp && diff -r src "+S+"/cp")
	g.shOK(t, 0, "tar -C src -cf src.tar .")
	g.shOK(t, uidAlice, "mkdir "+S+"/tar && tar -C "+S+"/tar -xf src.tar && diff -r src "+S+"/tar")
	g.shOK(t, uidAlice, "rsync -a src/ "+S+"/rsync/ && diff -r src "+S+"/rsync")
	if got := g.shOK(t, uidErin, "readlink "+S+"/cp/link && "+S+"/cp/tool.sh"); got != "sub/b.bin\ntool\n" {
		t.Fatalf("symlink and executable after cp -a: %q", got)
	}
	// Times survive cp -p (set after the data was written).
	if a, b := g.shOK(t, uidAlice, "stat -c %Y src/sub/b.bin"), g.shOK(t, uidAlice, "stat -c %Y "+S+"/cp/sub/b.bin"); a != b {
		t.Fatalf("mtime not preserved: %s vs %s", a, b)
	}

	// git: one member creates a repository, another commits in it with no safe.directory.
	git := "git -c user.name=T -c user.email=t@example.org "
	g.shOK(t, uidAlice, "cd "+S+" && git init -q repo && cd repo && echo one > f && "+git+"add f && "+git+"commit -qm one")
	g.shOK(t, uidErin, "cd "+S+"/repo && echo two >> f && "+git+"commit -qam two && "+git+"gc -q && "+git+"fsck --strict")
	if got := g.shOK(t, uidAlice, "cd "+S+"/repo && git log --format=%s"); got != "two\none\n" {
		t.Fatalf("git log: %q", got)
	}
	if got := g.shOK(t, uidErin, "cd "+S+"/repo && git status --porcelain"); got != "" {
		t.Fatalf("git status not clean: %q", got)
	}
	// git clone into the share (and out of it), then a commit in the clone.
	g.shOK(t, 0, "git init -q origin && cd origin && for i in 1 2 3; do echo $i > f$i; "+git+"add f$i; "+git+"commit -qm c$i; done && chown -R "+itoa(uidErin)+" .")
	g.shOK(t, uidErin, "git clone -q "+g.dir+"/origin "+S+"/clone && cd "+S+"/clone && echo 4 > f4 && "+git+"add f4 && "+git+"commit -qm c4 && "+git+"fsck --strict")
	if got := g.shOK(t, uidAlice, "cd "+S+"/clone && git log --format=%s | head -2"); got != "c4\nc3\n" {
		t.Fatalf("git log in the clone: %q", got)
	}

	// SQLite: a database with inserts and queries, used by two members in turn.
	g.shOK(t, uidAlice, "sqlite3 "+S+"/db.sqlite 'create table t(x integer primary key, y text); "+
		"with recursive n(i) as (select 1 union all select i+1 from n where i < 5000) insert into t(y) select hex(randomblob(40)) from n;'")
	g.shOK(t, uidErin, "sqlite3 "+S+"/db.sqlite 'update t set y = upper(y) where x % 2 = 0; delete from t where x > 4000;'")
	if got := g.shOK(t, uidAlice, "sqlite3 "+S+"/db.sqlite 'pragma integrity_check; select count(*) from t;'"); got != "ok\n4000\n" {
		t.Fatalf("sqlite: %q", got)
	}

	// Hard links, renames with flags, extended attributes.
	g.shOK(t, uidAlice, "echo data > "+S+"/h1 && ln "+S+"/h1 "+S+"/h2 && echo more >> "+S+"/h2")
	if got := g.shOK(t, uidErin, "cat "+S+"/h1; stat -c %h "+S+"/h1"); got != "data\nmore\n2\n" {
		t.Fatalf("hard link: %q", got)
	}
	g.shOK(t, uidAlice, "echo x > "+S+"/r1 && echo y > "+S+"/r2")
	if got := g.probe(t, uidAlice, "rename2", S+"/r1", S+"/r2", "noreplace"); got != "err EEXIST" {
		t.Fatalf("RENAME_NOREPLACE over an existing file: %s", got)
	}
	if got := g.probe(t, uidAlice, "rename2", S+"/r1", S+"/r2", "exchange"); got != "ok" {
		t.Fatalf("RENAME_EXCHANGE: %s", got)
	}
	if got := g.shOK(t, uidAlice, "cat "+S+"/r1 "+S+"/r2 && mv "+S+"/r1 "+S+"/r2 && cat "+S+"/r2 && ls "+S+" | grep -c '^r[12]$'"); got != "y\nx\ny\n1\n" {
		t.Fatalf("rename over an existing file: %q", got)
	}
	if got := g.probe(t, uidAlice, "setxattr", S+"/h1", "user.project", "cohort"); got != "ok" {
		t.Fatalf("setxattr: %s", got)
	}
	if got := g.probe(t, uidErin, "getxattr", S+"/h1", "user.project"); got != "ok cohort" {
		t.Fatalf("getxattr: %s", got)
	}
	if got := g.probe(t, uidRO, "setxattr", S+"/h1", "user.x", "1"); got != "err EACCES" {
		t.Fatalf("read-only setxattr: %s", got)
	}
	if got := g.probe(t, uidAlice, "getxattr", S+"/h1", "user.none"); got != "err ENODATA" {
		t.Fatalf("missing xattr: %s", got)
	}

	// A file across several 16 MiB segments, written and read back whole.
	g.shOK(t, 0, "head -c 40000000 /dev/urandom > big && chmod 644 big")
	if got := g.shOK(t, uidAlice, "cp big "+S+"/big && cmp big "+S+"/big && echo same"); got != "same\n" {
		t.Fatalf("large file: %q", got)
	}
	// Overwrite in the middle, as a database would.
	g.shOK(t, uidErin, "printf XYZ | dd of="+S+"/big bs=1 seek=20000000 conv=notrunc status=none")
	g.shOK(t, 0, "printf XYZ | dd of=big bs=1 seek=20000000 conv=notrunc status=none")
	g.shOK(t, uidAlice, "cmp big "+S+"/big")

	// A directory listing of many entries, with rm -r of the lot.
	g.shOK(t, uidAlice, "mkdir "+S+"/many && cd "+S+"/many && for i in $(seq 1 1500); do : > f$i; done")
	if got := strings.TrimSpace(g.shOK(t, uidErin, "ls "+S+"/many | wc -l")); got != "1500" {
		t.Fatalf("listing of 1500 files: %s", got)
	}
	g.shOK(t, uidErin, "rm -r "+S+"/many")
	// Across shares: rename is EXDEV and mv falls back to copy and delete.
	g.iao.as("share", "create", "s2", "--project", "p1").ok(t)
	g.iao.as("share", "add", "s2", "alice").ok(t)
	if got := g.probe(t, uidAlice, "rename2", S+"/h1", g.S+"/s2/h1", "noreplace"); got != "err EXDEV" {
		t.Fatalf("rename across shares: %s", got)
	}
	g.shOK(t, uidAlice, "mv "+S+"/h1 "+g.S+"/s2/h1 && test ! -e "+S+"/h1 && cat "+g.S+"/s2/h1 >/dev/null")
	g.shOK(t, uidAlice, "df "+g.S+" >/dev/null")
}

func TestGroupRevocation(t *testing.T) {
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "echo secret > "+S+"/f.txt")
	readGone := func(h *holder, how string) {
		t.Helper()
		if got := h.do("read"); got != "err EACCES" {
			t.Fatalf("read after %s: %q", how, got)
		}
	}

	// Removing a member: an open handle fails at its next read and write.
	h := g.hold(t, uidErin, S+"/f.txt", true)
	if got := h.do("read"); got != "ok secret" {
		t.Fatalf("first read: %q", got)
	}
	g.iao.as("share", "remove", "s1", "erin").ok(t)
	readGone(h, "removal")
	if got := h.do("write"); got != "err EACCES" {
		t.Fatalf("write after removal: %q", got)
	}
	if got := g.shOK(t, uidErin, "ls "+g.S); strings.Contains(got, "s1") {
		t.Fatal("removed member still lists the share")
	}
	h.close()

	// Logout.
	h = g.hold(t, uidAlice, S+"/f.txt", false)
	g.alice.as("logout").ok(t)
	readGone(h, "logout")
	h.close()

	// Disable.
	g.alice.login(t).ok(t)
	h = g.hold(t, uidAlice, S+"/f.txt", false)
	g.dsh(0, "", "user", "disable", "alice").ok(t)
	readGone(h, "disable")
	h.close()
	g.dsh(0, "", "user", "enable", "alice").ok(t)

	// Seal: the open handle fails, and after unseal it still does (a new login is needed).
	h = g.hold(t, uidRO, S+"/f.txt", false)
	g.dsh(0, "", "operator", "seal").ok(t)
	readGone(h, "seal")
	if got := g.shOK(t, uidRO, "ls -a "+g.S); strings.Contains(got, "s1") {
		t.Fatal("share visible while sealed")
	}
	g.dsh(0, "correct horse battery staple\n", "operator", "unseal").ok(t)
	readGone(h, "unseal")
	h.close()
}

func TestGroupSessionExpiry(t *testing.T) {
	// Long enough for the setup (six enrolments and logins) to finish inside it; a
	// race-built daemon hashes passwords several times slower.
	ttl := 12 * time.Second
	if os.Getenv("DSH_E2E_RACE") == "1" {
		ttl = time.Minute
	}
	g := newGroupEnv(t, "--session-ttl", ttl.String())
	S := g.S + "/s1"
	spare := g.alice.spare(t, 1)[0]
	spare.login(t).ok(t) // a fresh session, so the wait below is one lifetime from now
	g.shOK(t, uidAlice, "echo x > "+S+"/f.txt")
	h := g.hold(t, uidAlice, S+"/f.txt", false)
	if got := h.do("read"); got != "ok x" {
		t.Fatalf("read inside the session: %q", got)
	}
	time.Sleep(ttl + 500*time.Millisecond)
	if got := h.do("read"); got != "err EACCES" {
		t.Fatalf("read after the session expired: %q", got)
	}
}

func TestGroupIntegrityAndCrash(t *testing.T) {
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "head -c 200000 /dev/urandom > "+S+"/victim")
	// Flip one byte in every stored object: reads fail with EIO, never return wrong data.
	var objects []string
	filepath.WalkDir(filepath.Join(g.data, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(d.Name()) {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 { // empty: a spare, no object
				objects = append(objects, p)
			}
		}
		return nil
	})
	if len(objects) == 0 {
		t.Fatal("no stored objects found")
	}
	for _, p := range objects {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g.shFails(t, uidAlice, "cat "+S+"/victim > /dev/null", "Input/output error")
	if v := metricValue(t, g.scrape(), "dsh_integrity_errors_total"); v == "0" {
		t.Fatal("integrity error not counted")
	}
	if audit := g.dsh(0, "", "audit", "show").ok(t).stdout; !strings.Contains(audit, `fs.integrity "group:s1/victim" error`) {
		t.Fatal("integrity error not audited")
	}

	// A file closed before a crash survives it whole; the stale mount is cleaned up.
	g.shOK(t, 0, "head -c 3000000 /dev/urandom > keep && chmod 644 keep")
	g.shOK(t, uidAlice, "cp keep "+S+"/keep")
	spare := g.alice.spare(t, 1)[0]
	g.crash()
	g.start(true, "--group", g.S)
	spare.login(t).ok(t)
	g.shOK(t, uidAlice, "cmp keep "+S+"/keep")
}
