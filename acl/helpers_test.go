package acl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/vault"
)

var ctx = context.Background()

// testWrapper stands in for the daemon's KeyWrapper: a parent key the acl package does
// not otherwise see.
type testWrapper struct{ parent vault.Key }

func newTestWrapper(t testing.TB) *testWrapper {
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &testWrapper{parent: k}
}

func (w *testWrapper) Wrap(k *vault.Key, c []byte) (vault.WrappedKey, error) {
	return vault.WrapKey(&w.parent, k, c)
}

func (w *testWrapper) Unwrap(wk vault.WrappedKey, c []byte) (vault.Key, error) {
	return vault.UnwrapKey(&w.parent, wk, c)
}

// recorder is an Auditor that keeps entries in memory and can be told to fail.
type recorder struct {
	mu       sync.Mutex
	entries  []recorded
	fail     atomic.Bool
	onAppend func(audit.Entry) // called before the entry is kept, without the lock
}

type recorded struct {
	audit.Entry
	Durability audit.Durability
}

var errDiskFull = errors.New("test: audit disk full")

func (r *recorder) Append(_ context.Context, e audit.Entry, d audit.Durability) (audit.Record, error) {
	if r.fail.Load() {
		return audit.Record{}, errDiskFull
	}
	if r.onAppend != nil {
		r.onAppend(e)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, recorded{e, d})
	return audit.Record{Seq: uint64(len(r.entries)), Entry: e}, nil
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.entries...)
}

func (r *recorder) last() recorded {
	all := r.all()
	if len(all) == 0 {
		return recorded{}
	}
	return all[len(all)-1]
}

// nopAuditor is the fast auditor for benchmark setup.
type nopAuditor struct{}

func (nopAuditor) Append(context.Context, audit.Entry, audit.Durability) (audit.Record, error) {
	return audit.Record{}, nil
}

// env is one Store under test with everything needed to poke at it.
type env struct {
	t    *testing.T
	kv   kv.Store
	s    *Store
	aud  *recorder
	wrap *testWrapper
	opts Options
}

var operator = Actor{UID: 0, Operator: true}

func newEnv(t *testing.T, st kv.Store, opts Options) *env {
	t.Helper()
	e := &env{t: t, kv: st, aud: &recorder{}, wrap: newTestWrapper(t), opts: opts}
	s, err := New(st, e.wrap, e.aud, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	return e
}

// reload returns a second Store over the same kv, as after a restart.
func (e *env) reload() *Store {
	e.t.Helper()
	s, err := New(e.kv, e.wrap, e.aud, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// checkCache fails unless the Store's snapshot is exactly what loading the kv gives.
func (e *env) checkCache() {
	e.t.Helper()
	want, err := loadSnapshot(ctx, e.kv)
	if err != nil {
		e.t.Fatal(err)
	}
	if got := e.s.snap.Load(); !reflect.DeepEqual(got, want) {
		e.t.Fatalf("cache differs from the stored state:\n got %s\nwant %s", dumpSnap(got), dumpSnap(want))
	}
}

func dumpSnap(s *snapshot) string {
	var b bytes.Buffer
	for _, m := range []any{s.users, s.projects, s.shares, s.members, s.memberOf} {
		fmt.Fprintf(&b, "%v ", m)
	}
	return b.String()
}

// dumpKV returns every acl/ key and value, to show that a refused change wrote nothing.
func (e *env) dumpKV() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	err := e.kv.View(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte(prefix), nil, func(k, v []byte) (bool, error) {
			out[string(k)] = string(v)
			return true, nil
		})
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// as returns the Actor of a user of the world, resolved the way the daemon does it.
func (e *env) as(user string) Actor {
	e.t.Helper()
	uid, ok := worldUIDs[user]
	if !ok {
		e.t.Fatalf("no such test user %s", user)
	}
	a, err := e.s.ActorFor(ctx, uid)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) ok(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// wantErr checks that err is (or, for kind nil, is not) an error of kind.
func wantErr(t testing.TB, err, kind error) {
	t.Helper()
	switch {
	case kind == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case kind != nil && !errors.Is(err, kind):
		t.Fatalf("got error %v, want one of kind %q", err, kind)
	}
}

// The world most tests start from: two projects with an IAO and an IAA each, a share in
// each, members of both modes, an outsider and a disabled user.
var worldUIDs = map[string]int{
	"iao1": 1001, "iaa1": 1002, "mem1": 1003, "ro1": 1004, "out1": 1005,
	"iao2": 1006, "iaa2": 1007, "mem2": 1008, "dis1": 1009,
}

func (e *env) world() {
	e.t.Helper()
	names := make([]string, 0, len(worldUIDs))
	for id := range worldUIDs {
		names = append(names, id)
	}
	sort.Strings(names)
	for _, id := range names {
		_, err := e.s.CreateUser(ctx, operator, NewUser{ID: id, UID: worldUIDs[id], Email: id + "@example.ac.uk"})
		e.ok(err)
	}
	_, err := e.s.CreateProject(ctx, operator, "p1", "iao1")
	e.ok(err)
	_, err = e.s.CreateProject(ctx, operator, "p2", "iao2")
	e.ok(err)
	e.ok(e.s.AddIAA(ctx, e.as("iao1"), "p1", "iaa1"))
	e.ok(e.s.AddIAA(ctx, e.as("iao2"), "p2", "iaa2"))
	_, err = e.s.CreateShare(ctx, e.as("iao1"), "s1", "p1")
	e.ok(err)
	_, err = e.s.CreateShare(ctx, e.as("iaa2"), "s2", "p2")
	e.ok(err)
	e.ok(e.s.AddMember(ctx, e.as("iaa1"), "s1", "mem1", ReadWrite))
	e.ok(e.s.AddMember(ctx, e.as("iaa1"), "s1", "ro1", ReadOnly))
	e.ok(e.s.AddMember(ctx, e.as("iao2"), "s2", "mem2", ReadWrite))
	e.ok(e.s.AddMember(ctx, e.as("iao1"), "s1", "dis1", ReadWrite))
	e.ok(e.s.DisableUser(ctx, operator, "dis1"))
}

// Backends every suite test runs against.
func openMem(t testing.TB) kv.Store { return kv.NewMem() }

func openBadgerAt(t testing.TB, dir string, key *vault.Key) kv.Store {
	t.Helper()
	b, err := kv.OpenBadger(dir, key, kv.BadgerOptions{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openBadger(t testing.TB) kv.Store {
	t.Helper()
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return openBadgerAt(t, t.TempDir(), &k)
}

var backends = []struct {
	name string
	open func(testing.TB) kv.Store
}{
	{"mem", openMem},
	{"badger", openBadger},
}

// fixedNow is a clock for tests that compare creation times.
func fixedNow() time.Time { return time.Date(2025, 3, 1, 9, 30, 0, 123456789, time.UTC) }
