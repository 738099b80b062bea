package tests

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFsx runs tests/fsx as a member on a file in a share: random reads, writes,
// truncations, mapped reads and writes, fallocate modes, copy_file_range, fsync and
// reopen, every byte checked against a model. DSH_FSX_OPS sets the number of operations
// (make test: 100,000; `make fsx` runs a million); DSH_FSX_SEED replays a failure.
func TestFsx(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	ops := 100000
	if v := os.Getenv("DSH_FSX_OPS"); v != "" {
		ops, _ = strconv.Atoi(v)
	}
	seed := strconv.FormatInt(time.Now().UnixNano(), 10)
	if v := os.Getenv("DSH_FSX_SEED"); v != "" {
		seed = v
	}
	g := newGroupEnv(t)
	// Most operations on a file of up to 1 MiB, where each flush is cheap; a twentieth on
	// one of up to 18 MiB, across the 16 MiB segment boundary.
	for _, run := range []struct {
		name string
		ops  int
		max  string
	}{{"small.bin", ops, "1048576"}, {"large.bin", max(ops/20, 1), "18874368"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		cmd := exec.CommandContext(ctx, fsxBin, "-seed", seed, "-ops", strconv.Itoa(run.ops), "-max", run.max, g.S+"/s1/"+run.name)
		cmd.SysProcAttr = credential(uidAlice)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("fsx failed (replay with DSH_FSX_SEED=%s): %v\n%s\ndaemon log:\n%s", seed, err, out, tail(g.serverLog(), 30))
		}
		if !strings.Contains(string(out), "fsx: ok") {
			t.Fatalf("fsx did not finish: %s", out)
		}
		t.Log(strings.TrimSpace(string(out)))
	}
}
