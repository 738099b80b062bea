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

// actor is a uid the probe runs as.
type actor struct {
	name string
	uid  int
}

// probeIsolation runs the probe (tests/fsprobe isolate) as each actor against paths while
// activity (a member working there, keeping every name and attribute in the kernel's
// caches) runs in a loop. Every vector must fail with ENOENT, as for a name that does not
// exist, and no watch may deliver an event. It returns the table (vector × actor).
func probeIsolation(t *testing.T, e *env, actors []actor, paths []string, activity func(i int)) string {
	t.Helper()
	table := map[string]map[string]string{}
	for _, a := range actors {
		activity(-1)
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				activity(i)
				time.Sleep(50 * time.Millisecond)
			}
		})
		cmd := exec.Command(fsprobeBin, append([]string{"isolate", "3"}, paths...)...)
		cmd.Dir = e.dir
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
	b.WriteString("| vector |")
	for _, a := range actors {
		b.WriteString(" " + a.name + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(actors)) + "\n")
	for _, v := range vectors {
		b.WriteString("| " + v + " |")
		for _, a := range actors {
			b.WriteString(" " + table[v][a.name] + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestIsolationFromKernelCaches probes a share whose member is working in it as a uid
// with no account, a logged-in non-member and root without a session.
func TestIsolationFromKernelCaches(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	g := newGroupEnv(t)
	S := g.S + "/s1"
	g.shOK(t, uidAlice, "cd "+S+" && mkdir dir && echo secret > dir/file && echo a,b > top.csv && ln -s top.csv link")
	paths := []string{S, S + "/dir", S + "/dir/file", S + "/top.csv", S + "/link"}
	cache := "stat " + strings.Join(paths, " ") + " >/dev/null && ls -lR " + S + " >/dev/null"
	table := probeIsolation(t, g.env, []actor{{"no account", uidOutsider}, {"non-member", uidCarol}, {"root without session", 0}}, paths, func(i int) {
		if i < 0 {
			g.shOK(t, uidAlice, cache)
			return
		}
		// The member works in the share while the probe runs: creates, renames, writes.
		g.sh(uidAlice, fmt.Sprintf("cd %s && echo x > patient-%d.csv && mv patient-%d.csv dir/moved-%d.csv && echo y >> dir/file && cat top.csv >/dev/null && ls dir >/dev/null && %s", S, i, i, i, cache))
	})
	t.Logf("probe results (each vector against %d paths inside the share):\n%s", len(paths), table)
	// The member still works through all of it.
	if got := g.shOK(t, uidAlice, "head -1 "+S+"/dir/file"); got != "secret\n" {
		t.Fatalf("member reads %q", got)
	}
}

// TestIsolationArrivals probes a user's Arrivals folder while its owner reads an upload
// there, as another logged-in user, a uid with no account and root without a session.
func TestIsolationArrivals(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	a := newArrivalsEnv(t)
	src := a.localFile(t, "patient-export.csv", 200_000)
	a.dsh(uidAlice, "", "upload", src).ok(t)
	Q := a.Q + "/alice"
	paths := []string{Q, Q + "/patient-export.csv"}
	table := probeIsolation(t, a.env, []actor{{"no account", uidOutsider}, {"another user", uidBob}, {"root without session", 0}}, paths, func(i int) {
		a.sh(uidAlice, "ls -l "+Q+" >/dev/null && stat "+Q+"/patient-export.csv >/dev/null && cat "+Q+"/patient-export.csv > /dev/null")
	})
	t.Logf("probe results (each vector against %d paths in an Arrivals folder):\n%s", len(paths), table)
}
