package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"dsh/audit"
	"dsh/kv"
	"dsh/metrics"
	"dsh/vault"
)

var ctx = context.Background()

// testKDF keeps Argon2id cheap in tests; the parameters are stored per hash anyway.
var testKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

type dirUser struct {
	id     string
	uid    int
	active bool
}

type fakeDir struct {
	mu    sync.Mutex
	users []dirUser
}

func (d *fakeDir) UserByUID(uid int) (string, bool, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		if u.uid == uid {
			return u.id, u.active, true
		}
	}
	return "", false, false
}

func (d *fakeDir) UserByID(id string) (int, bool, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		if u.id == id {
			return u.uid, u.active, true
		}
	}
	return 0, false, false
}

func (d *fakeDir) setActive(id string, active bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.users {
		if d.users[i].id == id {
			d.users[i].active = active
		}
	}
}

// fakeKeys derives each share's key from its name, so tests can predict the bytes.
type fakeKeys struct {
	mu      sync.Mutex
	members map[int][]string
	fail    bool
	// onShareKey, when set, runs inside ShareKey with mu held: a change landing while a
	// login builds its keyring.
	onShareKey func()
}

func shareKey(name string) vault.Key {
	var k vault.Key
	copy(k[:], "share:"+name+strings.Repeat("#", 32))
	return k
}

func (f *fakeKeys) SharesOf(uid int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.members[uid]...)
}

// set replaces the shares of uid, as an acl commit would.
func (f *fakeKeys) set(uid int, shares ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members[uid] = shares
}

func (f *fakeKeys) ShareKey(_ context.Context, share string) (vault.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return vault.Key{}, errors.New("unwrap failed")
	}
	if f.onShareKey != nil {
		f.onShareKey()
	}
	return shareKey(share), nil
}

func (f *fakeKeys) ArrivalsKey(_ context.Context, user string) (vault.Key, error) {
	return shareKey("arrivals/" + user), nil
}

// recorder keeps audit entries; fail makes Append refuse.
type recorder struct {
	mu      sync.Mutex
	entries []audit.Entry
	fail    bool
}

func (r *recorder) Append(_ context.Context, e audit.Entry, _ audit.Durability) (audit.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return audit.Record{}, errors.New("disk full")
	}
	r.entries = append(r.entries, e)
	return audit.Record{}, nil
}

func (r *recorder) all() []audit.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Entry(nil), r.entries...)
}

func (r *recorder) has(action, result, detail string) bool {
	for _, e := range r.all() {
		if e.Action == action && e.Result == result && (detail == "" || e.Detail == detail) {
			return true
		}
	}
	return false
}

// notes keeps the events the service reports.
type notes struct {
	mu     sync.Mutex
	events []Event
}

func (n *notes) Notify(_ context.Context, e Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, e)
}

// of returns the events of kind for user.
func (n *notes) of(kind EventKind, user string) []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Event
	for _, e := range n.events {
		if e.Kind == kind && e.User == user {
			out = append(out, e)
		}
	}
	return out
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	svc   *Service
	store kv.Store
	dir   *fakeDir
	keys  *fakeKeys
	aud   *recorder
	notes *notes
	clk   *clock
	met   *metrics.Metrics
	reg   *prometheus.Registry
	// lastSecret is the TOTP secret of the last enrolment.
	lastSecret string
}

const (
	aliceUID = 1001
	bobUID   = 1002
	alicePW  = "correct horse battery"
	alicePIN = "4321"
)

var aliceQs = [3]Question{
	{Question: "First pet?", Answer: []byte("Rex")},
	{Question: "Birth town?", Answer: []byte("Leeds")},
	{Question: "First school?", Answer: []byte("St Mary's")},
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvKDF(t, testKDF, testKDF)
}

func newEnvKDF(t testing.TB, password, short KDFParams) *env {
	t.Helper()
	return newEnvStore(t, kv.NewMem(), password, short)
}

func newEnvStore(t testing.TB, st kv.Store, password, short KDFParams) *env {
	t.Helper()
	e := &env{
		store: st,
		dir: &fakeDir{users: []dirUser{
			{id: "alice", uid: aliceUID, active: true},
			{id: "bob", uid: bobUID, active: true},
		}},
		keys:  &fakeKeys{members: map[int][]string{aliceUID: {"proj-a", "proj-b"}}},
		aud:   &recorder{},
		notes: &notes{},
		// Mid-step, so that ±1 step arithmetic in tests never lands on a boundary.
		clk: &clock{t: time.Unix(1_800_000_015, 0)},
	}
	e.reg = metrics.NewRegistry()
	m, err := metrics.New(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.met = m
	key, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := NewKeySealer(&key)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(Deps{Store: e.store, Directory: e.dir, Keys: e.keys, Sealer: sealer, Auditor: e.aud, Metrics: m, Notifier: e.notes},
		Options{Now: e.clk.now, PasswordKDF: password, ShortKDF: short})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.svc.Sessions().EndAll(ctx) })
	return e
}

// enrol enrols user (on uid) and returns the TOTP secret from the otpauth URL.
func (e *env) enrol(t testing.TB, user string, uid int) string {
	t.Helper()
	code, _, err := e.svc.CreateEnrolment(ctx, 0, user)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Enrol(ctx, uid, code, []byte(alicePW), []byte(alicePIN), aliceQs)
	if err != nil {
		t.Fatal(err)
	}
	e.lastSecret = secretOf(t, res.URL)
	return e.lastSecret
}

func secretOf(t testing.TB, url string) string {
	t.Helper()
	s, err := secretFromURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// codeAt computes the TOTP code of secret at the clock's time shifted by steps.
func (e *env) codeAt(t testing.TB, secret string, steps int) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, e.clk.now().Add(time.Duration(steps)*30*time.Second), totpOpts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) login(secret string, steps int) error {
	c, err := totp.GenerateCodeCustom(secret, e.clk.now().Add(time.Duration(steps)*30*time.Second), totpOpts)
	if err != nil {
		return fmt.Errorf("code: %w", err)
	}
	_, err = e.svc.Login(ctx, aliceUID, "", []byte(alicePW), []byte(alicePIN), c)
	return err
}

func testCounter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// logins reads dsh_logins_total{method,result} from the registry.
func (e *env) logins(t testing.TB, method, result string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dsh_logins_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no dsh_logins_total{method=%q,result=%q}", method, result)
	return 0
}
