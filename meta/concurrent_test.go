package meta

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// race runs fn(i) for i in [0, n) in goroutines released together.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// testConcurrentSameName: of concurrent creates of one name, exactly one wins, whether they
// meet on the stripe lock of one Store or on kv's conflict detection between two.
func testConcurrentSameName(t *testing.T, e *env) {
	other := New(e.db, Options{Now: e.clk.now})
	stores := []*Store{e.s, other}
	for round := range 20 {
		name := fmt.Sprintf("n%d", round)
		var (
			mu        sync.Mutex
			won, lost int
			winner    Attr
		)
		race(8, func(i int) {
			kind := []Kind{KindFile, KindDir, KindSymlink}[i%3]
			a, err := stores[i%2].Create(ctx, e.root.Ino, name, kind, 0o644, "t", Content{})
			switch {
			case err == nil:
				mu.Lock()
				won++
				winner = a
				mu.Unlock()
			case errors.Is(err, ErrExists):
				mu.Lock()
				lost++
				mu.Unlock()
			default:
				t.Error(err)
			}
		})
		if won != 1 || lost != 7 {
			t.Fatalf("round %d: %d won, %d lost", round, won, lost)
		}
		if got := e.lookup(e.root.Ino, name); got.Ino != winner.Ino {
			t.Fatalf("lookup finds %d, winner %d", got.Ino, winner.Ino)
		}
	}
	e.check()
}

// testConcurrentTwoStores: creates of different names in one directory from two Stores
// (which conflict in kv) all succeed, with distinct inode numbers.
func testConcurrentTwoStores(t *testing.T, e *env) {
	other := New(e.db, Options{Now: e.clk.now})
	stores := []*Store{e.s, other}
	d := e.dir(e.root.Ino, "d")
	var mu sync.Mutex
	inos := map[Ino]bool{}
	race(8, func(i int) {
		for j := range 25 {
			a, err := stores[i%2].Create(ctx, d.Ino, fmt.Sprintf("g%d-%d", i, j), KindFile, 0o644, "", Content{})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if inos[a.Ino] {
				t.Errorf("inode %d allocated twice", a.Ino)
			}
			inos[a.Ino] = true
			mu.Unlock()
		}
	})
	if got := len(e.names(d.Ino)); got != 200 {
		t.Fatalf("%d entries", got)
	}
	e.check()
}

// testConcurrentRenameCycle: two opposite moves (a into b, b into a) from two Stores can
// never both succeed, which would detach both directories in a loop.
func testConcurrentRenameCycle(t *testing.T, e *env) {
	other := New(e.db, Options{Now: e.clk.now})
	root := e.root.Ino
	for round := range 20 {
		an, bn := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
		a := e.dir(root, an)
		b := e.dir(root, bn)
		// Deeper targets make the ancestor walk longer.
		c := e.dir(b.Ino, "c")
		var errs [2]error
		race(2, func(i int) {
			if i == 0 {
				_, errs[0] = e.s.Rename(ctx, root, an, c.Ino, an, 0)
			} else {
				_, errs[1] = other.Rename(ctx, root, bn, a.Ino, bn, 0)
			}
		})
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound):
			default:
				t.Fatal(err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d of two opposite moves succeeded: %v", round, ok, errs)
		}
	}
	e.check()
}

// testConcurrentMixed runs random operations from several goroutines and two Stores on a
// small tree, then checks every invariant of the namespace.
func testConcurrentMixed(t *testing.T, e *env) {
	other := New(e.db, Options{Now: e.clk.now})
	stores := []*Store{e.s, other}
	root := e.root.Ino
	dirs := []Ino{root}
	for i := range 3 {
		dirs = append(dirs, e.dir(root, fmt.Sprintf("d%d", i)).Ino)
	}
	names := []string{"a", "b", "c", "d"}
	expected := []error{ErrExists, ErrNotFound, ErrNotEmpty, ErrIsDir, ErrNotDir, ErrInvalid}
	ops := 200
	if testing.Short() {
		ops = 50
	}
	race(6, func(g int) {
		r := rand.New(rand.NewPCG(uint64(g), 1))
		s := stores[g%2]
		pick := func() (Ino, string) { return dirs[r.IntN(len(dirs))], names[r.IntN(len(names))] }
		for range ops {
			p, n := pick()
			var err error
			switch r.IntN(9) {
			case 0, 1:
				_, err = s.Create(ctx, p, n, KindFile, 0o644, "", Content{})
			case 2:
				_, err = s.Create(ctx, p, n, KindDir, 0o755, "", Content{})
			case 3:
				var a Attr
				if a, err = s.Unlink(ctx, p, n); err == nil && a.Nlink == 0 {
					err = s.Reap(ctx, a.Ino)
				}
			case 4:
				err = s.Rmdir(ctx, p, n)
			case 5, 6:
				p2, n2 := pick()
				flags := []RenameFlags{0, 0, RenameNoReplace, RenameExchange}[r.IntN(4)]
				var orph []Ino
				if orph, err = s.Rename(ctx, p, n, p2, n2, flags); err == nil && len(orph) > 0 && r.IntN(2) == 0 {
					err = s.Reap(ctx, orph[0])
				}
			case 7:
				var a Attr
				if a, err = s.Lookup(ctx, p, n); err == nil {
					p2, n2 := pick()
					_, err = s.Link(ctx, a.Ino, p2, n2)
				}
			case 8:
				var a Attr
				if a, err = s.Lookup(ctx, p, n); err == nil && a.Kind == KindFile {
					_, err = s.SetContent(ctx, a.Ino, r.Int64N(1000), Content{Segments: segs(r.IntN(3))}, 1)
				}
			}
			if err != nil && !isAny(err, expected) {
				t.Errorf("goroutine %d: %v", g, err)
				return
			}
		}
	})
	if _, err := e.s.ReapAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.check()
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
