package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMailLintCleanAndBounded(t *testing.T) {
	reg := NewRegistry()
	m, err := NewMail(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Count(MailNotice, MailSent)
	m.SetOutbox(3)
	var none *Mail
	none.Count(MailTest, MailDropped) // counts nothing, and does not panic
	none.SetOutbox(1)
	if got := testutil.ToFloat64(m.messages.WithLabelValues(string(MailNotice), string(MailSent))); got != 1 {
		t.Fatalf("notice sent = %v", got)
	}
	if got := testutil.ToFloat64(m.Outbox); got != 3 {
		t.Fatalf("outbox = %v", got)
	}
	problems, err := testutil.GatherAndLint(reg, "dsh_mail_messages_total", "dsh_mail_outbox_messages")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Every series exists from the start, and no others can: kinds times results.
	if n := testutil.CollectAndCount(m.messages); n != len(mailKinds)*len(mailResults) {
		t.Fatalf("%d series of dsh_mail_messages_total", n)
	}
	if _, err := NewMail(reg); err == nil {
		t.Fatal("registered twice")
	}
}
