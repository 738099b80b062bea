package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"dsh/control"
)

// No stored byte can forge a line of `dsh audit show`: a record prints as one line, and a
// field that is not plain prints quoted, whatever bytes it holds.
func TestFormatRecordCannotBeForged(t *testing.T) {
	forged := "x\n   999 2026-01-01T00:00:00Z uid=0 user=- vault.seal \"\" ok"
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	recs := []control.AuditRecord{
		{Seq: 1, Time: at, UID: 2101, User: "alice", Action: "fs.rename", Object: "group:s1/" + forged, Result: "ok", Detail: "to group:s1/" + forged},
		{Seq: 2, Time: at, UID: 2101, User: "alice\nuid=0", Action: "fs.open\r", Object: "\x1b[2K\rgroup:s1/a", Result: "ok\u2028x", Detail: "\xff\xfe bad utf-8 \u202e"},
		{Seq: 3, Time: at, UID: 0, Action: "fs.delete", Object: "group:s1/d2", Result: "error", Detail: "directory not empty"},
	}
	var out bytes.Buffer
	emit := recordPrinter(&out, false)
	for _, r := range recs {
		if err := emit(r); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(recs) {
		t.Fatalf("%d records printed as %d lines:\n%s", len(recs), len(lines), out.String())
	}
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\x1b\u2028\u202e") || !strings.HasPrefix(strings.TrimLeft(l, " "), string(rune('1'+i))+" ") {
			t.Errorf("line %d is not one plain record line: %q", i+1, l)
		}
	}
	if !strings.Contains(lines[0], `"group:s1/x\n   999`) || !strings.Contains(lines[1], `user="alice\nuid=0"`) || !strings.Contains(lines[1], `"\xff\xfe bad utf-8 \u202e"`) {
		t.Errorf("fields not quoted as expected:\n%s", out.String())
	}
	if lines[2] != `     3 2026-05-01T12:00:00Z uid=0 user=- fs.delete "group:s1/d2" error (directory not empty)` {
		t.Errorf("plain record: %q", lines[2])
	}

	// JSON lines: one object per record, strings escaped by encoding/json.
	out.Reset()
	emit = recordPrinter(&out, true)
	for _, r := range recs {
		emit(r)
	}
	lines = strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(recs) {
		t.Fatalf("JSON: %d records as %d lines", len(recs), len(lines))
	}
	var back control.AuditRecord
	if err := json.Unmarshal([]byte(lines[0]), &back); err != nil || back.Object != recs[0].Object || back.Seq != 1 {
		t.Fatalf("JSON round trip: %+v %v", back, err)
	}
}
