package fs

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"dsh/audit"
)

// hookedAudit runs a hook once, after the first record that matches, before Append
// returns: the moment between the record of a change and the change itself.
type hookedAudit struct {
	*recorder
	match func(audit.Entry) bool
	once  sync.Once
	hook  func()
}

func (h *hookedAudit) Append(ctx context.Context, e audit.Entry, d audit.Durability) (audit.Record, error) {
	r, err := h.recorder.Append(ctx, e, d)
	if err == nil && h.match(e) {
		h.once.Do(h.hook)
	}
	return r, err
}

// The retention sweep deletes the file that expired, never a new file that its owner
// uploaded under the same name after deleting the old one, in the moment between the
// sweep's look and its deletion.
func TestExpiryDeletesTheFileThatExpired(t *testing.T) {
	h := newHarness(t)
	old := randomBytes(1000)
	if _, err := h.g.Ingest(bg, aliceUID, "scan.csv", bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.g.Ingest(bg, aliceUID, "other.csv", bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	fresh := randomBytes(2000)
	h.be.Audit = &hookedAudit{recorder: h.aud,
		match: func(e audit.Entry) bool {
			return e.Action == "arrivals.expire" && e.Object == "arrivals:alice/scan.csv" && e.Result == "ok"
		},
		hook: func() {
			// The owner deletes the expired file and uploads a new one under its name.
			a, err := h.be.Meta.Unlink(bg, h.root(t).Ino, "scan.csv")
			if err != nil {
				t.Error(err)
				return
			}
			h.g.reapIfUnused(bg, h.be, a.Ino, a.Nlink)
			if _, err := h.g.Ingest(bg, aliceUID, "scan.csv", bytes.NewReader(fresh)); err != nil {
				t.Error(err)
			}
		}}
	n, err := h.g.sweepExpired(bg, h.be, time.Now().Add(DefaultRetention+time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("swept %d files, want 1 (other.csv)", n)
	}
	if got := h.read(t, "scan.csv"); !bytes.Equal(got, fresh) {
		t.Fatalf("the file uploaded after the expired one was deleted or changed (%d bytes)", len(got))
	}
	if _, ok := h.list(t)["other.csv"]; ok {
		t.Error("other.csv expired but is still there")
	}
	if h.aud.count("arrivals.expire", "arrivals:alice/scan.csv", "skipped") != 1 {
		t.Error("the expiry that did not happen is not recorded as skipped")
	}
	if h.aud.count("arrivals.expire", "arrivals:alice/other.csv", "ok") != 1 {
		t.Error("the expiry of other.csv is not recorded")
	}
}
