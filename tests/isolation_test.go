package tests

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestIsolationFromKernelCaches runs the probe (tests/fsprobe isolate) as a uid with no
// account, a logged-in non-member and root without a session, against a share whose member
// is working in it at that moment and has just made the kernel cache every name and
// attribute the probe asks for. Every vector must fail as for a name that does not exist,
// and no watch may deliver an event. The table (vector × actor → result) is logged.
func TestIsolationFromKernelCaches(t *testing.T) {
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "cd "+S+" && mkdir dir && echo secret > dir/file && echo a,b > top.csv && ln -s top.csv link && setfattr -n user.x -v 1 top.csv 2>/dev/null; true")
	paths := []string{S, S + "/dir", S + "/dir/file", S + "/top.csv", S + "/link"}
	cache := "stat " + strings.Join(paths, " ") + " >/dev/null && ls -lR " + S + " >/dev/null"

	actors := []struct {
		name string
		uid  int
	}{{"no account", uidOutsider}, {"non-member", uidCarol}, {"root", 0}}
	table := map[string]map[string]string{} // vector -> actor -> results
	for _, a := range actors {
		g.shOK(t, uidAlice, cache)
		// The member works in the share while the probe runs: creates, renames, writes.
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				g.sh(uidAlice, fmt.Sprintf("cd %s && echo x > patient-%d.csv && mv patient-%d.csv dir/moved-%d.csv && echo y >> dir/file && cat top.csv >/dev/null && ls dir >/dev/null && %s", S, i, i, i, cache))
				time.Sleep(50 * time.Millisecond)
			}
		}()
		cmd := exec.Command(fsprobeBin, append([]string{"isolate", "3"}, paths...)...)
		cmd.Dir = g.dir
		if a.uid != 0 {
			cmd.SysProcAttr = credential(a.uid)
		}
		out, err := cmd.CombinedOutput()
		stop()
		wg.Wait()
		if err != nil || !strings.Contains(string(out), "done") {
			t.Fatalf("probe as %s: %v\n%s", a.name, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.SplitN(line, "\t", 3)
			if len(f) < 3 {
				continue
			}
			vector, path, res := f[0], f[1], f[2]
			if vector == "event" {
				t.Errorf("%s received an event: %s %s", a.name, path, res)
				continue
			}
			if res != "err ENOENT" {
				t.Errorf("%s: %s %s: %s, want ENOENT as for a name that does not exist", a.name, vector, path, res)
			}
			if table[vector] == nil {
				table[vector] = map[string]string{}
			}
			if prev := table[vector][a.name]; prev != "" && prev != res {
				res = prev + "/" + res
			}
			table[vector][a.name] = res
		}
	}
	var vectors []string
	for v := range table {
		vectors = append(vectors, v)
	}
	sort.Strings(vectors)
	var b strings.Builder
	b.WriteString("| vector | no account | non-member | root without session |\n|---|---|---|---|\n")
	for _, v := range vectors {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", v, table[v]["no account"], table[v]["non-member"], table[v]["root"])
	}
	t.Logf("probe results (each vector against %d paths inside the share):\n%s", len(paths), b.String())

	// The member still works through all of it.
	if got := g.shOK(t, uidAlice, "cat "+S+"/dir/file | head -1"); got != "secret\n" {
		t.Fatalf("member reads %q", got)
	}
}
