package mail

import (
	"strings"
	"testing"
	"time"

	"dsh/metrics"
)

// TestNoticesSayWhatAndNothingSecret: every notice names the user, what happened, when and
// from where, and carries no link with a code; the token link carries the code in the
// portal's fragment (never in a query) and says the token is not in the message.
func TestNoticesSayWhatAndNothingSecret(t *testing.T) {
	c := Composer{PortalURL: "https://dsh.example.ac.uk/"}
	at := time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)
	kinds := map[NoticeKind]string{
		NoticeLockout: "locked", NoticeICE: "emergency code", NoticeTokenAdded: "new soft token", NoticeTokenRevoked: "revoked",
		NoticePIN: "new PIN", NoticePassword: "password was changed", NoticeQuestions: "security questions",
		NoticeHardwareAdded: "set its PIN", NoticeHardwareTaken: "no longer assigned", NoticeShareAdded: "read-only member",
		NoticeShareRemoved: "no longer a member", NoticeEgressReview: "waits for your review", NoticeEgressApproved: "was approved",
		NoticeEgressRejected: "was rejected", NoticeEgressRevoked: "can no longer be downloaded",
	}
	for k, want := range kinds {
		m, ok := c.Notice("alice@example.ac.uk", Notice{Kind: k, User: "alice", Object: "OATH0001", Detail: "read-only", Until: at.Add(time.Hour), Via: "the portal (from 192.0.2.7)", At: at})
		if !ok {
			t.Fatalf("%s: no message", k)
		}
		if m.Kind != metrics.MailNotice || m.User != "alice" || m.To != "alice@example.ac.uk" || !strings.HasPrefix(m.Subject, "DSH - ") {
			t.Fatalf("%s: %+v", k, m)
		}
		for _, w := range []string{"Hello alice", want, "Wed 4 Mar 2026 10:30 UTC", "the portal (from 192.0.2.7)", "never contains your password"} {
			if !strings.Contains(m.Body, w) {
				t.Errorf("%s: body lacks %q:\n%s", k, w, m.Body)
			}
		}
		if strings.Contains(m.Body, "code=") || strings.Contains(m.Body, "otpauth") {
			t.Errorf("%s: body carries a code or secret:\n%s", k, m.Body)
		}
	}
	if _, ok := c.Notice("a@b.example", Notice{Kind: "unknown"}); ok {
		t.Fatal("a message for an unknown kind")
	}
	link := c.TokenLink("alice@example.ac.uk", "alice", "ABCDEFGHIJKLMNOPQRST", at)
	if link.Subject != "DSH - Your Token (MobileID)" || link.Kind != metrics.MailTokenLink ||
		!strings.Contains(link.Body, "https://dsh.example.ac.uk/claim#user=alice&code=ABCDEFGHIJKLMNOPQRST") ||
		!strings.Contains(link.Body, "does not contain the token") || strings.Contains(link.Body, "?") {
		t.Fatalf("token link:\n%s", link.Body)
	}
	en := c.Enrolment("alice@example.ac.uk", "alice", "ENROLCODE", at)
	if !strings.Contains(en.Body, "dsh enroll --code ENROLCODE") || en.Kind != metrics.MailEnrolment {
		t.Fatalf("enrolment:\n%s", en.Body)
	}
	// Without a portal URL the link falls back to the command line.
	if l := (Composer{}).TokenLink("a@b.example", "alice", "CODE", at); !strings.Contains(l.Body, "dsh token claim --code CODE") {
		t.Fatalf("no portal: %s", l.Body)
	}
}
