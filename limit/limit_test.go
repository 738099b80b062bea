package limit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBudgetBoundsAndClamps(t *testing.T) {
	b := NewBudget(100, 50*time.Millisecond)
	rel, err := b.Acquire(context.Background(), 64)
	if err != nil {
		t.Fatal(err)
	}
	// 64 + 64 > 100: the second waits, then is told the daemon is busy.
	if _, err := b.Acquire(context.Background(), 64); !errors.Is(err, ErrBusy) {
		t.Fatalf("over budget: err = %v, want ErrBusy", err)
	}
	small, err := b.Acquire(context.Background(), 19)
	if err != nil {
		t.Fatalf("a small request that fits: %v", err)
	}
	small()
	rel()
	// More than the whole budget runs alone rather than never.
	big, err := b.Acquire(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(context.Background(), 1); !errors.Is(err, ErrBusy) {
		t.Fatalf("beside a whole-budget holder: err = %v", err)
	}
	big()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewBudget(1, time.Second).Acquire(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: err = %v", err)
	}
}

// Concurrent holders never exceed the budget.
func TestBudgetConcurrent(t *testing.T) {
	b := NewBudget(96, 10*time.Second)
	var in, peak atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(n int64) {
			defer wg.Done()
			rel, err := b.Acquire(context.Background(), n)
			if err != nil {
				t.Error(err)
				return
			}
			cur := in.Add(n)
			for {
				p := peak.Load()
				if cur <= p || peak.CompareAndSwap(p, cur) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			in.Add(-n)
			rel()
		}([]int64{64, 19}[i%2])
	}
	wg.Wait()
	if peak.Load() > 96 {
		t.Fatalf("peak %d over the budget of 96", peak.Load())
	}
}

func TestPerKey(t *testing.T) {
	p := NewPerKey[int](2)
	if !p.TryAcquire(1) || !p.TryAcquire(1) {
		t.Fatal("under the cap refused")
	}
	if p.TryAcquire(1) {
		t.Fatal("third for one key allowed")
	}
	if !p.TryAcquire(2) {
		t.Fatal("another key refused because of the first")
	}
	p.Release(1)
	if !p.TryAcquire(1) {
		t.Fatal("released slot not reusable")
	}
	p.Release(1)
	p.Release(1)
	p.Release(1) // one too many: harmless
	p.Release(2)
	if len(p.held) != 0 {
		t.Fatalf("entries left for keys that hold nothing: %v", p.held)
	}
}

// A key with many waiting requests does not keep a second key's one request waiting: the
// next slot that comes free goes to the key holding fewer.
func TestFairTurns(t *testing.T) {
	f := NewFair[string](2)
	bg := context.Background()
	// "hog" takes both slots and queues three more.
	for i := 0; i < 2; i++ {
		if err := f.Acquire(bg, "hog"); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan string, 8)
	for i := 0; i < 3; i++ {
		go func() {
			if f.Acquire(bg, "hog") == nil {
				got <- "hog"
			}
		}()
	}
	waitQueued(t, f, "hog", 3)
	go func() {
		if f.Acquire(bg, "fifth") == nil {
			got <- "fifth"
		}
	}()
	waitQueued(t, f, "fifth", 1)
	f.Release("hog")
	if who := <-got; who != "fifth" {
		t.Fatalf("the freed slot went to %s, want the key holding none", who)
	}
	if f.Held("fifth") != 1 || f.Held("hog") != 1 {
		t.Fatalf("held: fifth %d hog %d", f.Held("fifth"), f.Held("hog"))
	}
	// The rest of hog's waiters get the slots as they come free.
	f.Release("fifth")
	f.Release("hog")
	for i := 0; i < 2; i++ {
		if who := <-got; who != "hog" {
			t.Fatalf("got %s", who)
		}
	}
}

func waitQueued[K comparable](t *testing.T, f *Fair[K], k K, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		q := len(f.queues[k])
		f.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: %d waiting, want %d", k, q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A waiter whose context ends leaves the queue, and a slot handed to it as it gave up is
// passed on, never lost.
func TestFairCancel(t *testing.T) {
	f := NewFair[int](1)
	bg := context.Background()
	if err := f.Acquire(bg, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	if err := f.Acquire(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	f.Release(1)
	if err := f.Acquire(bg, 3); err != nil {
		t.Fatal(err)
	}
	f.Release(3)
	// Under a race of cancels and releases the slot count stays whole.
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(bg, time.Duration(i%3)*time.Millisecond)
			defer cancel()
			if f.Acquire(ctx, i%7) == nil {
				f.Release(i % 7)
			}
		}(i)
	}
	wg.Wait()
	if f.free != 1 || len(f.held) != 0 || len(f.order) != 0 || len(f.queues) != 0 {
		t.Fatalf("after the race: free %d held %v order %v queues %d", f.free, f.held, f.order, len(f.queues))
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestBackoffGrowsAndForgets(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	b := NewBackoff[string](BackoffPolicy{Free: 3, Base: time.Second, Max: 8 * time.Second, Forget: time.Minute, MaxKeys: 100}, c.now)
	for i := 0; i < 3; i++ {
		if ok, _ := b.Allow("a"); !ok {
			t.Fatalf("attempt %d refused within the free ones", i+1)
		}
		b.Fail("a")
	}
	var waits []time.Duration
	for i := 0; i < 6; i++ {
		ok, w := b.Allow("a")
		if ok {
			t.Fatalf("attempt after %d failures allowed at once", 3+i)
		}
		waits = append(waits, w)
		c.t = c.t.Add(w)
		if ok, _ := b.Allow("a"); !ok {
			t.Fatal("refused after waiting as told")
		}
		b.Fail("a")
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i, w := range waits {
		if w != want[i]*time.Second {
			t.Fatalf("waits %v, want %v seconds", waits, want)
		}
	}
	if ok, _ := b.Allow("b"); !ok {
		t.Fatal("another key throttled")
	}
	c.t = c.t.Add(time.Minute + time.Second)
	if ok, _ := b.Allow("a"); !ok || b.Len() != 0 {
		t.Fatal("not forgotten after the quiet period")
	}
	b.Fail("a")
	b.Reset("a")
	if b.Len() != 0 {
		t.Fatal("Reset kept the key")
	}
}

// However many keys fail, the Backoff remembers at most MaxKeys, dropping the stalest.
func TestBackoffBoundedKeys(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	b := NewBackoff[int](BackoffPolicy{Free: 0, Base: time.Second, Max: time.Minute, Forget: time.Hour, MaxKeys: 10}, c.now)
	for i := 0; i < 1000; i++ {
		c.t = c.t.Add(time.Millisecond)
		b.Fail(i)
	}
	if b.Len() != 10 {
		t.Fatalf("%d keys remembered, want 10", b.Len())
	}
	if ok, _ := b.Allow(999); ok {
		t.Fatal("the newest key was dropped")
	}
	if ok, _ := b.Allow(0); !ok {
		t.Fatal("the oldest key was kept")
	}
}

// Acquire waits its turn per key; a waiter that gives up leaves no trace, and a slot handed
// over as it gave up is passed on.
func TestPerKeyAcquireWaits(t *testing.T) {
	p := NewPerKey[int](1)
	bg := context.Background()
	if err := p.Acquire(bg, 1); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func(i int) {
			if p.Acquire(bg, 1) == nil {
				got <- i
			}
		}(i)
		deadline := time.Now().Add(10 * time.Second)
		for {
			p.mu.Lock()
			n := len(p.waiting[1])
			p.mu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("waiter did not queue")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := p.Acquire(bg, 2); err != nil {
		t.Fatal("another key waited for key 1")
	}
	p.Release(1)
	if first := <-got; first != 0 {
		t.Fatalf("waiter %d went first", first)
	}
	p.Release(1)
	<-got
	p.Release(1)
	p.Release(2)
	ctx, cancel := context.WithTimeout(bg, 10*time.Millisecond)
	defer cancel()
	p.Acquire(bg, 3)
	if err := p.Acquire(ctx, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	p.Release(3)
	if len(p.held) != 0 || len(p.waiting) != 0 {
		t.Fatalf("left: held %v waiting %v", p.held, p.waiting)
	}
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(bg, time.Duration(i%3)*time.Millisecond)
			defer cancel()
			if p.Acquire(ctx, i%5) == nil {
				p.Release(i % 5)
			}
		}(i)
	}
	wg.Wait()
	if len(p.held) != 0 || len(p.waiting) != 0 {
		t.Fatalf("after the race: held %v waiting %v", p.held, p.waiting)
	}
}
