package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"dsh/scan"
)

// fakeScanner is an in-process stand-in for clamd in these unit tests (the real clamd is
// tested in scan/ and end to end in tests/): it finds the marker, holds what is over its
// limit, and fails when told to. It records the bytes it was given.
type fakeScanner struct {
	mu    sync.Mutex
	fail  error
	limit int64
	seen  [][]byte
}

const marker = "EVIL-MARKER"

func (f *fakeScanner) Scan(ctx context.Context, size int64, r io.Reader) (scan.Verdict, error) {
	f.mu.Lock()
	fail, limit := f.fail, f.limit
	f.mu.Unlock()
	if fail != nil {
		return scan.Verdict{}, fail
	}
	if limit > 0 && size > limit {
		return scan.Verdict{Result: scan.Held, Reason: "too big"}, nil
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return scan.Verdict{}, err
	}
	f.mu.Lock()
	f.seen = append(f.seen, b)
	f.mu.Unlock()
	if int64(len(b)) != size {
		return scan.Verdict{}, scan.ErrFailed
	}
	if bytes.Contains(b, []byte(marker)) {
		return scan.Verdict{Result: scan.Infected, Signature: "Test.Marker"}, nil
	}
	return scan.Verdict{Result: scan.Clean}, nil
}

func (f *fakeScanner) set(fail error, limit int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.limit = fail, limit
}

func TestGateCleanFilePasses(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(3*mib + 7)
	if _, err := h.g.Ingest(bg, aliceUID, "clean.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// The scanner saw exactly the plaintext, decrypted from the staged file.
	if len(h.scanner.seen) != 1 || !bytes.Equal(h.scanner.seen[0], data) {
		t.Fatal("the scanner did not see the file's bytes")
	}
	if h.aud.count("arrivals.upload", "arrivals:alice/clean.bin", "ok") != 1 {
		t.Fatal("clean upload not audited")
	}
}

func TestGateInfectedQuarantined(t *testing.T) {
	h := newHarness(t)
	data := append(randomBytes(mib), []byte(marker)...)
	u := h.begin(t, "bad.doc", int64(len(data)))
	mustWrite(t, u, 0, data)
	_, err := u.Finish(bg)
	if !errors.Is(err, ErrQuarantined) || !strings.Contains(err.Error(), "Test.Marker") {
		t.Fatalf("finish of an infected file: %v", err)
	}
	if len(h.list(t)) != 0 || len(h.staged(t)) != 0 {
		t.Fatalf("infected file visible %v or left staged %v", h.list(t), h.staged(t))
	}
	if err := u.Abort(bg); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("abort after quarantine: %v", err)
	}
	if h.aud.count("arrivals.quarantine", "arrivals:alice/bad.doc", "denied") != 1 {
		t.Fatal("quarantine not audited")
	}
	qs, err := h.g.Quarantine(bg)
	if err != nil || len(qs) != 1 {
		t.Fatalf("quarantine list %v, %v", qs, err)
	}
	q := qs[0]
	if q.User != "alice" || q.Name != "bad.doc" || q.Size != int64(len(data)) || q.Verdict.Signature != "Test.Marker" {
		t.Fatalf("record %+v", q)
	}
	// The uploader cannot reach it: the folder is hidden, and its name refused for uploads.
	if !h.g.hidden(quarantineDir) {
		t.Fatal("quarantine folder not hidden")
	}
	if _, err := h.g.Ingest(bg, aliceUID, quarantineDir, bytes.NewReader(nil)); !errors.Is(err, ErrBadName) {
		t.Fatalf("upload named %s: %v", quarantineDir, err)
	}

	// Release needs two different people, neither of them the uploader.
	if _, _, err := h.g.ReleaseQuarantined(bg, aliceUID, "alice", q.ID); !errors.Is(err, ErrSamePerson) {
		t.Fatalf("uploader releasing: %v", err)
	}
	q2, arr, err := h.g.ReleaseQuarantined(bg, 0, "operator", q.ID)
	if err != nil || arr != nil || len(q2.Release) != 1 {
		t.Fatalf("first release request: %+v %v %v", q2, arr, err)
	}
	if _, _, err := h.g.ReleaseQuarantined(bg, 0, "operator", q.ID); !errors.Is(err, ErrSamePerson) {
		t.Fatalf("the same person twice: %v", err)
	}
	if len(h.list(t)) != 0 {
		t.Fatal("released after one request")
	}
	_, arr, err = h.g.ReleaseQuarantined(bg, 1002, "bob", q.ID)
	if err != nil || arr == nil || arr.Name != "bad.doc" {
		t.Fatalf("second release request: %v %v", arr, err)
	}
	if !bytes.Equal(h.read(t, "bad.doc"), data) {
		t.Fatal("released file differs")
	}
	if qs, _ := h.g.Quarantine(bg); len(qs) != 0 {
		t.Fatalf("still quarantined: %v", qs)
	}
	if h.aud.count("quarantine.release", "arrivals:alice/bad.doc ("+q.ID+")", "ok") != 1 {
		t.Fatal("release not audited")
	}
	if _, _, err := h.g.ReleaseQuarantined(bg, 0, "operator", q.ID); !errors.Is(err, ErrNoQuarantined) {
		t.Fatalf("release again: %v", err)
	}
}

func TestGateHeldAndDeleted(t *testing.T) {
	h := newHarness(t)
	h.scanner.set(nil, 2*mib)
	if _, err := h.g.Ingest(bg, aliceUID, "huge.bin", bytes.NewReader(randomBytes(3*mib))); !errors.Is(err, ErrQuarantined) || !strings.Contains(err.Error(), "held for review") {
		t.Fatalf("over the limit: %v", err)
	}
	qs, _ := h.g.Quarantine(bg)
	if len(qs) != 1 || qs[0].Verdict.Result != scan.Held {
		t.Fatalf("held: %+v", qs)
	}
	if err := h.g.DeleteQuarantined(bg, 0, "operator", qs[0].ID); err != nil {
		t.Fatal(err)
	}
	if qs, _ := h.g.Quarantine(bg); len(qs) != 0 || len(h.list(t)) != 0 {
		t.Fatalf("after delete: %v %v", qs, h.list(t))
	}
	if err := h.g.DeleteQuarantined(bg, 0, "operator", "qnope"); !errors.Is(err, ErrNoQuarantined) {
		t.Fatalf("delete unknown: %v", err)
	}
}

// Without a verdict nothing passes: the scanner failing, or none configured.
func TestGateFailsClosed(t *testing.T) {
	h := newHarness(t)
	h.scanner.set(scan.ErrUnavailable, 0)
	u := h.begin(t, "x.txt", 5)
	mustWrite(t, u, 0, []byte("hello"))
	if _, err := u.Finish(bg); !errors.Is(err, ErrScanner) {
		t.Fatalf("finish with the scanner down: %v", err)
	}
	if len(h.list(t)) != 0 {
		t.Fatal("published without a verdict")
	}
	// The upload stays staged: once the scanner is back it can finish.
	h.scanner.set(nil, 0)
	if _, err := u.Finish(bg); err != nil {
		t.Fatalf("finish once the scanner is back: %v", err)
	}
	if h.aud.count("arrivals.scan", "arrivals:alice/x.txt", "error") != 1 {
		t.Fatal("the failed scan is not audited")
	}

	h.g.opts.Scanner = nil
	if _, err := h.g.Ingest(bg, aliceUID, "y.txt", strings.NewReader("hi")); !errors.Is(err, ErrScanner) {
		t.Fatalf("no scanner: %v", err)
	}
	if _, ok := h.list(t)["y.txt"]; ok || len(h.staged(t)) != 0 {
		t.Fatal("published or left staged without a scanner")
	}
}
