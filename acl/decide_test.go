package acl

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func testDecide(t *testing.T, e *env) {
	e.world()
	u := worldUIDs
	allow := func(m Mode) Decision { return Decision{Allow: true, Reason: ReasonOK, Mode: m} }
	deny := func(r Reason) Decision { return Decision{Reason: r} }
	cases := []struct {
		uid  int
		tree Tree
		name string
		op   Op
		want Decision
	}{
		// Group: read-write members do everything.
		{u["mem1"], Group, "s1", Read, allow(ReadWrite)},
		{u["mem1"], Group, "s1", List, allow(ReadWrite)},
		{u["mem1"], Group, "s1", Write, allow(ReadWrite)},
		{u["mem1"], Group, "s1", Delete, allow(ReadWrite)},
		// Read-only members read and list.
		{u["ro1"], Group, "s1", Read, allow(ReadOnly)},
		{u["ro1"], Group, "s1", List, allow(ReadOnly)},
		{u["ro1"], Group, "s1", Write, Decision{Reason: ReasonReadOnly, Mode: ReadOnly}},
		{u["ro1"], Group, "s1", Delete, Decision{Reason: ReasonReadOnly, Mode: ReadOnly}},
		// Everyone else: not a member, whether the share exists or not.
		{u["mem1"], Group, "s2", Read, deny(ReasonNotMember)},
		{u["out1"], Group, "s1", List, deny(ReasonNotMember)},
		{u["out1"], Group, "zz", Read, deny(ReasonNotMember)},
		{u["out1"], Group, "", Read, deny(ReasonNotMember)},
		{u["iao1"], Group, "s1", Read, deny(ReasonNotMember)}, // managers are not members
		{u["iaa1"], Group, "s1", List, deny(ReasonNotMember)},
		// No account, root included; disabled accounts.
		{0, Group, "s1", Read, deny(ReasonNoAccount)},
		{0, Arrivals, "mem1", Read, deny(ReasonNoAccount)},
		{4242, Group, "s1", Read, deny(ReasonNoAccount)},
		{-1, Group, "s1", Read, deny(ReasonNoAccount)},
		{u["dis1"], Group, "s1", Read, deny(ReasonDisabled)},
		{u["dis1"], Arrivals, "dis1", Read, deny(ReasonDisabled)},
		// Arrivals: the owner reads, lists and deletes; nobody writes from inside.
		{u["mem1"], Arrivals, "mem1", Read, allow("")},
		{u["mem1"], Arrivals, "mem1", List, allow("")},
		{u["mem1"], Arrivals, "mem1", Delete, allow("")},
		{u["mem1"], Arrivals, "mem1", Write, deny(ReasonInboundOnly)},
		{u["mem1"], Arrivals, "ro1", Read, deny(ReasonNotOwner)},
		{u["iao1"], Arrivals, "mem1", List, deny(ReasonNotOwner)},
		{u["mem1"], Arrivals, "zz", Read, deny(ReasonNotOwner)},
		// A caller's bug denies.
		{u["mem1"], 0, "s1", Read, deny(ReasonInvalid)},
		{u["mem1"], Group, "s1", 0, deny(ReasonInvalid)},
		{u["mem1"], Tree(9), "s1", Read, deny(ReasonInvalid)},
		{u["mem1"], Group, "s1", Op(9), deny(ReasonInvalid)},
	}
	for _, c := range cases {
		if got := e.s.Decide(c.uid, c.tree, c.name, c.op); got != c.want {
			t.Errorf("Decide(%d, %s, %q, %s) = %+v, want %+v", c.uid, c.tree, c.name, c.op, got, c.want)
		}
	}
	known := map[Reason]bool{}
	for _, r := range Reasons() {
		known[r] = true
	}
	for _, c := range cases {
		if !known[c.want.Reason] {
			t.Errorf("reason %q is not in Reasons()", c.want.Reason)
		}
	}
}

// testDecisionsChangeAtOnce: every change is visible to Decide when its method returns.
func testDecisionsChangeAtOnce(t *testing.T, e *env) {
	e.world()
	uid, iao := worldUIDs["out1"], e.as("iao1")
	check := func(op Op, want Reason) {
		t.Helper()
		if d := e.s.Decide(uid, Group, "s1", op); d.Reason != want || d.Allow != (want == ReasonOK) {
			t.Fatalf("Decide(%s) = %+v, want %s", op, d, want)
		}
	}
	check(Read, ReasonNotMember)
	e.ok(e.s.AddMember(ctx, iao, "s1", "out1", ReadOnly))
	check(Read, ReasonOK)
	check(Write, ReasonReadOnly)
	e.ok(e.s.AddMember(ctx, iao, "s1", "out1", ReadWrite))
	check(Write, ReasonOK)
	e.ok(e.s.DisableUser(ctx, operator, "out1"))
	check(Read, ReasonDisabled)
	e.ok(e.s.EnableUser(ctx, operator, "out1"))
	check(Write, ReasonOK)
	e.ok(e.s.RemoveMember(ctx, iao, "s1", "out1"))
	check(Read, ReasonNotMember)
	// A new account can use its Arrivals at once.
	_, err := e.s.CreateUser(ctx, operator, NewUser{ID: "newbie", UID: 3000, Email: "n@x.y"})
	e.ok(err)
	if d := e.s.Decide(3000, Arrivals, "newbie", List); !d.Allow {
		t.Fatalf("new user's Arrivals: %+v", d)
	}
}

// testConcurrentDecide runs Decide from many goroutines while memberships change, and checks
// that no reader sees a state older than a change whose method has returned.
func testConcurrentDecide(t *testing.T, e *env) {
	e.world()
	iao := e.as("iao1")
	uids := []int{worldUIDs["mem1"], worldUIDs["ro1"], worldUIDs["out1"], worldUIDs["mem2"], 4242}
	// out1 cycles through three states, one step per change: not a member, read-only,
	// read-write. phase counts the changes that have returned. A reader that read phase p
	// before and after its Decide may see state p, or p+1 (published, not yet counted),
	// never p-1.
	reasonState := map[Reason]int64{ReasonNotMember: 0, ReasonReadOnly: 1, ReasonOK: 2}
	var phase atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for !stop.Load() {
				p := phase.Load()
				d := e.s.Decide(worldUIDs["out1"], Group, "s1", Write)
				st, ok := reasonState[d.Reason]
				// When a change returned during the Decide, all three states are fair.
				if !ok || (phase.Load() == p && st != p%3 && st != (p+1)%3) {
					bad.Store(fmt.Sprintf("after %d changes: %+v", p, d))
				}
				uid := uids[r.IntN(len(uids))]
				_ = e.s.Decide(uid, Group, []string{"s1", "s2"}[r.IntN(2)], Op(1+r.IntN(4)))
				_ = e.s.SharesOf(uid)
			}
		}()
	}
	for i := 0; i < 20; i++ {
		e.ok(e.s.AddMember(ctx, iao, "s1", "out1", ReadOnly))
		phase.Add(1)
		e.ok(e.s.AddMember(ctx, iao, "s1", "out1", ReadWrite))
		phase.Add(1)
		e.ok(e.s.RemoveMember(ctx, iao, "s1", "out1"))
		phase.Add(1)
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a reader saw a decision older than a returned change: %s", v)
	}
	e.checkCache()
}

// testConcurrentWriters: changes from many goroutines leave the cache equal to the store.
func testConcurrentWriters(t *testing.T, e *env) {
	e.world()
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			users := []string{"out1", "mem2", "iaa2", "ro1"}
			modes := []Mode{ReadWrite, ReadOnly}
			for i := 0; i < 8; i++ {
				u := users[(g+i)%len(users)]
				// Errors are expected (ErrExists, ErrNotFound) as goroutines collide.
				if (g+i)%3 == 0 {
					_ = e.s.RemoveMember(ctx, e.as("iao1"), "s1", u)
				} else {
					_ = e.s.AddMember(ctx, e.as("iaa1"), "s1", u, modes[(g*i)%2])
				}
			}
		}()
	}
	wg.Wait()
	e.checkCache()
	// The two indexes agree.
	snap := e.s.snap.Load()
	for share, members := range snap.members {
		for user, mode := range members {
			if snap.memberOf[user][share] != mode {
				t.Fatalf("member index says %s %s %s, reverse index %q", share, user, mode, snap.memberOf[user][share])
			}
		}
	}
}
