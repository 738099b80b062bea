// Package kvtest is the conformance suite every kv.Store implementation must pass, so that
// Mem, Badger and any later backend behave the same to the code above them.
package kvtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"dsh/kv"
)

// Run runs the suite. open returns a fresh, empty store for one subtest and arranges for it
// to be closed when that subtest ends (the suite may close it earlier; Close is idempotent).
func Run(t *testing.T, open func(t *testing.T) kv.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, kv.Store)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"EmptyValue", testEmptyValue},
		{"ReadYourOwnWrites", testReadYourOwnWrites},
		{"FailedUpdateWritesNothing", testFailedUpdate},
		{"ViewIsReadOnly", testViewIsReadOnly},
		{"Scan", testScan},
		{"ScanOwnWrites", testScanOwnWrites},
		{"ScanCallbackWritesAndNests", testScanCallbackWrites},
		{"GetReturnsCopy", testGetReturnsCopy},
		{"SetCopiesArguments", testSetCopies},
		{"LargeValue", testLargeValue},
		{"Limits", testLimits},
		{"TxnAfterFn", testTxnAfterFn},
		{"Snapshot", testSnapshot},
		{"ConflictReruns", testConflictReruns},
		{"ScanConflict", testScanConflict},
		{"RetriesExhausted", testRetriesExhausted},
		{"FnConflictNotRetried", testFnConflictNotRetried},
		{"ConcurrentCounter", testConcurrentCounter},
		{"ConcurrentTransfers", testConcurrentTransfers},
		{"CanceledContext", testCanceledContext},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

func set(t *testing.T, s kv.Store, key, value string) {
	t.Helper()
	if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte(key), []byte(value)) }); err != nil {
		t.Fatalf("set %q: %v", key, err)
	}
}

// get returns the value of key in a fresh View, or ErrNotFound.
func get(t *testing.T, s kv.Store, key string) (string, error) {
	t.Helper()
	var v []byte
	err := s.View(ctx, func(tx kv.Txn) error {
		var err error
		v, err = tx.Get([]byte(key))
		return err
	})
	return string(v), err
}

func want(t *testing.T, s kv.Store, key, value string) {
	t.Helper()
	got, err := get(t, s, key)
	if err != nil || got != value {
		t.Fatalf("get %q = %q, %v; want %q", key, got, err, value)
	}
}

func wantAbsent(t *testing.T, s kv.Store, key string) {
	t.Helper()
	if got, err := get(t, s, key); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("get %q = %q, %v; want ErrNotFound", key, got, err)
	}
}

func testGetSetDelete(t *testing.T, s kv.Store) {
	wantAbsent(t, s, "a")
	set(t, s, "a", "1")
	want(t, s, "a", "1")
	set(t, s, "a", "2")
	want(t, s, "a", "2")
	del := func(key string) error {
		return s.Update(ctx, func(tx kv.Txn) error { return tx.Delete([]byte(key)) })
	}
	if err := del("a"); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, s, "a")
	if err := del("never-there"); err != nil {
		t.Fatalf("delete of an absent key: %v", err)
	}
}

func testEmptyValue(t *testing.T, s kv.Store) {
	set(t, s, "e", "")
	err := s.View(ctx, func(tx kv.Txn) error {
		v, err := tx.Get([]byte("e"))
		if err != nil || v == nil || len(v) != 0 {
			return fmt.Errorf("get = %#v, %v; want empty non-nil", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testReadYourOwnWrites(t *testing.T, s kv.Store) {
	set(t, s, "old", "x")
	err := s.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Set([]byte("new"), []byte("n")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("new")); err != nil || string(v) != "n" {
			return fmt.Errorf("own set: %q, %v", v, err)
		}
		if err := tx.Delete([]byte("old")); err != nil {
			return err
		}
		if _, err := tx.Get([]byte("old")); !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("own delete: get gave %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want(t, s, "new", "n")
	wantAbsent(t, s, "old")
}

func testFailedUpdate(t *testing.T, s kv.Store) {
	set(t, s, "keep", "1")
	boom := errors.New("boom")
	runs := 0
	err := s.Update(ctx, func(tx kv.Txn) error {
		runs++
		if err := tx.Set([]byte("keep"), []byte("2")); err != nil {
			return err
		}
		if err := tx.Set([]byte("added"), []byte("x")); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) || err.Error() != "wrapped: boom" {
		t.Fatalf("Update = %v; want fn's error unchanged", err)
	}
	if runs != 1 {
		t.Fatalf("fn ran %d times; an error must not be retried", runs)
	}
	want(t, s, "keep", "1")
	wantAbsent(t, s, "added")
	boomView := s.View(ctx, func(kv.Txn) error { return boom })
	if boomView != boom {
		t.Fatalf("View = %v; want fn's error unchanged", boomView)
	}
}

func testViewIsReadOnly(t *testing.T, s kv.Store) {
	err := s.View(ctx, func(tx kv.Txn) error {
		if err := tx.Set([]byte("k"), []byte("v")); !errors.Is(err, kv.ErrReadOnly) {
			return fmt.Errorf("Set in View = %v; want ErrReadOnly", err)
		}
		if err := tx.Delete([]byte("k")); !errors.Is(err, kv.ErrReadOnly) {
			return fmt.Errorf("Delete in View = %v; want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, s, "k")
}

func testGetReturnsCopy(t *testing.T, s kv.Store) {
	set(t, s, "c", "original")
	err := s.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get([]byte("c"))
		if err != nil {
			return err
		}
		copy(v, "XXXXXXXX")
		again, err := tx.Get([]byte("c"))
		if err != nil || string(again) != "original" {
			return fmt.Errorf("after mutating a returned value, get = %q, %v", again, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var v []byte
	err = s.View(ctx, func(tx kv.Txn) error {
		var err error
		v, err = tx.Get([]byte("c"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	copy(v, "YYYYYYYY") // after the transaction ended
	want(t, s, "c", "original")
}

func testSetCopies(t *testing.T, s kv.Store) {
	key, value := []byte("k1"), []byte("v1")
	err := s.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Set(key, value); err != nil {
			return err
		}
		copy(key, "k2") // reused before commit, as a caller's buffer would be
		copy(value, "v2")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want(t, s, "k1", "v1")
	wantAbsent(t, s, "k2")
}

func testLargeValue(t *testing.T, s kv.Store) {
	big := make([]byte, kv.MaxValueSize)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("big"), big) })
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx kv.Txn) error {
		v, err := tx.Get([]byte("big"))
		if err != nil || !bytes.Equal(v, big) {
			return fmt.Errorf("get of a MaxValueSize value: %d bytes, %v", len(v), err)
		}
		return tx.Scan([]byte("big"), nil, func(_, v []byte) (bool, error) {
			if !bytes.Equal(v, big) {
				return false, errors.New("scan of 1 MiB value differs")
			}
			return false, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testLimits(t *testing.T, s kv.Store) {
	expect := func(what string, target error, fn func(tx kv.Txn) error) {
		t.Helper()
		if err := s.Update(ctx, fn); !errors.Is(err, target) {
			t.Errorf("%s: %v; want %v", what, err, target)
		}
	}
	setKey := func(k []byte) func(kv.Txn) error {
		return func(tx kv.Txn) error { return tx.Set(k, nil) }
	}
	expect("empty key", kv.ErrInvalidKey, setKey(nil))
	expect("get of empty key", kv.ErrInvalidKey, func(tx kv.Txn) error { _, err := tx.Get(nil); return err })
	expect("key too long", kv.ErrInvalidKey, setKey(make([]byte, kv.MaxKeySize+1)))
	expect("reserved prefix", kv.ErrInvalidKey, setKey([]byte(kv.ReservedPrefix+"head")))
	expect("longest key", nil, setKey(bytes.Repeat([]byte("k"), kv.MaxKeySize)))
	expect("value too big", kv.ErrTooBig, func(tx kv.Txn) error {
		return tx.Set([]byte("v"), make([]byte, kv.MaxValueSize+1))
	})
	writes := func(n int) func(kv.Txn) error {
		return func(tx kv.Txn) error {
			for i := range n {
				if err := tx.Set([]byte("w/"+strconv.Itoa(i)), []byte("x")); err != nil {
					return err
				}
			}
			return nil
		}
	}
	expect("MaxTxnWrites writes", nil, writes(kv.MaxTxnWrites))
	expect("one write too many", kv.ErrTooBig, writes(kv.MaxTxnWrites+1))
	bytesUpTo := func(extra int) func(kv.Txn) error {
		return func(tx kv.Txn) error {
			if err := tx.Set([]byte("b1"), make([]byte, kv.MaxValueSize)); err != nil {
				return err
			}
			return tx.Set([]byte("b2"), make([]byte, kv.MaxTxnBytes-kv.MaxValueSize-4+extra))
		}
	}
	expect("MaxTxnBytes bytes", nil, bytesUpTo(0))
	expect("one byte too many", kv.ErrTooBig, bytesUpTo(1))
}

func testTxnAfterFn(t *testing.T, s kv.Store) {
	for _, run := range []func(func(kv.Txn) error) error{
		func(fn func(kv.Txn) error) error { return s.View(ctx, fn) },
		func(fn func(kv.Txn) error) error { return s.Update(ctx, fn) },
	} {
		var kept kv.Txn
		if err := run(func(tx kv.Txn) error { kept = tx; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := kept.Get([]byte("k")); !errors.Is(err, kv.ErrTxnDone) {
			t.Errorf("Get after fn: %v", err)
		}
		if err := kept.Set([]byte("k"), nil); !errors.Is(err, kv.ErrTxnDone) {
			t.Errorf("Set after fn: %v", err)
		}
		if err := kept.Delete([]byte("k")); !errors.Is(err, kv.ErrTxnDone) {
			t.Errorf("Delete after fn: %v", err)
		}
		err := kept.Scan(nil, nil, func(_, _ []byte) (bool, error) { return true, nil })
		if !errors.Is(err, kv.ErrTxnDone) {
			t.Errorf("Scan after fn: %v", err)
		}
	}
}

func testCanceledContext(t *testing.T, s kv.Store) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	fn := func(kv.Txn) error { ran = true; return nil }
	if err := s.View(c, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("View with canceled context = %v", err)
	}
	if err := s.Update(c, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with canceled context = %v", err)
	}
	if ran {
		t.Error("fn ran despite a canceled context")
	}
}

func testClose(t *testing.T, s kv.Store) {
	set(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fn := func(kv.Txn) error { return nil }
	if err := s.View(ctx, fn); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("View after Close = %v", err)
	}
	if err := s.Update(ctx, fn); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("Update after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}
