package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// SummaryAction is the action of the record that stands for the refusals a Coalescer did not
// write one by one.
const SummaryAction = "audit.refusals"

// Defaults of CoalesceOptions.
const (
	DefaultCoalesceWindow = time.Minute
	DefaultCoalesceBurst  = 32
	DefaultCoalesceUIDs   = 4096
)

// maxSummaryActions bounds the actions named in one summary; the rest are counted as
// "other".
const maxSummaryActions = 16

// CoalesceOptions tune a Coalescer. The zero value gives the defaults.
type CoalesceOptions struct {
	// Window is how long each uid's allowance of single refusal records lasts, and how
	// often summaries are written; zero means DefaultCoalesceWindow.
	Window time.Duration
	// Burst is how many refusals of one uid are written one by one in each window; zero
	// means DefaultCoalesceBurst.
	Burst int
	// MaxUIDs bounds the uids tracked in one window; refusals of further uids are counted
	// together. Zero means DefaultCoalesceUIDs.
	MaxUIDs int
	// OnCoalesced, when set, is told how many refusals each summary stands for (a metric).
	OnCoalesced func(n int)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Coalescer is an Appender in front of another that rate-limits refusals, so that a storm
// of refused requests cannot fill the disk (and a full disk refuses every login). A refusal
// is an entry with Result "denied" appended Buffered. In each window the first Burst
// refusals of a uid are passed on as they are; the ones after that are only counted, and
// when the window ends one summary record (action SummaryAction) says how many refusals of
// that uid were left out, by action. Everything else passes straight through, one record
// each: successes, errors, lockouts, membership changes, and any Durable entry.
type Coalescer struct {
	next Appender
	opts CoalesceOptions

	mu    sync.Mutex
	start time.Time
	uids  map[int64]*refusals
	// others counts refusals of uids beyond MaxUIDs in this window.
	others refusals

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// refusals is one uid's refusals in the current window.
type refusals struct {
	written int
	user    string
	left    map[string]int // action → refusals not written one by one
	total   int
}

var _ Appender = (*Coalescer)(nil)

// NewCoalescer returns a Coalescer in front of next and starts its window timer; Close
// stops it.
func NewCoalescer(next Appender, o CoalesceOptions) *Coalescer {
	if o.Window <= 0 {
		o.Window = DefaultCoalesceWindow
	}
	if o.Burst <= 0 {
		o.Burst = DefaultCoalesceBurst
	}
	if o.MaxUIDs <= 0 {
		o.MaxUIDs = DefaultCoalesceUIDs
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Coalescer{next: next, opts: o, start: o.Now(), uids: make(map[int64]*refusals),
		stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// refusal reports whether e, appended with d, may be coalesced.
func refusal(e Entry, d Durability) bool { return e.Result == "denied" && d == Buffered }

// Append passes e on, or counts it when it is a refusal over its uid's allowance. A counted
// refusal returns a zero Record and no error: it is accounted for by the window's summary.
func (c *Coalescer) Append(ctx context.Context, e Entry, d Durability) (Record, error) {
	if !refusal(e, d) {
		return c.next.Append(ctx, e, d)
	}
	c.mu.Lock()
	r, ok := c.uids[e.UID]
	if !ok {
		if len(c.uids) >= c.opts.MaxUIDs {
			r = &c.others
		} else {
			r = &refusals{}
			c.uids[e.UID] = r
		}
	}
	if r != &c.others && r.written < c.opts.Burst {
		r.written++
		c.mu.Unlock()
		return c.next.Append(ctx, e, d)
	}
	if r.left == nil {
		r.left = make(map[string]int)
	}
	action := e.Action
	if _, seen := r.left[action]; !seen && len(r.left) >= maxSummaryActions {
		action = "other"
	}
	r.left[action]++
	r.total++
	if e.User != "" {
		r.user = e.User
	}
	c.mu.Unlock()
	return Record{}, nil
}

func (c *Coalescer) run() {
	defer close(c.done)
	t := time.NewTicker(c.opts.Window)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			_ = c.Flush(context.Background())
		}
	}
}

// Flush ends the current window: it writes one summary record for each uid with refusals
// left out, and gives every uid a new allowance. A summary that cannot be written is kept
// for the next Flush.
func (c *Coalescer) Flush(ctx context.Context) error {
	c.mu.Lock()
	start, end := c.start, c.opts.Now()
	uids, others := c.uids, c.others
	c.start, c.uids, c.others = end, make(map[int64]*refusals), refusals{}
	c.mu.Unlock()

	var errs []error
	keep := func(uid int64, r *refusals) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if uid == othersUID {
			c.others.merge(r)
			return
		}
		cur, ok := c.uids[uid]
		if !ok {
			cur = &refusals{}
			c.uids[uid] = cur
		}
		cur.merge(r)
	}
	write := func(uid int64, r *refusals) {
		if r.total == 0 {
			return
		}
		e := Entry{UID: uid, User: r.user, Action: SummaryAction, Result: "denied", Detail: r.summary(uid, start, end)}
		if _, err := c.next.Append(ctx, e, Buffered); err != nil {
			errs = append(errs, err)
			keep(uid, r)
			return
		}
		if c.opts.OnCoalesced != nil {
			c.opts.OnCoalesced(r.total)
		}
	}
	ids := make([]int64, 0, len(uids))
	for uid := range uids {
		ids = append(ids, uid)
	}
	slices.Sort(ids)
	for _, uid := range ids {
		write(uid, uids[uid])
	}
	write(othersUID, &others)
	if len(errs) > 0 {
		return fmt.Errorf("audit: write refusal summaries: %w", errs[0])
	}
	return nil
}

// othersUID is the uid a summary of refusals from uids past MaxUIDs is recorded under.
const othersUID = -1

// merge adds o's left-out refusals to r (a summary that could not be written).
func (r *refusals) merge(o *refusals) {
	if r.left == nil {
		r.left = make(map[string]int)
	}
	for a, n := range o.left {
		r.left[a] += n
	}
	r.total += o.total
	if o.user != "" {
		r.user = o.user
	}
}

// summary is the Detail of a summary record: how many, when, and of which actions, most
// frequent first.
func (r *refusals) summary(uid int64, start, end time.Time) string {
	type count struct {
		action string
		n      int
	}
	cs := make([]count, 0, len(r.left))
	for a, n := range r.left {
		cs = append(cs, count{a, n})
	}
	slices.SortFunc(cs, func(a, b count) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.action, b.action)
	})
	var b strings.Builder
	who := fmt.Sprintf("uid %d", uid)
	if uid == othersUID {
		who = "further uids"
	}
	fmt.Fprintf(&b, "%d refusals for %s in %s from %s not recorded one by one:", r.total, who,
		end.Sub(start).Round(time.Second), start.UTC().Format(time.RFC3339))
	for i, c := range cs {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s %s %d", sep, c.action, c.n)
	}
	return b.String()
}

// Close stops the window timer and writes the last summaries; the Appender behind is left
// open. Call it before closing that Appender. Refusals appended after Close are still
// coalesced, but only an explicit Flush writes their summaries.
func (c *Coalescer) Close(ctx context.Context) error {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	return c.Flush(ctx)
}
