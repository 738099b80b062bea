package kvtest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"dsh/kv"
)

func testSnapshot(t *testing.T, s kv.Store) {
	fill(t, s, "s/a")
	err := s.View(ctx, func(tx kv.Txn) error {
		if _, err := tx.Get([]byte("s/a")); err != nil {
			return err
		}
		// Another transaction commits while this one is open.
		err := s.Update(ctx, func(tx kv.Txn) error {
			if err := tx.Delete([]byte("s/a")); err != nil {
				return err
			}
			return tx.Set([]byte("s/b"), []byte("v:s/b"))
		})
		if err != nil {
			return err
		}
		if _, err := tx.Get([]byte("s/a")); err != nil {
			return fmt.Errorf("snapshot lost a key deleted after it began: %w", err)
		}
		sameKeys(t, "scan of snapshot", scan(t, tx, []byte("s/"), nil, 0), "s/a")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, s, "s/a")
	want(t, s, "s/b", "v:s/b")
}

// interfere commits a write to key from inside a running transaction, which is the
// deterministic way to make that transaction lose a conflict.
func interfere(s kv.Store, key string) error {
	return s.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get([]byte(key))
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return tx.Set([]byte(key), append(v, '+'))
	})
}

func testConflictReruns(t *testing.T, s kv.Store) {
	set(t, s, "x", "")
	runs := 0
	err := s.Update(ctx, func(tx kv.Txn) error {
		runs++
		v, err := tx.Get([]byte("x"))
		if err != nil {
			return err
		}
		if runs == 1 {
			if err := interfere(s, "x"); err != nil {
				return err
			}
		}
		return tx.Set([]byte("x"), append(v, '!'))
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times; want 2 (one conflict, one retry)", runs)
	}
	want(t, s, "x", "+!")
}

func testScanConflict(t *testing.T, s kv.Store) {
	fill(t, s, "sc/1", "sc/2")
	runs := 0
	err := s.Update(ctx, func(tx kv.Txn) error {
		runs++
		n := 0
		err := tx.Scan([]byte("sc/"), nil, func(_, _ []byte) (bool, error) { n++; return true, nil })
		if err != nil {
			return err
		}
		if runs == 1 {
			if err := interfere(s, "sc/2"); err != nil {
				return err
			}
		}
		return tx.Set([]byte("count"), []byte(strconv.Itoa(n)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times; a key visited by Scan and changed meanwhile must conflict", runs)
	}
}

func testRetriesExhausted(t *testing.T, s kv.Store) {
	set(t, s, "hot", "")
	runs := 0
	err := s.Update(ctx, func(tx kv.Txn) error {
		runs++
		if _, err := tx.Get([]byte("hot")); err != nil {
			return err
		}
		if err := interfere(s, "hot"); err != nil {
			return err
		}
		return tx.Set([]byte("hot"), []byte("lost"))
	})
	if !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("Update that always conflicts = %v; want ErrConflict", err)
	}
	if runs < 2 {
		t.Fatalf("fn ran %d times; want retries", runs)
	}
	if v, _ := get(t, s, "hot"); len(v) != runs {
		t.Fatalf("hot = %q after %d runs; the losing writes must not land", v, runs)
	}
}

func testFnConflictNotRetried(t *testing.T, s kv.Store) {
	runs := 0
	err := s.Update(ctx, func(kv.Txn) error { runs++; return kv.ErrConflict })
	if err != kv.ErrConflict || runs != 1 {
		t.Fatalf("fn returning ErrConflict: Update = %v after %d runs; want it unchanged after 1", err, runs)
	}
}

func testConcurrentCounter(t *testing.T, s kv.Store) {
	const workers = 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			errs <- s.Update(ctx, func(tx kv.Txn) error {
				n := 0
				v, err := tx.Get([]byte("counter"))
				switch {
				case errors.Is(err, kv.ErrNotFound):
				case err != nil:
					return err
				default:
					if n, err = strconv.Atoi(string(v)); err != nil {
						return err
					}
				}
				return tx.Set([]byte("counter"), []byte(strconv.Itoa(n+1)))
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	want(t, s, "counter", strconv.Itoa(workers))
}

// testConcurrentTransfers moves units between accounts from several goroutines while others
// read: every snapshot must see the same total, and so must the end state.
func testConcurrentTransfers(t *testing.T, s kv.Store) {
	const accounts, start, workers, moves = 8, 100, 6, 25
	for i := range accounts {
		set(t, s, "acct/"+strconv.Itoa(i), strconv.Itoa(start))
	}
	total := func(tx kv.Txn) (int, error) {
		sum := 0
		err := tx.Scan([]byte("acct/"), nil, func(_, v []byte) (bool, error) {
			n, err := strconv.Atoi(string(v))
			sum += n
			return true, err
		})
		return sum, err
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for w := range workers {
		wg.Go(func() {
			for i := range moves {
				from, to := []byte("acct/"+strconv.Itoa((w+i)%accounts)), []byte("acct/"+strconv.Itoa((w+2*i+1)%accounts))
				err := s.Update(ctx, func(tx kv.Txn) error {
					a, err := tx.Get(from)
					if err != nil {
						return err
					}
					b, err := tx.Get(to)
					if err != nil {
						return err
					}
					na, _ := strconv.Atoi(string(a))
					nb, _ := strconv.Atoi(string(b))
					if bytes.Equal(from, to) {
						return nil
					}
					if err := tx.Set(from, []byte(strconv.Itoa(na-1))); err != nil {
						return err
					}
					return tx.Set(to, []byte(strconv.Itoa(nb+1)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for !stop.Load() {
				err := s.View(ctx, func(tx kv.Txn) error {
					sum, err := total(tx)
					if err == nil && sum != accounts*start {
						err = fmt.Errorf("a snapshot saw a total of %d; want %d", sum, accounts*start)
					}
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.View(ctx, func(tx kv.Txn) error {
		sum, err := total(tx)
		if err == nil && sum != accounts*start {
			err = fmt.Errorf("final total %d; want %d", sum, accounts*start)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
