package tests

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestMappedWritesLand: a handle acts for the uid that opened it. Pages written through a
// MAP_SHARED mapping reach the daemon from the kernel's writeback (uid 0 in the request
// when root's sync or the flusher writes them, the mapper's uid at munmap); they land and
// survive a restart. After a revocation the same writes are refused, counted and audited
// as the opener's denied write.
func TestMappedWritesLand(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "head -c 4096 /dev/zero | tr '\\0' . > "+S+"/m.bin")

	m := g.holdWith(t, uidAlice, "ok mapped", "mmap", S+"/m.bin")
	if got := m.do("put 0 written-before-sync"); got != "ok" {
		t.Fatalf("put: %q", got)
	}
	// root's sync writes the dirty page back: the request carries uid 0, which has no
	// session; the handle's opener decides.
	g.shOK(t, 0, "sync")
	if got := g.shOK(t, uidErin, "head -c 19 "+S+"/m.bin"); got != "written-before-sync" {
		t.Fatalf("after sync, erin reads %q", got)
	}
	// Written after the descriptor is closed: munmap writes it back.
	for _, req := range []string{"close", "put 100 written-after-close", "unmap"} {
		if got := m.do(req); got != "ok" {
			t.Fatalf("%s: %q", req, got)
		}
	}
	m.close()
	// msync through a second mapping.
	m = g.holdWith(t, uidAlice, "ok mapped", "mmap", S+"/m.bin")
	for _, req := range []string{"put 200 written-then-msync", "msync", "unmap", "close"} {
		if got := m.do(req); got != "ok" {
			t.Fatalf("%s: %q", req, got)
		}
	}
	m.close()

	// Restart: what was written through the mappings is on disk.
	spare := g.alice.spare(t, 1)[0]
	g.stop()
	g.start(true, "--group", g.S)
	spare.login(t).ok(t)
	got := g.shOK(t, uidAlice, "head -c 300 "+S+"/m.bin")
	for off, want := range map[int]string{0: "written-before-sync", 100: "written-after-close", 200: "written-then-msync"} {
		if got[off:off+len(want)] != want {
			t.Fatalf("after restart, bytes at %d are %q, want %q", off, got[off:off+len(want)], want)
		}
	}

	// Revocation: erin's mapped write reaches the daemon after her removal and is refused.
	g.erin.login(t).ok(t)
	g.iao.login(t).ok(t)
	before := deniedWrites(t, g.env)
	m = g.holdWith(t, uidErin, "ok mapped", "mmap", S+"/m.bin")
	if got := m.do("put 300 written-after-removal"); got != "ok" {
		t.Fatalf("put: %q", got)
	}
	g.iao.as("share", "remove", "s1", "erin").ok(t)
	m.do("unmap")
	m.do("close")
	m.close()
	if got := g.shOK(t, uidAlice, "head -c 400 "+S+"/m.bin"); strings.Contains(got, "written-after-removal") {
		t.Fatal("a write through a mapping landed after its opener was removed from the share")
	}
	if after := deniedWrites(t, g.env); after <= before {
		t.Fatalf("denied writes counted %v before, %v after", before, after)
	}
	if audit := g.dsh(0, "", "audit", "show").ok(t).stdout; !strings.Contains(audit, `uid=2201 user=erin fs.write "group:s1/m.bin" denied`) {
		t.Fatalf("the refused write is not audited as erin's:\n%s", tail(audit, 20))
	}
}

func deniedWrites(t *testing.T, e *env) float64 {
	t.Helper()
	for _, line := range strings.Split(e.scrape(), "\n") {
		if strings.HasPrefix(line, `dsh_fuse_operations_total{op="write",result="denied",tree="group"} `) {
			v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return v
		}
	}
	return 0
}

// TestRevocationDropsKeys: when nobody who holds a file open may read it any more, the
// daemon drops its content key and decrypted data (counted); a member still reading keeps
// working, what was written before is kept, and the opener's handle works again once it
// has access again.
func TestRevocationDropsKeys(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "printf secret > "+S+"/f && head -c 8000000 /dev/urandom >> "+S+"/f")
	dropped := func() string { return metricValue(t, g.scrape(), "dsh_file_keys_dropped_total") }

	a := g.hold(t, uidAlice, S+"/f", true)
	e := g.hold(t, uidErin, S+"/f", false)
	for _, h := range []*holder{a, e} {
		if got := h.do("read"); !strings.HasPrefix(got, "ok secret") {
			t.Fatalf("first read: %q", got)
		}
	}
	// Erin is removed; Alice still reads the same open file.
	g.iao.as("share", "remove", "s1", "erin").ok(t)
	if got := e.do("read"); got != "err EACCES" {
		t.Fatalf("erin after removal: %q", got)
	}
	if got := a.do("read"); !strings.HasPrefix(got, "ok secret") {
		t.Fatalf("alice after erin's removal: %q", got)
	}
	if got := dropped(); got != "0" {
		t.Fatalf("a key was dropped while a member still reads: %s", got)
	}
	// Alice writes, then logs out: nobody may read the file; its key goes before the
	// logout returns, and the write is kept.
	if got := a.do("write"); got != "ok" {
		t.Fatalf("write: %q", got)
	}
	spare := g.alice.spare(t, 1)[0]
	g.alice.as("logout").ok(t)
	if got := dropped(); got != "1" {
		t.Fatalf("after the last reader's logout, keys dropped = %s, want 1", got)
	}
	if got := a.do("read"); got != "err EACCES" {
		t.Fatalf("alice after logout: %q", got)
	}
	spare.login(t).ok(t)
	if got := a.do("read"); !strings.HasPrefix(got, "ok Wecret") {
		t.Fatalf("alice's handle after a new login: %q", got)
	}
	a.close()
	e.close()
	if got := g.shOK(t, uidAlice, "head -c 6 "+S+"/f"); got != "Wecret" {
		t.Fatalf("file starts with %q", got)
	}
}

// TestManyUnflushedWritersStayInBudget: one member holds 24 files open, each with 24 MiB
// written and never closed (below each file's own limit): the daemon's peak memory stays
// under its 256 MiB budget, because all open files share one budget for unflushed data.
func TestManyUnflushedWritersStayInBudget(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	g := newGroupEnv(t)
	h := g.holdWith(t, uidAlice, "ok filled", "fill", g.S+"/s1", "24", strconv.Itoa(24<<20))
	peak := vmHWM(t, g.env)
	h.close()
	if peak > 256<<10 {
		t.Fatalf("daemon peak memory %d KiB with 24 writers holding 24 MiB each", peak)
	}
	t.Logf("daemon peak memory: %d MiB", peak>>10)
	if got := g.shOK(t, uidErin, "cmp "+g.S+"/s1/fill-0 "+g.S+"/s1/fill-23 && stat -c %s "+g.S+"/s1/fill-23"); got != strconv.Itoa(24<<20)+"\n" {
		t.Fatalf("after close: %q", got)
	}
}

// vmHWM is the daemon's peak resident memory in KiB.
func vmHWM(t *testing.T, e *env) int {
	t.Helper()
	e.mu.Lock()
	pid := e.cmd.Process.Pid
	e.mu.Unlock()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
