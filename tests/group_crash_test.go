package tests

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writerScript writes files n (1..) of writer p into dir, each closed (and every third
// fsync'd) before its name goes into done, until it fails (the daemon dies) or has written
// max files. A file's content is a function of its name, so the test can check it.
func writerScript(dir, done string, p, max int) string {
	return fmt.Sprintf(`i=1
while [ $i -le %[4]d ]; do
  f=%[1]s/w%[3]d-$i
  if [ $((i %% 3)) -eq 0 ]; then
    yes "w%[3]d-$i" | head -c $((i * 7919 %% 300000)) | dd of=$f bs=64k conv=fsync status=none || exit 0
  else
    yes "w%[3]d-$i" | head -c $((i * 7919 %% 300000)) > $f || exit 0
  fi
  echo w%[3]d-$i >> %[2]s || exit 1
  i=$((i + 1))
done`, dir, done, p, max)
}

// expected is the content writerScript gives file name (wP-I).
func expected(t *testing.T, name string) []byte {
	t.Helper()
	var p, i int
	if _, err := fmt.Sscanf(name, "w%d-%d", &p, &i); err != nil {
		t.Fatalf("unexpected file %q", name)
	}
	size := i * 7919 % 300000
	line := []byte(name + "\n")
	out := make([]byte, 0, size+len(line))
	for len(out) < size {
		out = append(out, line...)
	}
	return out[:size]
}

// TestGroupNothingLost kills the daemon with SIGKILL while several processes write, at
// different points, and checks after each restart that every file closed or fsync'd before
// the kill reads back exactly, that no file fails to decrypt, and that the objects of
// interrupted writes are collected.
func TestGroupNothingLost(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	g := newGroupEnv(t)
	S := g.S + "/s1"
	logs := filepath.Join(g.dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(logs, uidAlice, uidAlice)
	const writers = 4
	tokens := g.alice.spare(t, 3)
	for round, killAfter := range []time.Duration{700 * time.Millisecond, 1500 * time.Millisecond, 300 * time.Millisecond} {
		dir := fmt.Sprintf("%s/round%d", S, round)
		g.shOK(t, uidAlice, "mkdir "+dir)
		done := make(chan result, writers)
		for p := 0; p < writers; p++ {
			log := fmt.Sprintf("%s/r%d-w%d", logs, round, p)
			go func() { done <- g.sh(uidAlice, writerScript(dir, log, p, 400)) }()
		}
		time.Sleep(killAfter)
		g.crash()
		for p := 0; p < writers; p++ {
			<-done
		}
		g.start(true, "--group", g.S)
		tokens[round].login(t).ok(t)

		// Every file whose close (or fsync) returned reads back exactly (checked in one
		// script: a process per file would make the test slow).
		var check strings.Builder
		closed := 0
		for p := 0; p < writers; p++ {
			b, err := os.ReadFile(fmt.Sprintf("%s/r%d-w%d", logs, round, p))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			for _, name := range strings.Fields(string(b)) {
				fmt.Fprintf(&check, "yes %q | head -c %d | cmp -s - %s/%s || echo BAD %s\n", name, len(expected(t, name)), dir, name, name)
				closed++
			}
		}
		if closed == 0 {
			t.Fatalf("round %d: no file was closed before the kill; the kill came too early to test anything", round)
		}
		if bad := g.shOK(t, uidAlice, check.String()); bad != "" {
			t.Fatalf("round %d: files closed before the kill do not read back exactly:\n%s", round, bad)
		}
		// Every file there, closed or not, reads without an integrity error: old or new
		// content, never a mix that fails to decrypt.
		g.shOK(t, uidAlice, "for f in "+dir+"/*; do cat \"$f\" > /dev/null || exit 1; done")
		t.Logf("round %d: killed after %v, %d closed files checked", round, killAfter, closed)
	}

	// Objects of interrupted writes are collected: once the collector has run, every
	// stored object belongs to a file (all files here fit in one segment).
	want := strings.TrimSpace(g.shOK(t, uidAlice, "find "+S+" -type f -size +0 | wc -l"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := countObjects(t, g.data)
		if fmt.Sprint(n) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d objects stored for %s non-empty files: orphans not collected", n, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// countObjects counts the objects in a data folder's blob store. Empty files are the store's
// spares, prepared for objects not written yet: every object holds at least its header.
func countObjects(t *testing.T, data string) int {
	t.Helper()
	n := 0
	name := regexp.MustCompile(`^[0-9a-f]{32}$`)
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && name.MatchString(d.Name()) {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 {
				n++
			}
		}
		return nil
	})
	return n
}
