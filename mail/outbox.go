package mail

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"sync"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/metrics"
)

// Bounds of the outbox.
const (
	// DefaultMaxMessages is how many messages may wait at once; more are refused (and
	// counted), never allowed to grow the store without end while the relay is down.
	DefaultMaxMessages = 10_000
	// DefaultFirstRetry is the wait after the first failed attempt; it doubles with each
	// further failure up to DefaultMaxRetry.
	DefaultFirstRetry = 30 * time.Second
	DefaultMaxRetry   = time.Hour
	// DefaultMaxAge is how long a message is tried before it is dropped (audited): long
	// enough for a relay's weekend outage, shorter than an enrolment code's 7 days.
	DefaultMaxAge = 72 * time.Hour
	// sendTimeout bounds one attempt, so a relay that hangs never holds the outbox.
	sendTimeout = time.Minute
	// batch is how many due messages one round sends before looking again.
	batch = 50
)

// ErrFull is returned by Enqueue when the outbox holds its most messages.
var ErrFull = errors.New("the mail outbox is full")

const prefixOut = "mail/out/"

// queued is a message in the outbox with its delivery state.
type queued struct {
	Msg       Message   `json:"msg"`
	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
	NextTry   time.Time `json:"next_try"`
	LastError string    `json:"last_error,omitempty"`
}

// Options configure an Outbox. Store and Sender are required.
type Options struct {
	Store  kv.Store
	Sender Sender
	// Audit records each message sent or dropped (whom it was for and its kind, never its
	// body); nil records nothing.
	Audit   audit.Appender
	Metrics *metrics.Mail
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now         func() time.Time
	MaxMessages int
	FirstRetry  time.Duration
	MaxRetry    time.Duration
	MaxAge      time.Duration
}

// Outbox holds messages in the key-value store (encrypted at rest with the rest of it)
// until the relay takes them. Enqueue only writes the store; Run sends in the background,
// retrying with growing delays, so a relay that is slow or down never holds up the
// command or login that caused a message, and a restart of the daemon loses nothing.
type Outbox struct {
	o    Options
	wake chan struct{}

	mu      sync.Mutex
	count   int // messages waiting, as of the last look
	lastErr string
	lastAt  time.Time
}

// NewOutbox returns an Outbox; nothing is sent until Run.
func NewOutbox(o Options) (*Outbox, error) {
	if o.Store == nil || o.Sender == nil {
		return nil, fmt.Errorf("%w: outbox needs a store and a sender", ErrConfig)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = DefaultMaxMessages
	}
	if o.FirstRetry <= 0 {
		o.FirstRetry = DefaultFirstRetry
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = DefaultMaxRetry
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	ob := &Outbox{o: o, wake: make(chan struct{}, 1)}
	ob.count = -1 // unknown until counted
	return ob, nil
}

// outKey orders messages by when they were queued; the random tail keeps two queued in
// the same nanosecond apart.
func outKey(t time.Time) ([]byte, error) {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		return nil, err
	}
	return []byte(prefixOut + hex.EncodeToString(b[:])), nil
}

// Enqueue writes m to the outbox (durably) and wakes the sender. It never talks to the
// relay. A message without a valid address, or one past the outbox's bound, is refused
// and counted.
func (ob *Outbox) Enqueue(ctx context.Context, m Message) error {
	if _, err := mail.ParseAddress(m.To); err != nil {
		ob.o.Metrics.Count(m.Kind, metrics.MailRefused)
		return fmt.Errorf("mail: recipient %q is not an e-mail address", m.To)
	}
	n, err := ob.waiting(ctx)
	if err != nil {
		return fmt.Errorf("mail: count the outbox: %w", err)
	}
	if n >= ob.o.MaxMessages {
		ob.o.Metrics.Count(m.Kind, metrics.MailRefused)
		return fmt.Errorf("mail: %w (%d messages wait for the relay)", ErrFull, n)
	}
	now := ob.o.Now()
	key, err := outKey(now)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	b, err := json.Marshal(queued{Msg: m, Created: now, NextTry: now})
	if err != nil {
		return fmt.Errorf("mail: encode: %w", err)
	}
	if err := ob.o.Store.Update(ctx, func(tx kv.Txn) error { return tx.Set(key, b) }); err != nil {
		return fmt.Errorf("mail: queue: %w", err)
	}
	ob.mu.Lock()
	if ob.count >= 0 {
		ob.count++
	}
	ob.o.Metrics.SetOutbox(max(ob.count, 0))
	ob.mu.Unlock()
	ob.o.Metrics.Count(m.Kind, metrics.MailQueued)
	select {
	case ob.wake <- struct{}{}:
	default:
	}
	return nil
}

// waiting is how many messages the outbox holds, counted once and then kept up to date.
func (ob *Outbox) waiting(ctx context.Context) (int, error) {
	ob.mu.Lock()
	n := ob.count
	ob.mu.Unlock()
	if n >= 0 {
		return n, nil
	}
	n = 0
	err := ob.o.Store.View(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte(prefixOut), nil, func(_, _ []byte) (bool, error) {
			n++
			return true, nil
		})
	})
	if err != nil {
		return 0, err
	}
	ob.mu.Lock()
	ob.count = n
	ob.mu.Unlock()
	ob.o.Metrics.SetOutbox(n)
	return n, nil
}

// Run sends due messages until ctx ends, waking when a message is queued and when the
// next retry is due. A message in the middle of being sent when ctx ends stays queued. At
// start (an unseal, a restart of the daemon: often after the relay was fixed) every
// waiting message is tried once at once, whatever its backoff said.
func (ob *Outbox) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	all := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-ob.wake:
		case <-t.C:
		}
		next := ob.sendDue(ctx, all)
		all = false
		wait := time.Minute
		if !next.IsZero() {
			wait = min(max(next.Sub(ob.o.Now()), 10*time.Millisecond), wait)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// sendDue sends the messages that are due (all: every message, once), oldest first, and
// returns when the next one not yet due is (zero for none).
func (ob *Outbox) sendDue(ctx context.Context, all bool) time.Time {
	// A few rounds at most: a message whose outcome cannot be written stays due, and must
	// not be sent again and again without a pause.
	for round := 0; round < 10 && ctx.Err() == nil; round++ {
		now := ob.o.Now()
		if all && round == 0 {
			now = now.Add(ob.o.MaxRetry) // every waiting message is due
		}
		var due [][]byte
		var next time.Time
		total := 0
		err := ob.o.Store.View(ctx, func(tx kv.Txn) error {
			due, next, total = due[:0], time.Time{}, 0
			return tx.Scan([]byte(prefixOut), nil, func(k, v []byte) (bool, error) {
				total++
				var q queued
				if err := json.Unmarshal(v, &q); err != nil {
					// A record that cannot be read would block nothing, but say so.
					ob.o.Log.Error("mail: unreadable outbox record", "err", err)
					return true, nil
				}
				if !q.NextTry.After(now) {
					if len(due) < batch {
						due = append(due, append([]byte(nil), k...))
					}
				} else if next.IsZero() || q.NextTry.Before(next) {
					next = q.NextTry
				}
				return true, nil
			})
		})
		if err != nil {
			ob.o.Log.Error("mail: read the outbox", "err", err)
			return now.Add(ob.o.FirstRetry)
		}
		ob.mu.Lock()
		ob.count = total
		ob.mu.Unlock()
		ob.o.Metrics.SetOutbox(total)
		if len(due) == 0 {
			return next
		}
		for _, k := range due {
			if ctx.Err() != nil {
				return time.Time{}
			}
			ob.attempt(ctx, k)
		}
	}
	if ctx.Err() != nil {
		return time.Time{}
	}
	return ob.o.Now().Add(ob.o.FirstRetry)
}

// attempt sends one queued message and records the outcome.
func (ob *Outbox) attempt(ctx context.Context, key []byte) {
	var q queued
	err := ob.o.Store.View(ctx, func(tx kv.Txn) error {
		b, err := tx.Get(key)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &q)
	})
	if err != nil {
		return // sent and removed meanwhile, or unreadable (logged by the scan)
	}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	err = ob.o.Sender.Send(sctx, q.Msg)
	cancel()
	now := ob.o.Now()
	if err == nil {
		ob.remove(ctx, key)
		ob.o.Metrics.Count(q.Msg.Kind, metrics.MailSent)
		ob.record(ctx, q, "mail.sent", "ok", "", audit.Buffered)
		return
	}
	if ctx.Err() != nil {
		return // stopping (seal): the message stays queued, this attempt does not count
	}
	q.Attempts++
	q.LastError = oneLine(err.Error())
	ob.mu.Lock()
	ob.lastErr, ob.lastAt = q.LastError, now
	ob.mu.Unlock()
	if now.Sub(q.Created) >= ob.o.MaxAge {
		ob.remove(ctx, key)
		ob.o.Metrics.Count(q.Msg.Kind, metrics.MailDropped)
		ob.o.Log.Warn("mail: message dropped after its last attempt", "kind", q.Msg.Kind, "user", q.Msg.User, "attempts", q.Attempts, "err", q.LastError)
		ob.record(ctx, q, "mail.dropped", "error", fmt.Sprintf("after %d attempts: %s", q.Attempts, q.LastError), audit.Durable)
		return
	}
	q.NextTry = now.Add(ob.backoff(q.Attempts))
	ob.o.Metrics.Count(q.Msg.Kind, metrics.MailRetried)
	ob.o.Log.Warn("mail: not sent; will try again", "kind", q.Msg.Kind, "user", q.Msg.User, "attempt", q.Attempts, "next", q.NextTry.Format(time.RFC3339), "err", q.LastError)
	b, err := json.Marshal(q)
	if err == nil {
		err = ob.o.Store.Update(ctx, func(tx kv.Txn) error {
			if _, err := tx.Get(key); err != nil {
				return err // removed meanwhile
			}
			return tx.Set(key, b)
		})
	}
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		ob.o.Log.Error("mail: update the outbox", "err", err)
	}
}

// backoff is the wait after the nth failed attempt: FirstRetry, doubling, at most MaxRetry.
func (ob *Outbox) backoff(n int) time.Duration {
	d := ob.o.FirstRetry
	for i := 1; i < n && d < ob.o.MaxRetry; i++ {
		d *= 2
	}
	return min(d, ob.o.MaxRetry)
}

func (ob *Outbox) remove(ctx context.Context, key []byte) {
	if err := ob.o.Store.Update(ctx, func(tx kv.Txn) error { return tx.Delete(key) }); err != nil {
		ob.o.Log.Error("mail: remove from the outbox", "err", err)
		return
	}
	ob.mu.Lock()
	if ob.count > 0 {
		ob.count--
	}
	ob.o.Metrics.SetOutbox(ob.count)
	ob.mu.Unlock()
}

func (ob *Outbox) record(ctx context.Context, q queued, action, result, detail string, d audit.Durability) {
	if ob.o.Audit == nil {
		return
	}
	_, err := ob.o.Audit.Append(context.WithoutCancel(ctx), audit.Entry{UID: -1, User: q.Msg.User, Action: action, Object: string(q.Msg.Kind), Result: result, Detail: detail}, d)
	if err != nil {
		ob.o.Log.Error("mail: audit", "action", action, "err", err)
	}
}

// Status is what the outbox can say about itself.
type Status struct {
	Waiting int
	// Oldest is when the oldest waiting message was queued; NextTry when the next attempt
	// is due (zero when none waits).
	Oldest, NextTry time.Time
	// LastError is the last failed attempt's error, and when.
	LastError   string
	LastErrorAt time.Time
}

// Status reads the outbox.
func (ob *Outbox) Status(ctx context.Context) (Status, error) {
	var st Status
	err := ob.o.Store.View(ctx, func(tx kv.Txn) error {
		st = Status{}
		return tx.Scan([]byte(prefixOut), nil, func(_, v []byte) (bool, error) {
			var q queued
			if json.Unmarshal(v, &q) != nil {
				return true, nil
			}
			st.Waiting++
			if st.Oldest.IsZero() || q.Created.Before(st.Oldest) {
				st.Oldest = q.Created
			}
			if st.NextTry.IsZero() || q.NextTry.Before(st.NextTry) {
				st.NextTry = q.NextTry
			}
			return true, nil
		})
	})
	ob.mu.Lock()
	st.LastError, st.LastErrorAt = ob.lastErr, ob.lastAt
	ob.mu.Unlock()
	return st, err
}
