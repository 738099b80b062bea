package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"dsh/acl"
	"dsh/audit"
	"dsh/control"
	"dsh/mail"
	"dsh/metrics"
	"dsh/store"
	"dsh/token"
)

// MailConfig is the operator's SMTP relay and how messages name the portal.
type MailConfig struct {
	Relay mail.Relay
	// PortalURL is the portal's address as users reach it, for links in messages; empty
	// means the address the portal listens on.
	PortalURL string
	// Service names the haven in subjects; empty means "DSH".
	Service string
}

// noticeQueue is how many notices may wait for the outbox; past it they are dropped (and
// counted), so that a login never waits for mail.
const noticeQueue = 256

// mailer is the daemon's mail: the outbox of the unsealed store and the notices waiting to
// go into it. Notices are handed over through a channel, never written on the caller's
// path: a login, a token change or a membership change does not wait for the disk, let
// alone the relay.
type mailer struct {
	sender   *mail.SMTP
	compose  mail.Composer
	metrics  *metrics.Mail
	notices  chan mail.Notice
	mu       sync.Mutex
	outbox   *mail.Outbox
	stopRun  context.CancelFunc
	runDone  chan struct{}
	workDone chan struct{}
}

// newMailer prepares mail from cfg; nil when no relay is configured.
func (d *Daemon) newMailer(cfg *MailConfig) (*mailer, error) {
	if cfg == nil {
		return nil, nil
	}
	snd, err := mail.NewSMTP(cfg.Relay)
	if err != nil {
		return nil, err
	}
	mm, err := metrics.NewMail(d.reg)
	if err != nil {
		return nil, err
	}
	return &mailer{sender: snd, compose: mail.Composer{Service: cfg.Service, PortalURL: cfg.PortalURL}, metrics: mm,
		notices: make(chan mail.Notice, noticeQueue)}, nil
}

// startMail starts sending from the unsealed store's outbox; called at unseal with d.mu
// held for writing.
func (d *Daemon) startMail(p *store.Parts, aud audit.Appender, accounts *acl.Store) {
	m := d.mail
	if m == nil {
		return
	}
	ob, err := mail.NewOutbox(mail.Options{Store: p.KV, Sender: m.sender, Audit: aud, Metrics: m.metrics, Log: d.log.With("part", "mail")})
	if err != nil {
		d.log.Error("mail: no outbox; nothing will be sent", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.mu.Lock()
	if m.compose.PortalURL == "" && d.portalAddr != "" {
		m.compose.PortalURL = "https://" + d.portalAddr + "/"
	}
	m.outbox, m.stopRun, m.runDone, m.workDone = ob, cancel, make(chan struct{}), make(chan struct{})
	runDone, workDone := m.runDone, m.workDone
	m.mu.Unlock()
	go func() { defer close(runDone); ob.Run(ctx) }()
	go func() { defer close(workDone); d.queueNotices(ctx, ob, accounts) }()
}

// stopMail stops the sender at seal (d.mu held for writing): a message being sent stays
// in the outbox for the next unseal.
func (d *Daemon) stopMail() {
	m := d.mail
	if m == nil {
		return
	}
	m.mu.Lock()
	stop, runDone, workDone := m.stopRun, m.runDone, m.workDone
	m.outbox, m.stopRun = nil, nil
	m.mu.Unlock()
	if stop != nil {
		stop()
		<-runDone
		<-workDone
	}
}

// queueNotices writes the notices handed over into the outbox until ctx ends. It reads
// the user's address from the acl store without d.mu: stopMail, called at seal before the
// store closes, waits for it.
func (d *Daemon) queueNotices(ctx context.Context, ob *mail.Outbox, a *acl.Store) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-d.mail.notices:
			u, ok := a.UserByID(n.User)
			if !ok || u.Email == "" {
				continue
			}
			msg, ok := d.mail.compose.Notice(u.Email, n)
			if !ok {
				continue
			}
			if err := ob.Enqueue(ctx, msg); err != nil {
				d.log.Warn("mail: notice not queued", "user", n.User, "kind", string(n.Kind), "err", err)
			}
		}
	}
}

// notify hands a notice to the mail queue without waiting; a full queue drops it.
func (d *Daemon) notify(n mail.Notice) {
	if d.mail == nil {
		return
	}
	if n.At.IsZero() {
		n.At = time.Now()
	}
	select {
	case d.mail.notices <- n:
	default:
		d.mail.metrics.Count(metrics.MailNotice, metrics.MailRefused)
		d.log.Warn("mail: notice queue full; notice dropped", "user", n.User, "kind", string(n.Kind))
	}
}

// tokenNotifier passes the token service's events on as notices.
type tokenNotifier struct{ d *Daemon }

func (t tokenNotifier) Notify(_ context.Context, e token.Event) {
	t.d.notify(mail.Notice{Kind: mail.NoticeKind(e.Kind), User: e.User, Object: e.Object, Until: e.Until, Via: e.Via, At: e.At})
}

// via describes where a control request came from, for notices.
func via(c control.Caller) string {
	if c.Portal() {
		return "the portal (from " + c.Remote + ")"
	}
	if c.IsRoot() {
		return "the operator"
	}
	return "the command line"
}

// outbox is the unsealed store's outbox, or an error saying why mail cannot be sent.
func (d *Daemon) outbox() (*mail.Outbox, error) {
	if d.mail == nil {
		return nil, fmt.Errorf("%w: no mail relay is configured (dsh serve --smtp-relay)", control.ErrUnavailable)
	}
	d.mail.mu.Lock()
	defer d.mail.mu.Unlock()
	if d.mail.outbox == nil {
		return nil, fmt.Errorf("%w: the store is sealed", control.ErrUnavailable)
	}
	return d.mail.outbox, nil
}

// mailEnrolment queues a new enrolment code to the user's address; it returns the
// address, or "" when there is no relay. A failure is logged: the operator still has the
// code to hand over.
func (d *Daemon) mailEnrolment(ctx context.Context, user, code string, expires time.Time) string {
	ob, err := d.outbox()
	if err != nil {
		return ""
	}
	u, ok := d.acl.UserByID(user)
	if !ok || u.Email == "" {
		return ""
	}
	if err := ob.Enqueue(context.WithoutCancel(ctx), d.mail.compose.Enrolment(u.Email, user, code, expires)); err != nil {
		d.log.Warn("mail: enrolment code not queued", "user", user, "err", err)
		return ""
	}
	return u.Email
}

// SendTokenLink mails user a one-time link to a new soft token (operator only): the
// service page's "Email" token, without the secret ever being in a message.
func (d *Daemon) SendTokenLink(ctx context.Context, c control.Caller, user string) (control.TokenLinkSent, error) {
	if err := d.requireOperator(ctx, c, "token.link.issue"); err != nil {
		return control.TokenLinkSent{}, err
	}
	var out control.TokenLinkSent
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		ob, err := d.outbox()
		if err != nil {
			return err
		}
		u, ok := d.acl.UserByID(user)
		if !ok {
			return fmt.Errorf("%w: no user %q", control.ErrNotFound, user)
		}
		if u.Email == "" {
			return fmt.Errorf("%w: %s has no e-mail address", control.ErrInvalid, user)
		}
		code, exp, err := t.IssueTokenLink(ctx, c.UID, user)
		if err != nil {
			return err
		}
		if err := ob.Enqueue(ctx, d.mail.compose.TokenLink(u.Email, user, code, exp)); err != nil {
			return fmt.Errorf("%w: the link was made but could not be queued: %v", control.ErrUnavailable, err)
		}
		out = control.TokenLinkSent{User: user, To: u.Email, Expires: exp}
		return nil
	})
	return out, err
}

// ClaimTokenLink makes the soft token of a one-time link for the caller.
func (d *Daemon) ClaimTokenLink(ctx context.Context, c control.Caller, user, code string, password, pin []byte) (control.TokenCreated, error) {
	var out control.TokenCreated
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		en, err := t.ClaimTokenLink(ctx, c.UID, user, strings.TrimSpace(code), password, pin)
		out = control.TokenCreated{ID: en.TokenID, URL: en.URL}
		return err
	})
	return out, err
}

// MailStatus describes the relay and the outbox (operator only).
func (d *Daemon) MailStatus(ctx context.Context, c control.Caller) (control.MailStatus, error) {
	if err := d.requireOperator(ctx, c, "mail.status"); err != nil {
		return control.MailStatus{}, err
	}
	if d.mail == nil {
		return control.MailStatus{}, nil
	}
	out := control.MailStatus{Configured: true, Relay: d.mail.sender.Describe()}
	ob, err := d.outbox()
	if err != nil {
		return out, err
	}
	st, err := ob.Status(ctx)
	out.Waiting, out.Oldest, out.NextTry, out.LastError, out.LastErrorAt = st.Waiting, st.Oldest, st.NextTry, st.LastError, st.LastErrorAt
	return out, err
}

// MailTest queues a test message to an address (operator only).
func (d *Daemon) MailTest(ctx context.Context, c control.Caller, to string) error {
	if err := d.requireOperator(ctx, c, "mail.test"); err != nil {
		return err
	}
	ob, err := d.outbox()
	if err != nil {
		return err
	}
	if err := ob.Enqueue(ctx, d.mail.compose.Test(to)); err != nil {
		return fmt.Errorf("%w: %v", control.ErrInvalid, err)
	}
	return nil
}
