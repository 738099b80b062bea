package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"dsh/scan/clamdtest"
)

var quarantineID = regexp.MustCompile(`\((q[0-9a-f]{10})\)`)

// The ingress gate with a real clamd: clean files pass, the test signature is found and
// quarantined, release needs two different people, oversized files are held, and a stopped
// clamd blocks uploads.
func TestAirlockIngress(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	// clamd's own limit (2 MiB) sits below the daemon's (3 MiB): files in between are sent
	// and clamd stops them; files above are held without being sent.
	c := startClamd(t, clamdtest.Options{StreamMaxLength: 2 << 20})
	a := newArrivalsEnv(t, "--clamd", c.Socket, "--clamd-max-size", itoa(3<<20), "--clamd-wait", "2s")
	clean := a.localFile(t, "clean.bin", 1_500_000)
	a.dsh(uidAlice, "", "upload", clean).ok(t)

	// The sample, embedded in an ordinary file, is found and quarantined.
	body := append(bytes.Repeat([]byte("ordinary text\n"), 10000), clamdtest.Sample()...)
	evil := filepath.Join(a.dir, "report.txt")
	if err := os.WriteFile(evil, body, 0o644); err != nil {
		t.Fatal(err)
	}
	r := a.dsh(uidAlice, "", "upload", evil).fails(t, 2, "stopped by the malware gate: infected: "+clamdtest.Found)
	m := quarantineID.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no quarantine ID in %q", r.stderr)
	}
	qid := m[1]
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "clean.bin\n" {
		t.Fatalf("alice's Arrivals after the infected upload: %q", got)
	}
	a.shFails(t, uidAlice, "ls "+a.Q+"/alice/.quarantine", "No such file")
	a.shFails(t, uidAlice, "cat "+a.Q+"/alice/.quarantine/"+qid, "No such file")
	list := a.dsh(0, "", "quarantine", "list").ok(t).stdout
	if !strings.Contains(list, qid) || !strings.Contains(list, "report.txt") || !strings.Contains(list, clamdtest.Found) {
		t.Fatalf("quarantine list: %q", list)
	}
	// Neither the uploader nor a member who manages nothing sees it.
	for _, uid := range []int{uidAlice, uidBob} {
		if got := a.dsh(uid, "", "quarantine", "list").ok(t).stdout; strings.Contains(got, qid) {
			t.Fatalf("uid %d sees the quarantine: %q", uid, got)
		}
	}
	// Kept encrypted: the sample is nowhere in the data folder.
	a.shFails(t, 0, "grep -rl '"+string(clamdtest.Sample())+"' "+a.data, "")

	// Release: the operator asks, asking again does not count, the uploader cannot; the IAO
	// of a project alice belongs to is the second person.
	if out := a.dsh(0, "", "quarantine", "release", qid).ok(t).stdout; !strings.Contains(out, "(1 of 2)") {
		t.Fatalf("first release: %q", out)
	}
	a.dsh(0, "", "quarantine", "release", qid).fails(t, 2, "second, different person")
	a.dsh(uidAlice, "", "quarantine", "release", qid).fails(t, 2, "no such quarantined file")
	a.dsh(uidBob, "", "quarantine", "release", qid).fails(t, 2, "no such quarantined file")
	if out := a.iao.as("quarantine", "release", qid).ok(t).stdout; !strings.Contains(out, "released "+qid) {
		t.Fatalf("second release: %q", out)
	}
	if got := a.shOK(t, uidAlice, "cmp "+evil+" "+a.Q+"/alice/report.txt && echo same"); got != "same\n" {
		t.Fatalf("released file: %q", got)
	}

	// Too large to scan: held, never passed, whether clamd or the daemon says so.
	for _, n := range []int{2<<20 + 100_000, 4 << 20} {
		big := a.localFile(t, "big-"+itoa(n)+".bin", n)
		a.dsh(uidAlice, "", "upload", big).fails(t, 2, "held for review")
	}
	held := a.dsh(0, "", "quarantine", "list").ok(t).stdout
	ids := regexp.MustCompile(`(?m)^(q[0-9a-f]{10})\s`).FindAllStringSubmatch(held, -1)
	if len(ids) != 2 || !strings.Contains(held, "StreamMaxLength") || !strings.Contains(held, "over the scanner's limit") {
		t.Fatalf("held files: %q", held)
	}
	a.iao.as("quarantine", "delete", ids[0][1]).fails(t, 2, "operator")
	a.dsh(0, "", "quarantine", "delete", ids[0][1]).ok(t)
	if got := a.dsh(0, "", "quarantine", "list").ok(t).stdout; strings.Contains(got, ids[0][1]) {
		t.Fatalf("deleted file still listed: %q", got)
	}

	// clamd stopped: the upload waits, then fails; nothing arrives. Back: it passes again.
	c.Stop()
	start := time.Now()
	a.dsh(uidAlice, "", "upload", clean).fails(t, 2, "malware scanner unavailable")
	if time.Since(start) < 2*time.Second {
		t.Fatalf("the upload did not wait for clamd (%v)", time.Since(start))
	}
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "clean.bin\nreport.txt\n" {
		t.Fatalf("Arrivals with clamd stopped: %q", got)
	}
	c2, err := clamdtest.Start(t.Context(), c.Dir, clamdtest.Options{StreamMaxLength: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	if out := a.dsh(uidAlice, "", "upload", clean).ok(t).stdout; !strings.Contains(out, "clean (1).bin") {
		t.Fatalf("upload once clamd is back: %q", out)
	}

	audit := a.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{
		`arrivals.quarantine "arrivals:alice/report.txt" denied`, clamdtest.Found,
		`quarantine.release "arrivals:alice/report.txt (` + qid + `)" pending`,
		`quarantine.release "arrivals:alice/report.txt (` + qid + `)" ok`,
		`quarantine.delete`, `arrivals.scan "arrivals:alice/clean.bin" error`,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	a.dsh(0, "", "audit", "verify").ok(t)
	s := a.scrape()
	for name, want := range map[string]string{
		`dsh_ingress_scans_total{result="infected"}`: "1",
		`dsh_ingress_scans_total{result="held"}`:     "2",
		`dsh_ingress_scans_total{result="error"}`:    "1",
		`dsh_quarantine_files`:                       "1",
	} {
		if got := metricValue(t, s, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
}

var requestID = regexp.MustCompile(`(?m)^request (e[0-9a-f]{10}): (.+)$`)

// request asks for the release of paths of s1 as p and returns the request's ID.
func request(t *testing.T, p *person, reason string, paths ...string) string {
	t.Helper()
	out := p.as(append([]string{"egress", "request", "s1", "--reason", reason}, paths...)...).ok(t).stdout
	m := requestID.FindStringSubmatch(out)
	if m == nil || m[2] != "submitted" {
		t.Fatalf("egress request said %q", out)
	}
	return m[1]
}

// Egress end to end: request, two approvals by two other people, a self-approval refused,
// a write after submission not released, a tampered object failing the download, revocation,
// expiry, and the audit chain with every transition.
func TestAirlockEgress(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	a := newArrivalsEnv(t, "--egress-window", "25s")
	S := a.S
	// Reviewers of p1: its IAO and bob as IAA. The IAO is also a member, to request.
	a.iao.as("project", "iaa", "add", "p1", "bob").ok(t)
	a.iao.as("share", "add", "s1", "iao").ok(t)
	// A third reviewer, so that the IAO's own request can still reach k = 2 without them.
	if out := a.iao.as("egress", "policy", "p1", "--add-reviewer", "dave").ok(t).stdout; !strings.Contains(out, "2 approvals from dave, iao, bob") && !strings.Contains(out, "2 approvals from bob, dave, iao") {
		t.Fatalf("policy: %q", out)
	}
	a.alice.as("egress", "policy", "p1", "--approvals", "1").fails(t, 2, "IAO")
	a.shOK(t, uidAlice, "mkdir -p "+S+"/s1/results && printf 'site,n\\nA,12\\nB,40\\n' > "+S+"/s1/results/table.csv && head -c 300000 /dev/urandom > "+S+"/s1/results/fig.png")
	orig := filepath.Join(a.dir, "table.orig")
	if err := os.WriteFile(orig, []byte("site,n\nA,12\nB,40\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha256File(t, orig)

	// Only members request; a reason is needed.
	a.dsh(uidDave, "", "egress", "request", "s1", "results/table.csv", "--reason", "x").fails(t, 2, "")
	a.bob.as("egress", "request", "s1", "results/table.csv", "--reason", "x").fails(t, 2, "member of share s1")
	a.alice.as("egress", "request", "s1", "results/table.csv").fails(t, 1, "--reason")
	a.alice.as("egress", "request", "s1", "results/nope.csv", "--reason", "x").fails(t, 2, "no such file")

	id := request(t, a.alice, "tables for the paper", "results/table.csv", "results/fig.png")
	show := a.alice.as("egress", "show", id).ok(t).stdout
	if !strings.Contains(show, "sha256 "+want) || !strings.Contains(show, "clean") || !strings.Contains(show, "tables for the paper") {
		t.Fatalf("show: %q", show)
	}
	// A write after submission does not change what was requested.
	a.shOK(t, uidAlice, "echo 'C,99' >> "+S+"/s1/results/table.csv")

	// Reviewers see the frozen bytes without being members (bob is not); others do not.
	if got := a.bob.as("egress", "view", id, "1").ok(t).stdout; got != "site,n\nA,12\nB,40\n" {
		t.Fatalf("review view: %q", got)
	}
	a.dsh(uidDave, "", "egress", "view", id, "1").fails(t, 2, "")
	a.dsh(uidErin, "", "egress", "show", id).fails(t, 2, "")
	// Nor does the requester: the review view is no way out before the approvals.
	a.alice.as("egress", "view", id, "1").fails(t, 2, "requester does not view")

	// The requester never approves; outsiders cannot; two reviewers do.
	a.alice.as("egress", "approve", id).fails(t, 2, "never approves their own")
	a.alice.as("egress", "download", id, "--out", a.dir).fails(t, 2, "is submitted")
	if out := a.iao.as("egress", "approve", id).ok(t).stdout; !strings.Contains(out, "in review (1 of 2 approvals)") {
		t.Fatalf("first approval: %q", out)
	}
	a.iao.as("egress", "approve", id).fails(t, 2, "already approved")
	if out := a.bob.as("egress", "approve", id).ok(t).stdout; !strings.Contains(out, "approved (2 of 2 approvals)") {
		t.Fatalf("second approval: %q", out)
	}
	// Only the requester downloads: exactly the approved bytes.
	out := filepath.Join(a.dir, "out-alice")
	a.shOK(t, 0, "mkdir -m 777 "+out)
	a.bob.as("egress", "download", id, "--out", out).fails(t, 2, "only the requester")
	got := a.alice.as("egress", "download", id, "--out", out).ok(t).stdout
	if !strings.Contains(got, "sha256 "+want) {
		t.Fatalf("download said %q", got)
	}
	if sha256File(t, filepath.Join(out, "table.csv")) != want {
		t.Fatal("downloaded bytes are not the approved ones")
	}
	if s := a.alice.as("egress", "show", id).ok(t).stdout; !strings.Contains(s, "state     released") {
		t.Fatalf("after download: %q", s)
	}
	a.iao.as("egress", "revoke", id, "--reason", "late").fails(t, 2, "downloaded")

	// The IAO as requester is not one of the k either.
	id2 := request(t, a.iao, "IAO's own figure", "results/fig.png")
	a.iao.as("egress", "approve", id2).fails(t, 2, "never approves their own")
	a.bob.as("egress", "reject", id2).fails(t, 1, "--reason")
	if s := a.bob.as("egress", "reject", id2, "--reason", "small cells").ok(t).stdout; !strings.Contains(s, "rejected") {
		t.Fatalf("reject: %q", s)
	}

	// Revoked before download.
	id3 := request(t, a.alice, "again", "results/table.csv")
	a.iao.as("egress", "approve", id3).ok(t)
	a.bob.as("egress", "approve", id3).ok(t)
	a.iao.as("egress", "revoke", id3, "--reason", "wrong table").ok(t)
	a.alice.as("egress", "download", id3, "--out", out).fails(t, 2, "revoked")

	// A tampered object under an approved request fails the download; nothing is kept.
	id4 := request(t, a.alice, "figure", "results/fig.png")
	a.iao.as("egress", "approve", id4).ok(t)
	a.bob.as("egress", "approve", id4).ok(t)
	obj := objectOf(t, a, id4)
	a.shOK(t, 0, "printf 'X' | dd of="+obj+" bs=1 seek=2000 conv=notrunc status=none")
	out4 := filepath.Join(a.dir, "out-tampered")
	a.shOK(t, 0, "mkdir -m 777 "+out4)
	a.alice.as("egress", "download", id4, "--out", out4).fails(t, 2, "differ")
	if got := a.shOK(t, 0, "ls -A "+out4); got != "" {
		t.Fatalf("a failed download left %q", got)
	}

	// Approved and not downloaded within the window: expired.
	id5 := request(t, a.alice, "late", "results/table.csv")
	a.iao.as("egress", "approve", id5).ok(t)
	a.bob.as("egress", "approve", id5).ok(t)
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(a.alice.as("egress", "show", id5).ok(t).stdout, "state     expired") {
		if time.Now().After(deadline) {
			t.Fatal("the approval did not expire")
		}
		time.Sleep(time.Second)
	}
	a.alice.as("egress", "download", id5, "--out", out).fails(t, 2, "expired")

	// What left before shows in the project's history, for the reviewers.
	if s := a.bob.as("egress", "show", id5).ok(t).stdout; !strings.Contains(s, id+"  ") || !strings.Contains(s, "released") {
		t.Fatalf("earlier requests: %q", s)
	}
	// Not for a requester who does not review: they may name other shares' files.
	if s := a.alice.as("egress", "show", id5).ok(t).stdout; strings.Contains(s, id+"  ") || strings.Contains(s, "earlier requests") {
		t.Fatalf("the requester sees the project's other requests: %q", s)
	}

	// Garbage on the socket: malformed IDs, file numbers and bodies are refused cleanly.
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v1/egress/show?id=../../acl", "", 404},
		{"GET", "/v1/egress/show?id=" + strings.ToUpper(id), "", 404},
		{"GET", "/v1/egress/download?id=" + id + "&file=abc", "", 400},
		{"GET", "/v1/egress/download?id=" + id + "&file=99", "", 403},
		{"GET", "/v1/egress/view?id=" + id + "&file=-1", "", 403}, // the operator never sees files
		{"POST", "/v1/egress/approve", `{"id":"` + id + `","extra":1}`, 400},
		{"POST", "/v1/egress/create", `{"share":"s1","paths":"x"}`, 400},
		{"POST", "/v1/quarantine/release", `{"id":"../../x"}`, 404},
	} {
		if code, body := a.rawRequest(c.method, c.path, c.body); code != c.status {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.status)
		}
	}

	a.dsh(0, "", "audit", "verify").ok(t)
	audit := a.dsh(0, "", "audit", "show").ok(t).stdout
	for _, want := range []string{
		`egress.submit "egress ` + id, "sha256 " + want,
		`egress.approve "egress ` + id + ` share s1" ok`, "approval 2 of 2",
		`egress.approve "egress ` + id2 + ` share s1" denied`,
		`egress.download "egress ` + id + ` share s1" ok`,
		`egress.reject "egress ` + id2, `egress.revoke "egress ` + id3,
		`egress.download "egress ` + id4 + ` share s1" error`,
		`egress.expire "egress ` + id5, `egress.view "egress ` + id,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	s := a.scrape()
	for _, st := range []string{"submitted", "in_review", "approved", "released", "rejected", "revoked", "expired"} {
		if metricValue(t, s, `dsh_egress_requests_total{state="`+st+`"}`) == "0" {
			t.Errorf("no request counted entering %s", st)
		}
	}
	if metricValue(t, s, `dsh_egress_downloads_total{result="error"}`) == "0" {
		t.Error("the failed download is not counted")
	}
}

// objectOf returns the path on disk of the first object of file 1 of request id.
func objectOf(t *testing.T, a *arrivalsEnv, id string) string {
	t.Helper()
	code, body := a.rawRequest("GET", "/v1/egress/show?id="+id, "")
	if code != 200 {
		t.Fatalf("show as root: %d %s", code, body)
	}
	m := regexp.MustCompile(`"objects":\["([0-9a-f]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no objects in %s", body)
	}
	return filepath.Join(a.data, "blobs", "objects", m[1][:2], m[1])
}

// TestAirlockNotices: with a mail relay, the reviewers hear of a submitted request (never
// its requester, never the files' names) and the requester of its approval.
func TestAirlockNotices(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	var rl *relay
	a := newArrivalsEnvWith(t, func(e *env) []string {
		rl = e.startRelay(t)
		return rl.args
	})
	a.iao.as("project", "iaa", "add", "p1", "bob").ok(t)
	a.shOK(t, uidAlice, "printf 'site,n\\nA,12\\n' > "+a.S+"/s1/secret-cohort-table.csv")
	id := request(t, a.alice, "a table", "secret-cohort-table.csv")
	for _, reviewer := range []string{"iao", "bob"} {
		m := rl.find(t, reviewer+"@example.ac.uk", "An egress request waits for your review")
		if !strings.Contains(m.Body(), "dsh egress show "+id) || !strings.Contains(m.Body(), "project p1") || strings.Contains(m.Body(), "secret-cohort-table") {
			t.Fatalf("review notice to %s:\n%s", reviewer, m.Body())
		}
	}
	a.iao.as("egress", "approve", id).ok(t)
	a.bob.as("egress", "approve", id).ok(t)
	m := rl.find(t, "alice@example.ac.uk", "Your egress request was approved")
	if !strings.Contains(m.Body(), "dsh egress download "+id) || strings.Contains(m.Body(), "secret-cohort-table") {
		t.Fatalf("approval notice:\n%s", m.Body())
	}
	for _, msg := range rl.Messages() {
		if msg.To[0] == "alice@example.ac.uk" && strings.Contains(msg.Header("Subject"), "waits for your review") {
			t.Fatal("the requester was asked to review their own request")
		}
	}
}
