package kv

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestBadgerLoggerRedactsAndFilters(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	secret := []byte("PATIENT-ZX81")
	l.Errorf("Unable to read: Key: %v, Version : %v\n", secret, 7)
	l.Warningf("While reading key: %x, got error: %s", secret, "boom")
	l.Infof("info %s", "dropped")
	l.Debugf("debug %s", "dropped")
	out := buf.String()
	for _, bad := range []string{"PATIENT", "5041544945", "dropped"} {
		if strings.Contains(out, bad) {
			t.Errorf("log output contains %q:\n%s", bad, out)
		}
	}
	for _, good := range []string{"level=ERROR", "level=WARN", "[12 bytes redacted]", "Version : 7", "boom"} {
		if !strings.Contains(out, good) {
			t.Errorf("log output lacks %q:\n%s", good, out)
		}
	}
}
