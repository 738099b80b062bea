package acl

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"dsh/kv"
	"dsh/vault"
)

// The scale the issue asks Decide to be measured at.
const (
	benchUsers       = 1000
	benchShares      = 200
	benchMemberships = 10000
	benchProjects    = 20
	benchFirstUID    = 10000
)

type benchPair struct {
	uid   int
	share string
	op    Op
}

// benchFixture is built once per test binary: each benchmark function is called several
// times while the testing package sizes b.N, and building the store takes seconds.
var benchFixture struct {
	once  sync.Once
	s     *Store
	pairs []benchPair
	err   error
	close func()
}

// benchStore returns a Store built through its own API on Badger (with a no-op auditor):
// 1,000 users in 20 projects with 200 shares and 10,000 memberships, and random questions to
// ask it (about one in twenty from a uid without an account, most others from non-members).
func benchStore(b *testing.B) (*Store, []benchPair) {
	b.Helper()
	f := &benchFixture
	f.once.Do(func() { f.s, f.pairs, f.close, f.err = buildBenchStore() })
	if f.err != nil {
		b.Fatal(f.err)
	}
	return f.s, f.pairs
}

func buildBenchStore() (s *Store, pairs []benchPair, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "acl-bench-")
	if err != nil {
		return nil, nil, nil, err
	}
	k, err := vault.NewKey()
	if err != nil {
		return nil, nil, nil, err
	}
	db, err := kv.OpenBadger(dir, &k, kv.BadgerOptions{GCInterval: -1})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	cleanup = func() { db.Close(); os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	w, err := vault.NewKey()
	if err != nil {
		return nil, nil, nil, err
	}
	if s, err = New(db, &testWrapper{parent: w}, nopAuditor{}, Options{}); err != nil {
		return nil, nil, nil, err
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < benchUsers; i++ {
		if _, err = s.CreateUser(ctx, operator, NewUser{ID: fmt.Sprintf("u%04d", i), UID: benchFirstUID + i, Email: fmt.Sprintf("u%04d@example.ac.uk", i)}); err != nil {
			return nil, nil, nil, err
		}
	}
	for p := 0; p < benchProjects; p++ {
		if _, err = s.CreateProject(ctx, operator, fmt.Sprintf("p%02d", p), fmt.Sprintf("u%04d", p)); err != nil {
			return nil, nil, nil, err
		}
	}
	shares := make([]string, benchShares)
	for i := range shares {
		shares[i] = fmt.Sprintf("share-%03d", i)
		if _, err = s.CreateShare(ctx, operator, shares[i], fmt.Sprintf("p%02d", i%benchProjects)); err != nil {
			return nil, nil, nil, err
		}
	}
	perShare := benchMemberships / benchShares
	for _, sh := range shares {
		for _, u := range r.Perm(benchUsers)[:perShare] {
			mode := ReadWrite
			if r.IntN(3) == 0 {
				mode = ReadOnly
			}
			if err = s.AddMember(ctx, operator, sh, fmt.Sprintf("u%04d", u), mode); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	pairs = make([]benchPair, 1<<14)
	for i := range pairs {
		uid := benchFirstUID + r.IntN(benchUsers)
		if r.IntN(20) == 0 {
			uid = benchFirstUID + benchUsers + r.IntN(1000) // no account
		}
		pairs[i] = benchPair{uid: uid, share: shares[r.IntN(len(shares))], op: Op(1 + r.IntN(4))}
	}
	return s, pairs, cleanup, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchFixture.close != nil {
		benchFixture.close()
	}
	os.Exit(code)
}

// Sinks keep the compiler from dropping the decisions.
var (
	benchSink    int
	parallelSink atomic.Int64
)

func BenchmarkDecide(b *testing.B) {
	s, pairs := benchStore(b)
	allowed, i := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		p := pairs[i&(len(pairs)-1)]
		if s.Decide(p.uid, Group, p.share, p.op).Allow {
			allowed++
		}
		i++
	}
	benchSink = allowed
}

func BenchmarkDecideParallel(b *testing.B) {
	s, pairs := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		allowed, i := 0, rand.IntN(len(pairs))
		for pb.Next() {
			p := pairs[i&(len(pairs)-1)]
			if s.Decide(p.uid, Group, p.share, p.op).Allow {
				allowed++
			}
			i++
		}
		parallelSink.Add(int64(allowed))
	})
}

func BenchmarkSharesOf(b *testing.B) {
	s, pairs := benchStore(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		benchSink += len(s.SharesOf(pairs[i&(len(pairs)-1)].uid))
		i++
	}
}
