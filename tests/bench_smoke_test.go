package tests

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchSmoke runs `make bench` in its quick mode (tiny sizes), so that the benchmark
// harness cannot rot between the runs that measure. The figures mean nothing here.
func TestBenchSmoke(t *testing.T) {
	requireFUSE(t)
	requireTool(t, "gocryptfs")
	requireSamba(t)
	root, _ := filepath.Abs("..")
	bin := t.TempDir()
	for _, p := range []string{"ceiling", "dshbench"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, p), "./bench/"+p)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v: %s", p, err, out)
		}
	}
	md := filepath.Join(t.TempDir(), "results.md")
	cmd := exec.Command(filepath.Join(bin, "dshbench"), "-quick", "-dsh", dshBin, "-ceiling", filepath.Join(bin, "ceiling"), "-out", md, "-uid", "2950")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dshbench -quick: %v\n%s", err, out)
	}
	for _, want := range []string{"machine: ", "1. sequential write", "6. open+close", "8b. dsh peak RSS", "dsh/gocryptfs", "S1. SMB sequential write", "S3. SMB create+close", "dsh/plain"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("bench output lacks %q:\n%s", want, out)
		}
	}
}
