package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"dsh/scan/clamdtest"
)

// The airlock in the portal, in headless Chromium: an upload stopped by the malware gate on
// the File Transfer page, and an egress request on the Applications & Data pages from
// submission (requester) through review (the IAO views the frozen file and approves) to the
// download of the approved bytes. Screenshots of every page go to output/screenshots.
func TestAirlockPortal(t *testing.T) {
	a := newArrivalsEnv(t)
	a.iao.as("project", "iaa", "add", "p1", "bob").ok(t)
	a.shOK(t, uidAlice, "mkdir -p "+a.S+"/s1/results && printf 'site,n\\nA,12\\nB,40\\n' > "+a.S+"/s1/results/table.csv")

	alice := a.newBrowser(t, "alice")
	alice.signin("alice", testPassword, testPIN, a.alice.nextCode(t))
	if !alice.signedIn() {
		t.Fatalf("sign-in failed: %s", alice.pageText())
	}

	// The gate on the File Transfer page: the upload fails with the finding, nothing arrives.
	evil := filepath.Join(a.dir, "notes.txt")
	if err := os.WriteFile(evil, append([]byte("meeting notes\n"), clamdtest.Sample()...), 0o644); err != nil {
		t.Fatal(err)
	}
	alice.open("/files")
	alice.pick(evil)
	alice.waitFor("the upload refused", `!!document.querySelector('#uploads li[data-state="failed"]')`, time.Minute)
	if got := alice.text("#uploads"); !strings.Contains(got, "malware gate") || !strings.Contains(got, clamdtest.Found) {
		t.Fatalf("upload status: %q", got)
	}
	alice.shot("upload-stopped-by-the-gate")
	if got := a.shOK(t, uidAlice, "ls -A "+a.Q+"/alice"); got != "" {
		t.Fatalf("an infected upload arrived: %q", got)
	}

	// Requester: a new request.
	alice.open("/egress")
	alice.shot("egress-empty")
	alice.do("choose share", chromedp.SetValue(chromedp.CSS("#share"), "s1"))
	alice.fill("#egress-create", map[string]string{"paths": "results/table.csv", "reason": "Table 1 of the paper"})
	if !strings.Contains(alice.flash(), "submitted") || alice.text("#state") != "submitted" {
		t.Fatalf("after submitting: flash %q state %q\n%s", alice.flash(), alice.text("#state"), alice.pageText())
	}
	id := strings.TrimPrefix(alice.text("h1"), "Request ")
	if !strings.HasPrefix(id, "e") || len(id) != 11 {
		t.Fatalf("request ID %q", id)
	}
	if got := alice.text("#files"); !strings.Contains(got, "results/table.csv") || !strings.Contains(got, "clean") {
		t.Fatalf("files table: %q", got)
	}
	if eval[bool](alice, `!!document.getElementById('approve')`) {
		t.Fatal("the requester is offered an approve button")
	}
	// Nor a view of the frozen bytes: in this browser that would be a release without
	// approval. Asked for anyway, it is refused.
	if eval[bool](alice, `!!document.getElementById('view-1')`) {
		t.Fatal("the requester is offered the review view")
	}
	if st := eval[int](alice, `fetch('/egress/view?id=`+id+`&file=1').then(function(r){return r.status})`); st != 403 {
		t.Fatalf("the requester's review view answered %d", st)
	}
	alice.shot("egress-submitted")
	// Forcing the approval from the requester's own page is refused, and audited.
	csrf := eval[string](alice, `document.querySelector('#cancel-form input[name=csrf]').value`)
	eval[int](alice, `fetch('/egress/action', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'action=approve&id=`+id+`&csrf=`+csrf+`'}).then(function(r){return r.status})`)
	if !strings.Contains(a.dsh(0, "", "audit", "show").ok(t).stdout, `egress.approve "egress `+id+` share s1" denied`) {
		t.Fatal("the forced self-approval is not refused and audited")
	}

	// Reviewer: the request waits for the IAO, who reads the frozen file and approves.
	a.shOK(t, uidAlice, "echo 'C,99' >> "+a.S+"/s1/results/table.csv")
	iao := a.newBrowser(t, "iao")
	iao.signin("iao", testPassword, testPIN, a.iao.nextCode(t))
	iao.open("/egress")
	if got := iao.text("#to-review"); !strings.Contains(got, id) || !strings.Contains(got, "alice") {
		t.Fatalf("waiting for review: %q", got)
	}
	iao.shot("egress-to-review")
	iao.open("/egress/request?id=" + id)
	iao.shot("egress-review")
	iao.open("/egress/view?id=" + id + "&file=1")
	if got := iao.text("#preview"); got != "site,n\nA,12\nB,40\n" {
		t.Fatalf("review view shows %q", got)
	}
	iao.shot("egress-review-view")
	iao.open("/egress/request?id=" + id)
	iao.submit("#approve")
	if !strings.Contains(iao.flash(), "1 of 2 approvals") || iao.text("#state") != "in review" {
		t.Fatalf("after approving: %q, %q", iao.flash(), iao.text("#state"))
	}
	a.bob.as("egress", "approve", id).ok(t)

	// Requester: approved; the download gives exactly the frozen bytes.
	alice.open("/egress/request?id=" + id)
	if alice.text("#state") != "approved" {
		t.Fatalf("state %q", alice.text("#state"))
	}
	alice.shot("egress-approved")
	body := eval[string](alice, `fetch(document.getElementById('download-1').href).then(function(r){return r.text()})`)
	if body != "site,n\nA,12\nB,40\n" {
		t.Fatalf("downloaded %q", body)
	}
	alice.open("/egress")
	if !strings.Contains(alice.text("#my-requests"), "released") {
		t.Fatalf("my requests: %q", alice.text("#my-requests"))
	}
	alice.shot("egress-released")
	// The reviewer cannot download; the page does not even offer it.
	iao.open("/egress/request?id=" + id)
	if eval[bool](iao, `!!document.getElementById('download-1')`) {
		t.Fatal("a reviewer is offered the download")
	}
	status := eval[int](iao, `fetch('/egress/download?id=`+id+`&file=1').then(function(r){return r.status})`)
	if status != 403 {
		t.Fatalf("download by a reviewer: %d", status)
	}
	iao.phone(true)
	iao.open("/egress/request?id=" + id)
	if iao.overflows() {
		t.Fatal("the request page is wider than a phone")
	}
	iao.shot("egress-request-phone")
}
