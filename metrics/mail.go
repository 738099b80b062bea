package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// MailKind is the value of the "kind" label of dsh_mail_messages_total: what a message is.
type MailKind string

// The kinds of message dsh sends. New ones are added here, never passed as free text.
const (
	MailNotice    MailKind = "notice"     // a change of the account its owner is told about
	MailEnrolment MailKind = "enrolment"  // the one-time enrolment code of a new account
	MailTokenLink MailKind = "token_link" // the one-time link to a soft token
	MailTest      MailKind = "test"       // an operator's test message
)

// MailResult is the value of the "result" label of dsh_mail_messages_total.
type MailResult string

// What became of a message, or of one attempt to send it.
const (
	MailQueued  MailResult = "queued"  // written to the outbox
	MailSent    MailResult = "sent"    // the relay took it
	MailRetried MailResult = "retried" // an attempt failed; it is tried again later
	MailDropped MailResult = "dropped" // given up after its last attempt
	MailRefused MailResult = "refused" // not queued: the outbox was full, or no address
)

var (
	mailKinds   = []MailKind{MailNotice, MailEnrolment, MailTokenLink, MailTest}
	mailResults = []MailResult{MailQueued, MailSent, MailRetried, MailDropped, MailRefused}
)

// Mail are the metrics of the outbox: messages by kind and what became of them, and how
// many wait to be sent.
type Mail struct {
	// Outbox is how many messages are waiting in the outbox.
	Outbox prometheus.Gauge

	messages *prometheus.CounterVec
}

// NewMail creates the mail metrics and registers them with reg; on error reg is left as it
// was.
func NewMail(reg prometheus.Registerer) (*Mail, error) {
	m := &Mail{
		Outbox: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "mail_outbox_messages",
			Help: "Messages waiting in the outbox to be sent to the SMTP relay.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "mail_messages_total",
			Help: "E-mail messages by kind and by what became of them (queued, sent, retried, dropped, refused).",
		}, []string{"kind", "result"}),
	}
	if err := reg.Register(m.Outbox); err != nil {
		return nil, fmt.Errorf("metrics: register: %w", err)
	}
	if err := reg.Register(m.messages); err != nil {
		reg.Unregister(m.Outbox)
		return nil, fmt.Errorf("metrics: register: %w", err)
	}
	for _, k := range mailKinds {
		for _, r := range mailResults {
			m.messages.WithLabelValues(string(k), string(r))
		}
	}
	return m, nil
}

// Count counts one message of kind with result. A nil Mail counts nothing.
func (m *Mail) Count(kind MailKind, r MailResult) {
	if m != nil {
		m.messages.WithLabelValues(string(kind), string(r)).Inc()
	}
}

// SetOutbox sets the number of waiting messages. A nil Mail does nothing.
func (m *Mail) SetOutbox(n int) {
	if m != nil {
		m.Outbox.Set(float64(n))
	}
}
