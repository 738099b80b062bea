// Package mail sends dsh's e-mail: notices to account owners, enrolment codes and the
// one-time links to soft tokens, through the SMTP relay the operator configures. It owns
// the outbox (messages persisted in the key-value store and retried with backoff, so that
// a relay that is down loses nothing and delays nobody) and the wording of every message.
// It must never put a password, PIN, token secret, otpauth URL or any code other than a
// one-time enrolment code or link in a message, and never log a message body or the
// relay's password.
package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"dsh/metrics"
)

// Message is one e-mail.
type Message struct {
	To      string           `json:"to"`
	Subject string           `json:"subject"`
	Body    string           `json:"body"`
	Kind    metrics.MailKind `json:"kind"`
	// User is the account the message is for, for the audit log (empty for a test).
	User string `json:"user,omitempty"`
}

// Sender delivers one message now, or fails.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// TLSMode is how the connection to the relay is protected.
type TLSMode string

// The TLS modes of a relay.
const (
	// StartTLS connects in plain text and requires STARTTLS before anything is sent (port
	// 587, the default).
	StartTLS TLSMode = "starttls"
	// ImplicitTLS connects with TLS from the first byte (port 465).
	ImplicitTLS TLSMode = "tls"
	// NoTLS sends in plain text: only for a relay on the same host (loopback).
	NoTLS TLSMode = "none"
)

// Relay is the operator's SMTP relay.
type Relay struct {
	// Addr is host:port; without a port, 587 (465 for ImplicitTLS).
	Addr string
	TLS  TLSMode
	// Username and Password authenticate to the relay (SMTP AUTH); no username means none.
	// The password is read from a file, never a flag.
	Username string
	Password []byte
	// From is the sender address, e.g. "DSH <dsh@haven.example.ac.uk>".
	From string
	// RootCAs verifies the relay's certificate; nil means the system's.
	RootCAs *x509.CertPool
	// Timeout bounds each step of talking to the relay; zero means 30 s.
	Timeout time.Duration
}

// ErrConfig is returned for a relay configuration that cannot work.
var ErrConfig = errors.New("mail relay")

// SMTP sends through a Relay with go-mail.
type SMTP struct {
	relay Relay
	host  string
	port  int
}

// NewSMTP checks r and returns a Sender over it.
func NewSMTP(r Relay) (*SMTP, error) {
	if r.TLS == "" {
		r.TLS = StartTLS
	}
	if r.Timeout <= 0 {
		r.Timeout = 30 * time.Second
	}
	host, portS, err := net.SplitHostPort(r.Addr)
	if err != nil {
		host, portS = r.Addr, ""
	}
	if host == "" {
		return nil, fmt.Errorf("%w: no host in %q", ErrConfig, r.Addr)
	}
	port := 587
	switch r.TLS {
	case ImplicitTLS:
		port = 465
	case StartTLS:
	case NoTLS:
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("%w: TLS mode none is only for a relay on this host (loopback), not %s", ErrConfig, host)
		}
		port = 25
	default:
		return nil, fmt.Errorf("%w: TLS mode %q is not starttls, tls or none", ErrConfig, r.TLS)
	}
	if portS != "" {
		if port, err = strconv.Atoi(portS); err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("%w: port %q", ErrConfig, portS)
		}
	}
	if _, err := mail.ParseAddress(r.From); err != nil {
		return nil, fmt.Errorf("%w: sender address %q: %v", ErrConfig, r.From, err)
	}
	if r.Username == "" && len(r.Password) > 0 {
		return nil, fmt.Errorf("%w: a password without a user name", ErrConfig)
	}
	return &SMTP{relay: r, host: host, port: port}, nil
}

// Describe says where mail goes, for logs and status: never the password.
func (s *SMTP) Describe() string {
	d := fmt.Sprintf("%s:%d (%s", s.host, s.port, s.relay.TLS)
	if s.relay.Username != "" {
		d += ", as " + s.relay.Username
	}
	return d + ")"
}

// Send delivers m through the relay on a connection of its own.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.relay.From); err != nil {
		return fmt.Errorf("mail: sender: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("mail: recipient: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Body)
	opts := []gomail.Option{
		gomail.WithPort(s.port),
		gomail.WithTimeout(s.relay.Timeout),
		gomail.WithTLSConfig(&tls.Config{ServerName: s.host, RootCAs: s.relay.RootCAs, MinVersion: tls.VersionTLS12}),
	}
	switch s.relay.TLS {
	case ImplicitTLS:
		opts = append(opts, gomail.WithSSL())
	case NoTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.relay.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain),
			gomail.WithUsername(s.relay.Username), gomail.WithPassword(string(s.relay.Password)))
	}
	c, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return fmt.Errorf("mail: client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mail: send to %s:%d: %s", s.host, s.port, oneLine(err.Error()))
	}
	return nil
}

// oneLine keeps a relay's answer to one line for logs and the outbox's status.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
