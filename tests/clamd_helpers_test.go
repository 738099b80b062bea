package tests

import (
	"context"
	"os"
	"sync"
	"testing"

	"dsh/scan/clamdtest"
)

// Every daemon the tests start scans uploads with a real clamd (Debian's clamav-daemon)
// loaded with the test signature database: one shared by the whole run, started on first
// use. Tests of the gate itself start clamds of their own (startClamd) and pass --clamd.
var shared struct {
	once  sync.Once
	clamd *clamdtest.Clamd
	err   error
	dir   string
}

// sharedClamdLimit is the shared clamd's StreamMaxLength and the daemons' --clamd-max-size:
// above every upload the other tests finish.
const sharedClamdLimit = 1 << 30

// clamdArgs returns the serve flags naming the shared clamd. Under CI a missing clamd is a
// failure; elsewhere the daemon runs without one (its uploads are refused).
func clamdArgs(t *testing.T) []string {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "dsh-clamd-"); shared.err != nil {
			return
		}
		shared.clamd, shared.err = clamdtest.Start(context.Background(), shared.dir, clamdtest.Options{StreamMaxLength: sharedClamdLimit})
	})
	if shared.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("clamd: %v (make test installs clamav-daemon)", shared.err)
		}
		t.Logf("no clamd (%v): this daemon refuses uploads", shared.err)
		return nil
	}
	return []string{"--clamd", shared.clamd.Socket, "--clamd-max-size", itoa(sharedClamdLimit)}
}

// stopSharedClamd ends the shared clamd at the end of the run.
func stopSharedClamd() {
	if shared.clamd != nil {
		shared.clamd.Stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// startClamd runs a clamd of the test's own, stopped when the test ends.
func startClamd(t *testing.T, opts clamdtest.Options) *clamdtest.Clamd {
	t.Helper()
	requireTool(t, "clamd")
	c, err := clamdtest.Start(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}
