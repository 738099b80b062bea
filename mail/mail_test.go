package mail

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"dsh/audit"
	"dsh/kv"
	"dsh/mail/mailtest"
	"dsh/metrics"
	"dsh/vault"
)

func startServer(t *testing.T) *mailtest.Server {
	t.Helper()
	s, err := mailtest.Start("dsh-relay", "relay password 1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func relayTo(t *testing.T, s *mailtest.Server) Relay {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertPEM) {
		t.Fatal("bad test certificate")
	}
	return Relay{Addr: s.Addr, TLS: StartTLS, Username: s.User, Password: []byte(s.Password), From: "DSH <dsh@haven.example>", RootCAs: pool, Timeout: 10 * time.Second}
}

// TestSMTPOverTLSWithAuth: a message reaches a real SMTP server over STARTTLS after AUTH
// PLAIN, with its headers and body intact; a wrong password or an untrusted certificate
// fails, and plain text to a remote relay is refused by the configuration.
func TestSMTPOverTLSWithAuth(t *testing.T) {
	s := startServer(t)
	snd, err := NewSMTP(relayTo(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if d := snd.Describe(); strings.Contains(d, s.Password) || !strings.Contains(d, "starttls") {
		t.Fatalf("Describe: %q", d)
	}
	m := Message{To: "alice@example.ac.uk", Subject: "DSH - Your password was changed", Body: "Hello alice,\n\nYour password was changed.\n", Kind: metrics.MailNotice, User: "alice"}
	if err := snd.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got, err := s.Wait(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := got[0]
	if !r.TLS || r.AuthUser != "dsh-relay" || r.From != "dsh@haven.example" || len(r.To) != 1 || r.To[0] != "alice@example.ac.uk" {
		t.Fatalf("received %+v", r)
	}
	if r.Header("Subject") != m.Subject || !strings.Contains(r.Header("From"), "dsh@haven.example") || r.Header("Message-ID") == "" {
		t.Fatalf("headers: subject %q from %q", r.Header("Subject"), r.Header("From"))
	}
	if !strings.Contains(r.Body(), "Your password was changed.") {
		t.Fatalf("body %q", r.Body())
	}

	bad := relayTo(t, s)
	bad.Password = []byte("wrong")
	snd, _ = NewSMTP(bad)
	if err := snd.Send(context.Background(), m); err == nil {
		t.Fatal("sent with a wrong relay password")
	} else if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error carries the password: %v", err)
	}
	untrusted := relayTo(t, s)
	untrusted.RootCAs = x509.NewCertPool()
	snd, _ = NewSMTP(untrusted)
	if err := snd.Send(context.Background(), m); err == nil {
		t.Fatal("sent to a relay whose certificate is not trusted")
	}
	if len(s.Messages()) != 1 {
		t.Fatal("a refused attempt delivered a message")
	}
	for _, r := range []Relay{
		{Addr: "mail.example.ac.uk:25", TLS: NoTLS, From: "dsh@x.example"},
		{Addr: ":587", From: "dsh@x.example"},
		{Addr: "mail.example.ac.uk", TLS: "ssl", From: "dsh@x.example"},
		{Addr: "mail.example.ac.uk", From: "not an address"},
		{Addr: "mail.example.ac.uk", From: "dsh@x.example", Password: []byte("p")},
	} {
		if _, err := NewSMTP(r); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", r, err)
		}
	}
	if _, err := NewSMTP(Relay{Addr: "127.0.0.1:2525", TLS: NoTLS, From: "dsh@x.example"}); err != nil {
		t.Fatalf("plain text to a loopback relay: %v", err)
	}
}

// flaky is a Sender that fails while fail is set, and can block until released.
type flaky struct {
	mu    sync.Mutex
	fail  bool
	sent  []Message
	block chan struct{} // when set, Send waits on it (or ctx)
	calls int
}

func (f *flaky) Send(ctx context.Context, m Message) error {
	f.mu.Lock()
	f.calls++
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("451 relay out of order")
	}
	f.sent = append(f.sent, m)
	return nil
}

func (f *flaky) set(fail bool) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

func (f *flaky) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

type auditLog struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (a *auditLog) Append(_ context.Context, e audit.Entry, _ audit.Durability) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
	return audit.Record{}, nil
}

func (a *auditLog) has(action string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.entries {
		if e.Action == action {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func note(user string) Message {
	return Message{To: user + "@example.ac.uk", Subject: "DSH - test", Body: "hello", Kind: metrics.MailNotice, User: user}
}

// TestOutboxRetriesWithBackoff: a message the relay refuses stays queued, is tried again
// with growing delays, and goes out once the relay is back; each step is counted and the
// delivery audited.
func TestOutboxRetriesWithBackoff(t *testing.T) {
	reg := metrics.NewRegistry()
	mm, err := metrics.NewMail(reg)
	if err != nil {
		t.Fatal(err)
	}
	snd := &flaky{fail: true}
	aud := &auditLog{}
	ob, err := NewOutbox(Options{Store: kv.NewMem(), Sender: snd, Audit: aud, Metrics: mm, FirstRetry: 20 * time.Millisecond, MaxRetry: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := ob.Enqueue(ctx, note("alice")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three failed attempts", func() bool { snd.mu.Lock(); defer snd.mu.Unlock(); return snd.calls >= 3 })
	st, err := ob.Status(ctx)
	if err != nil || st.Waiting != 1 || !strings.Contains(st.LastError, "451") {
		t.Fatalf("status while failing: %+v, %v", st, err)
	}
	snd.set(false)
	waitFor(t, "delivery", func() bool { return snd.count() == 1 })
	waitFor(t, "the outbox to empty", func() bool { st, _ := ob.Status(ctx); return st.Waiting == 0 })
	if !aud.has("mail.sent") {
		t.Fatal("delivery not audited")
	}
	if got := testutil.ToFloat64(mm.Outbox); got != 0 {
		t.Fatalf("outbox gauge %v", got)
	}
	if ob.backoff(1) != 20*time.Millisecond || ob.backoff(2) != 40*time.Millisecond || ob.backoff(9) != 80*time.Millisecond {
		t.Fatalf("backoff %v %v %v", ob.backoff(1), ob.backoff(2), ob.backoff(9))
	}
}

// TestOutboxSurvivesRestart: what one outbox queued while the relay was down, another
// over the same (reopened, encrypted) store sends, at once rather than after the backoff.
func TestOutboxSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	key, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.OpenBadger(dir, &key, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	down := &flaky{fail: true}
	ob, _ := NewOutbox(Options{Store: st, Sender: down, FirstRetry: time.Hour})
	for _, u := range []string{"alice", "bob"} {
		if err := ob.Enqueue(context.Background(), note(u)); err != nil {
			t.Fatal(err)
		}
	}
	// Both are tried and fail: their next attempt is an hour away.
	ob.sendDue(context.Background(), false)
	if st, _ := ob.Status(context.Background()); st.Waiting != 2 || time.Until(st.NextTry) < 30*time.Minute {
		t.Fatalf("after failing: %+v", st)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = kv.OpenBadger(dir, &key, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	up := &flaky{}
	ob2, _ := NewOutbox(Options{Store: st, Sender: up})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob2.Run(ctx); close(done) }()
	waitFor(t, "both messages after the restart", func() bool { return up.count() == 2 })
	cancel()
	<-done
	if up.sent[0].User != "alice" || up.sent[1].User != "bob" {
		t.Fatalf("sent out of order: %+v", up.sent)
	}
}

// TestEnqueueNeverWaitsForTheRelay: with the relay hanging on a send, queuing more
// returns at once; a full outbox refuses instead of growing.
func TestEnqueueNeverWaitsForTheRelay(t *testing.T) {
	reg := metrics.NewRegistry()
	mm, _ := metrics.NewMail(reg)
	snd := &flaky{block: make(chan struct{})}
	ob, _ := NewOutbox(Options{Store: kv.NewMem(), Sender: snd, Metrics: mm, MaxMessages: 3})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	if err := ob.Enqueue(ctx, note("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the relay to hang", func() bool { snd.mu.Lock(); defer snd.mu.Unlock(); return snd.calls == 1 })
	// The sender is stuck inside Send; these return without it.
	for _, u := range []string{"b", "c"} {
		if err := ob.Enqueue(ctx, note(u)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Enqueue(ctx, note("d")); !errors.Is(err, ErrFull) {
		t.Fatalf("a fourth message in an outbox of three: %v", err)
	}
	if err := ob.Enqueue(ctx, Message{To: "not an address", Kind: metrics.MailNotice}); err == nil {
		t.Fatal("queued a message without an address")
	}
	// Sealing stops the sender mid-send: the message stays queued, nothing is lost.
	cancel()
	<-done
	st, err := ob.Status(context.Background())
	if err != nil || st.Waiting != 3 {
		t.Fatalf("after stopping mid-send: %+v %v", st, err)
	}
	problems, _ := testutil.GatherAndLint(reg)
	if len(problems) != 0 {
		t.Fatalf("lint: %v", problems)
	}
}

// TestOutboxDropsAfterMaxAge: a message the relay never takes is dropped after MaxAge,
// audited with its last error.
func TestOutboxDropsAfterMaxAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	snd := &flaky{fail: true}
	aud := &auditLog{}
	ob, _ := NewOutbox(Options{Store: kv.NewMem(), Sender: snd, Audit: aud, Now: clock, FirstRetry: time.Minute, MaxAge: time.Hour})
	ctx := context.Background()
	if err := ob.Enqueue(ctx, note("alice")); err != nil {
		t.Fatal(err)
	}
	ob.sendDue(ctx, false)
	if st, _ := ob.Status(ctx); st.Waiting != 1 || !st.NextTry.Equal(now.Add(time.Minute)) {
		t.Fatalf("after one failure: %+v", st)
	}
	ob.sendDue(ctx, false) // not due yet: no attempt
	if snd.calls != 1 {
		t.Fatalf("%d attempts before the retry was due", snd.calls)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	ob.sendDue(ctx, false)
	if st, _ := ob.Status(ctx); st.Waiting != 0 {
		t.Fatalf("not dropped after MaxAge: %+v", st)
	}
	if !aud.has("mail.dropped") {
		t.Fatal("the drop was not audited")
	}
}
