package airlock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/metrics"
	"dsh/scan"
)

// The fakes below stand in for the daemon's parts in these unit tests of the state machine;
// tests/airlock_test.go runs the same rules end to end on real mounts, objects and clamd.

type fakeDir struct{}

func (fakeDir) ShareProject(share string) (string, bool) { return "p1", share == "s1" }
func (fakeDir) CanRead(uid int, share string) bool {
	return share == "s1" && uid >= 1001 && uid <= 1003
}
func (fakeDir) Managers(p string) (string, []string, bool) {
	return "iao", []string{"iaa"}, p == "p1"
}
func (fakeDir) Active(u string) bool { return u != "gone" }

// fakeFiles freezes by copying the bytes; tamper changes a frozen copy.
type fakeFiles struct {
	mu     sync.Mutex
	live   map[string][]byte
	frozen map[string]map[string][]byte // pin -> path -> bytes
}

func (f *fakeFiles) Freeze(_ context.Context, share, pin string, paths []string) ([]Frozen, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.frozen[pin]; ok {
		return nil, errors.New("pin exists")
	}
	m := map[string][]byte{}
	var out []Frozen
	for _, p := range paths {
		b, ok := f.live[p]
		if !ok {
			return nil, fmt.Errorf("%w: no file %s", ErrInvalid, p)
		}
		m[p] = bytes.Clone(b)
		out = append(out, Frozen{Path: p, Size: int64(len(b)), Objects: []string{"obj-" + p}, Content: []byte(pin + "|" + p)})
	}
	f.frozen[pin] = m
	return out, nil
}

func (f *fakeFiles) Open(_ context.Context, share string, fr Frozen) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pin, p, _ := strings.Cut(string(fr.Content), "|")
	b, ok := f.frozen[pin][p]
	if !ok {
		return nil, errors.New("objects gone")
	}
	return io.NopCloser(bytes.NewReader(bytes.Clone(b))), nil
}

func (f *fakeFiles) Unfreeze(_ context.Context, pin string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.frozen, pin)
	return nil
}

func (f *fakeFiles) Pins(_ context.Context, prefix string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.frozen {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out, nil
}

type markerScanner struct{}

func (markerScanner) Scan(_ context.Context, size int64, r io.Reader) (scan.Verdict, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return scan.Verdict{}, err
	}
	if bytes.Contains(b, []byte("EVIL")) {
		return scan.Verdict{Result: scan.Infected, Signature: "Test.Evil"}, nil
	}
	return scan.Verdict{Result: scan.Clean}, nil
}

type auditLog struct {
	mu sync.Mutex
	e  []audit.Entry
}

func (a *auditLog) Append(_ context.Context, e audit.Entry, _ audit.Durability) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.e = append(a.e, e)
	return audit.Record{}, nil
}

func (a *auditLog) has(action, result string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.e {
		if e.Action == action && e.Result == result {
			n++
		}
	}
	return n
}

type env struct {
	s     *Store
	files *fakeFiles
	aud   *auditLog
	now   time.Time
}

var (
	ctx       = context.Background()
	requester = Who{UID: 1001, User: "res"}
	iao       = Who{UID: 1002, User: "iao"}
	iaa       = Who{UID: 1003, User: "iaa"}
	outsider  = Who{UID: 1009, User: "out"}
	operator  = Who{UID: 0, Operator: true}
)

func newTestEnv(t *testing.T) *env {
	e := &env{files: &fakeFiles{live: map[string][]byte{"out/table.csv": []byte("a,b\n1,2\n"), "out/fig.png": []byte("PNG..."), "bad.bin": []byte("xxEVILxx")},
		frozen: map[string]map[string][]byte{}}, aud: &auditLog{}, now: time.Unix(1_900_000_000, 0)}
	m, err := metrics.NewAirlock(metrics.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e.s = New(kv.NewMem(), e.aud, fakeDir{}, e.files, markerScanner{}, Options{Now: func() time.Time { return e.now }, Metrics: m})
	return e
}

func TestEgressLifecycle(t *testing.T) {
	e := newTestEnv(t)
	r, err := e.s.Create(ctx, requester, "s1", []string{"out/table.csv", "/out/fig.png"}, "paper tables", false)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Submitted || r.K != 2 || r.Manifest == "" || len(r.Files) != 2 || r.Files[0].SHA256 == "" || r.Files[1].Path != "out/fig.png" {
		t.Fatalf("submitted %+v", r)
	}
	// A write after submission changes nothing of the request.
	e.files.live["out/table.csv"] = []byte("changed")

	if _, err := e.s.Approve(ctx, requester, r.ID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := e.s.Approve(ctx, outsider, r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("outsider approval: %v", err)
	}
	if _, err := e.s.Approve(ctx, operator, r.ID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("operator approval: %v", err)
	}
	if _, err := e.s.Download(ctx, requester, r.ID, 1); !errors.Is(err, ErrState) {
		t.Fatalf("download before approval: %v", err)
	}
	r, err = e.s.Approve(ctx, iao, r.ID)
	if err != nil || r.State != InReview {
		t.Fatalf("first approval: %v %v", r, err)
	}
	if _, err := e.s.Approve(ctx, iao, r.ID); !errors.Is(err, ErrState) {
		t.Fatalf("second approval by the same person: %v", err)
	}
	r, err = e.s.Approve(ctx, iaa, r.ID)
	if err != nil || r.State != Approved || !r.Expires.Equal(e.now.Add(DefaultWindow).UTC()) {
		t.Fatalf("second approval: %+v %v", r, err)
	}
	if _, err := e.s.Download(ctx, iao, r.ID, 1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("download by a reviewer: %v", err)
	}
	d, err := e.s.Download(ctx, requester, r.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(d.Body)
	if err != nil || string(got) != "a,b\n1,2\n" || d.Name != "table.csv" {
		t.Fatalf("downloaded %q, %v", got, err)
	}
	r, _, _ = e.s.Get(ctx, requester, r.ID)
	if r.State != Released || r.Downloads != 1 {
		t.Fatalf("after download: %+v", r)
	}
	if _, err := e.s.Revoke(ctx, iao, r.ID, "oops"); !errors.Is(err, ErrState) {
		t.Fatalf("revoke after download: %v", err)
	}
	// Tampered frozen bytes fail the download before a byte leaves.
	e.files.frozen[pinName(r.ID)]["out/fig.png"] = []byte("PNG!!!")
	if _, err := e.s.Download(ctx, requester, r.ID, 2); !errors.Is(err, ErrChanged) {
		t.Fatalf("tampered download: %v", err)
	}
	// The window ends: no more downloads, and the frozen objects go.
	e.now = e.now.Add(DefaultWindow + time.Minute)
	if _, err := e.s.Download(ctx, requester, r.ID, 1); !errors.Is(err, ErrState) {
		t.Fatalf("download after the window: %v", err)
	}
	if n, err := e.s.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	if pins, _ := e.files.Pins(ctx, pinPrefix); len(pins) != 0 {
		t.Fatalf("pins left: %v", pins)
	}
	for _, a := range []string{"egress.submit", "egress.approve", "egress.download", "egress.close"} {
		if e.aud.has(a, "ok") == 0 {
			t.Errorf("no %s record", a)
		}
	}
	if e.aud.has("egress.approve", "denied") != 4 { // self, outsider, operator, twice
		t.Errorf("refused approvals not all audited: %d", e.aud.has("egress.approve", "denied"))
	}
}

func TestEgressEnds(t *testing.T) {
	e := newTestEnv(t)
	// Infected files never get a request.
	if _, err := e.s.Create(ctx, requester, "s1", []string{"bad.bin"}, "x", false); !errors.Is(err, ErrScan) {
		t.Fatalf("infected: %v", err)
	}
	if pins, _ := e.files.Pins(ctx, pinPrefix); len(pins) != 0 {
		t.Fatalf("a refused submission kept its pin: %v", pins)
	}
	for _, bad := range []struct {
		who   Who
		share string
		paths []string
		why   string
		want  error
	}{
		{outsider, "s1", []string{"out/fig.png"}, "x", ErrForbidden},
		{requester, "s2", []string{"out/fig.png"}, "x", ErrForbidden},
		{requester, "s1", []string{"out/fig.png"}, " ", ErrInvalid},
		{requester, "s1", nil, "x", ErrInvalid},
		{requester, "s1", []string{"a", "/a"}, "x", ErrInvalid},
		{requester, "s1", []string{"nope"}, "x", ErrInvalid},
	} {
		if _, err := e.s.Create(ctx, bad.who, bad.share, bad.paths, bad.why, false); !errors.Is(err, bad.want) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}

	// Draft, submit, reject.
	r, err := e.s.Create(ctx, requester, "s1", []string{"out/fig.png"}, "figure", true)
	if err != nil || r.State != Draft {
		t.Fatal(r, err)
	}
	if _, err := e.s.Submit(ctx, iao, r.ID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("submit by another: %v", err)
	}
	if r, err = e.s.Submit(ctx, requester, r.ID); err != nil || r.State != Submitted {
		t.Fatal(r, err)
	}
	if _, err := e.s.Reject(ctx, iao, r.ID, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reject without reason: %v", err)
	}
	if _, err := e.s.Reject(ctx, requester, r.ID, "no"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("reject by the requester: %v", err)
	}
	if r, err = e.s.Reject(ctx, iaa, r.ID, "identifiable"); err != nil || r.State != Rejected || !r.Unpinned {
		t.Fatal(r, err)
	}

	// Approved, then revoked.
	r, _ = e.s.Create(ctx, requester, "s1", []string{"out/fig.png"}, "again", false)
	e.s.Approve(ctx, iao, r.ID)
	e.s.Approve(ctx, iaa, r.ID)
	if r, err = e.s.Revoke(ctx, operator, r.ID, "second thoughts"); err != nil || r.State != Revoked {
		t.Fatal(r, err)
	}
	if _, err := e.s.Download(ctx, requester, r.ID, 1); !errors.Is(err, ErrState) {
		t.Fatalf("download after revoke: %v", err)
	}

	// Cancelled by its requester only.
	r, _ = e.s.Create(ctx, requester, "s1", []string{"out/fig.png"}, "third", false)
	if _, err := e.s.Cancel(ctx, iao, r.ID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("cancel by another: %v", err)
	}
	if r, err = e.s.Cancel(ctx, requester, r.ID); err != nil || r.State != Cancelled {
		t.Fatal(r, err)
	}

	// Approved and never downloaded: expired.
	r, _ = e.s.Create(ctx, requester, "s1", []string{"out/fig.png"}, "fourth", false)
	e.s.Approve(ctx, iao, r.ID)
	e.s.Approve(ctx, iaa, r.ID)
	e.now = e.now.Add(DefaultWindow)
	if n, err := e.s.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	r, earlier, _ := e.s.Get(ctx, iao, r.ID)
	if r.State != Expired || len(earlier) != 3 {
		t.Fatalf("expired %+v, earlier %d", r, len(earlier))
	}
	if pins, _ := e.files.Pins(ctx, pinPrefix); len(pins) != 0 {
		t.Fatalf("pins left: %v", pins)
	}
	list, _ := e.s.List(ctx, outsider)
	if len(list) != 0 {
		t.Fatalf("an outsider lists %d requests", len(list))
	}
	list, _ = e.s.List(ctx, iaa)
	if len(list) != 4 {
		t.Fatalf("a reviewer lists %d requests", len(list))
	}
}

func TestEgressPolicy(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.s.SetPolicy(ctx, iaa, "p1", 3, nil, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("policy by an IAA: %v", err)
	}
	if _, err := e.s.SetPolicy(ctx, iao, "p1", 1, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("k of 1: %v", err)
	}
	// With k 3 and only two reviewers besides the requester... the IAO requests.
	p, err := e.s.SetPolicy(ctx, iao, "p1", 3, []string{"res"}, nil)
	if err != nil || p.K != 3 || !slices.Equal(p.Reviewers, []string{"res"}) {
		t.Fatal(p, err)
	}
	if _, err := e.s.Create(ctx, iaa, "s1", []string{"out/fig.png"}, "x", false); !errors.Is(err, ErrState) {
		t.Fatalf("k larger than the reviewers besides the requester: %v", err)
	}
	// The requester is never one of the k, even as a named reviewer.
	if _, err := e.s.SetPolicy(ctx, operator, "p1", 2, nil, nil); err != nil {
		t.Fatal(err)
	}
	r, err := e.s.Create(ctx, requester, "s1", []string{"out/fig.png"}, "x", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Approve(ctx, requester, r.ID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a reviewer approving their own request: %v", err)
	}
	if _, err := e.s.View(ctx, outsider, r.ID, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("view by an outsider: %v", err)
	}
	v, err := e.s.View(ctx, iao, r.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(v.Body); string(b) != "PNG..." {
		t.Fatalf("review view: %q", b)
	}
	if e.aud.has("egress.view", "ok") != 1 {
		t.Fatal("view not audited")
	}
}

// The review view is for reviewers. Its requester is refused: through the portal it would
// put the frozen bytes in a browser outside the haven before any approval, and it needs no
// membership of the share, so a requester removed from the share would keep reading.
func TestViewNotForRequester(t *testing.T) {
	e := newTestEnv(t)
	r, err := e.s.Create(ctx, requester, "s1", []string{"out/table.csv"}, "x", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.View(ctx, requester, r.ID, 1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("view by the requester before any approval: %v", err)
	}
	if e.aud.has("egress.view", "denied") != 1 {
		t.Fatal("the refused view is not audited")
	}
	// Not even when the requester reviews the project's other requests.
	if _, err := e.s.SetPolicy(ctx, iao, "p1", 2, []string{"res"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.View(ctx, requester, r.ID, 1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("view of their own request by a requester who is a reviewer: %v", err)
	}
	if _, err := e.s.View(ctx, iaa, r.ID, 1); err != nil {
		t.Fatalf("view by a reviewer: %v", err)
	}
}

// Show gives the project's earlier requests to its reviewers (to spot differencing), never
// to a requester: they may name files of shares of the project the requester is no member
// of, with their reasons and hashes.
func TestEarlierOnlyForReviewers(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.s.SetPolicy(ctx, iao, "p1", 2, []string{"rev2"}, nil); err != nil {
		t.Fatal(err)
	}
	other, err := e.s.Create(ctx, iaa, "s1", []string{"out/fig.png"}, "the IAA's own figures", false)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := e.s.Create(ctx, requester, "s1", []string{"out/table.csv"}, "x", true)
	if err != nil {
		t.Fatal(err)
	}
	_, earlier, err := e.s.Get(ctx, requester, mine.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(earlier) != 0 {
		t.Fatalf("the requester sees %d other requests of the project (first %s)", len(earlier), earlier[0].ID)
	}
	_, earlier, err = e.s.Get(ctx, iao, mine.ID)
	if err != nil || len(earlier) != 1 || earlier[0].ID != other.ID {
		t.Fatalf("a reviewer's earlier requests: %v %v", earlier, err)
	}
}
