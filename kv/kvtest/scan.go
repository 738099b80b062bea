package kvtest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"dsh/kv"
)

// scan collects the keys Scan gives, stopping after limit keys (0: no limit).
func scan(t *testing.T, tx kv.Txn, prefix, start []byte, limit int) []string {
	t.Helper()
	var keys []string
	err := tx.Scan(prefix, start, func(k, v []byte) (bool, error) {
		if !bytes.Equal(v, append([]byte("v:"), k...)) {
			return false, fmt.Errorf("key %q has value %q", k, v)
		}
		keys = append(keys, string(k))
		return limit == 0 || len(keys) < limit, nil
	})
	if err != nil {
		t.Fatalf("scan %q from %q: %v", prefix, start, err)
	}
	return keys
}

func fill(t *testing.T, s kv.Store, keys ...string) {
	t.Helper()
	err := s.Update(ctx, func(tx kv.Txn) error {
		for _, k := range keys {
			if err := tx.Set([]byte(k), []byte("v:"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sameKeys(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("%s = %q; want %q", what, got, want)
	}
}

func testScan(t *testing.T, s kv.Store) {
	// Inserted out of order, with bytes that sort differently as signed values or as runes.
	fill(t, s, "p/b", "p/a", "p/\xff", "p/\x00", "p/ab", "o", "q", "p")
	err := s.View(ctx, func(tx kv.Txn) error {
		sameKeys(t, "prefix", scan(t, tx, []byte("p/"), nil, 0), "p/\x00", "p/a", "p/ab", "p/b", "p/\xff")
		sameKeys(t, "start inclusive", scan(t, tx, []byte("p/"), []byte("p/ab"), 0), "p/ab", "p/b", "p/\xff")
		sameKeys(t, "start between keys", scan(t, tx, []byte("p/"), []byte("p/aa"), 0), "p/ab", "p/b", "p/\xff")
		sameKeys(t, "start before prefix", scan(t, tx, []byte("p/"), []byte("a"), 0), "p/\x00", "p/a", "p/ab", "p/b", "p/\xff")
		sameKeys(t, "start after prefix", scan(t, tx, []byte("p/"), []byte("q"), 0))
		sameKeys(t, "early stop", scan(t, tx, []byte("p/"), nil, 2), "p/\x00", "p/a")
		sameKeys(t, "no match", scan(t, tx, []byte("zz"), nil, 0))
		sameKeys(t, "nil prefix", scan(t, tx, nil, nil, 0), "o", "p", "p/\x00", "p/a", "p/ab", "p/b", "p/\xff", "q")
		sameKeys(t, "key equal to prefix", scan(t, tx, []byte("p"), nil, 3), "p", "p/\x00", "p/a")
		stop := errors.New("stop")
		calls := 0
		err := tx.Scan([]byte("p/"), nil, func(k, v []byte) (bool, error) {
			calls++
			return true, stop
		})
		if err != stop || calls != 1 {
			t.Errorf("Scan with failing fn = %v after %d calls; want fn's error after 1", err, calls)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testScanOwnWrites(t *testing.T, s kv.Store) {
	fill(t, s, "d/1", "d/2", "d/3")
	err := s.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Delete([]byte("d/2")); err != nil {
			return err
		}
		if err := tx.Set([]byte("d/0"), []byte("v:d/0")); err != nil {
			return err
		}
		if err := tx.Set([]byte("d/3"), []byte("v:d/3")); err != nil { // same value, rewritten
			return err
		}
		if err := tx.Set([]byte("d/4"), []byte("v:d/4")); err != nil {
			return err
		}
		sameKeys(t, "own writes", scan(t, tx, []byte("d/"), nil, 0), "d/0", "d/1", "d/3", "d/4")
		sameKeys(t, "own writes from start", scan(t, tx, []byte("d/"), []byte("d/2"), 0), "d/3", "d/4")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testScanCallbackWrites(t *testing.T, s kv.Store) {
	var keys []string
	for i := range 200 { // more than one internal chunk of any implementation that pages
		keys = append(keys, fmt.Sprintf("n/%03d", i))
	}
	fill(t, s, keys...)
	err := s.Update(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte("n/"), nil, func(k, _ []byte) (bool, error) {
			// Writes and a nested Scan from inside the callback must neither fail nor
			// disturb the running Scan.
			if err := tx.Set(append([]byte("m/"), k[2:]...), []byte("copied")); err != nil {
				return false, err
			}
			if err := tx.Delete(k); err != nil {
				return false, err
			}
			return true, tx.Scan([]byte("n/"), nil, func(_, _ []byte) (bool, error) { return false, nil })
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx kv.Txn) error {
		n, m := 0, 0
		if err := tx.Scan([]byte("n/"), nil, func(_, _ []byte) (bool, error) { n++; return true, nil }); err != nil {
			return err
		}
		if err := tx.Scan([]byte("m/"), nil, func(_, _ []byte) (bool, error) { m++; return true, nil }); err != nil {
			return err
		}
		if n != 0 || m != len(keys) {
			return fmt.Errorf("after moving: %d keys left under n/, %d under m/; want 0 and %d", n, m, len(keys))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
