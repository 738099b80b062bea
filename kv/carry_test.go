package kv_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"dsh/kv"
	"dsh/kv/kvtest"
)

// A Carrier with nothing carried is a Store like any other, over either backend.
func TestCarrierIsAStore(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return kv.NewCarrier(kv.NewMem()) })
	t.Run("Badger", func(t *testing.T) {
		kvtest.Run(t, func(t *testing.T) kv.Store {
			return kv.NewCarrier(openBadger(t, t.TempDir(), newKey(t)))
		})
	})
}

func getIn(t *testing.T, s kv.Store, key string) (string, error) {
	t.Helper()
	var v []byte
	err := s.View(context.Background(), func(tx kv.Txn) error {
		var err error
		v, err = tx.Get([]byte(key))
		return err
	})
	return string(v), err
}

func scanKeys(t *testing.T, s kv.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.View(context.Background(), func(tx kv.Txn) error {
		return tx.Scan([]byte(prefix), nil, func(k, _ []byte) (bool, error) {
			keys = append(keys, string(k))
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A carried write is seen at once by Get, not by Scan, and is committed by the next
// transaction of anyone, in that very transaction; a failed transaction leaves it carried.
func TestCarriedWriteRidesTheNextCommit(t *testing.T) {
	ctx := context.Background()
	inner := kv.NewMem()
	c := kv.NewCarrier(inner)
	if err := c.Carry([]byte("obj/1"), []byte("object one")); err != nil {
		t.Fatal(err)
	}
	if v, err := getIn(t, c, "obj/1"); err != nil || v != "object one" {
		t.Fatalf("Get of a carried write: %q, %v", v, err)
	}
	if _, err := getIn(t, inner, "obj/1"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a carried write reached the store before a commit: %v", err)
	}
	if keys := scanKeys(t, c, "obj/"); len(keys) != 0 {
		t.Fatalf("Scan saw a carried write: %v", keys)
	}
	boom := errors.New("boom")
	if err := c.Update(ctx, func(tx kv.Txn) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := getIn(t, inner, "obj/1"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a failed transaction committed the carried write: %v", err)
	}
	// The transaction that names it sees it as its own write, and commits both.
	err := c.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get([]byte("obj/1"))
		if err != nil || string(v) != "object one" {
			t.Errorf("inside the commit: %q, %v", v, err)
		}
		return tx.Set([]byte("meta/f"), []byte("names obj/1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"obj/1": "object one", "meta/f": "names obj/1"} {
		if v, err := getIn(t, inner, k); err != nil || v != want {
			t.Fatalf("%s after the commit: %q, %v", k, v, err)
		}
	}
	// Committed once, it is no longer carried: a later delete sticks.
	if err := c.Update(ctx, func(tx kv.Txn) error { return tx.Delete([]byte("obj/1")) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("meta/g"), nil) }); err != nil {
		t.Fatal(err)
	}
	if _, err := getIn(t, c, "obj/1"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a deleted write came back: %v", err)
	}
}

// A transaction that started before a write was carried, and is still running, does not
// hold up the next one: that one carries the write too, so it never commits a name of an
// object that only the slower one holds.
func TestCarriedWriteNotOvertaken(t *testing.T) {
	ctx := context.Background()
	inner := kv.NewMem()
	c := kv.NewCarrier(inner)
	if err := c.Carry([]byte("obj/2"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	slow := make(chan error)
	go func() {
		first := true
		slow <- c.Update(ctx, func(tx kv.Txn) error {
			if first {
				first = false
				close(entered)
				<-release
			}
			return tx.Set([]byte("slow"), []byte("x"))
		})
	}()
	<-entered
	if err := c.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("meta/h"), []byte("names obj/2")) }); err != nil {
		t.Fatal(err)
	}
	if v, err := getIn(t, inner, "obj/2"); err != nil || v != "two" {
		t.Fatalf("the commit naming the object went ahead without it: %q, %v", v, err)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// Carry refuses past its limits and a key Set would refuse; a transaction too big to carry
// the held writes commits them first, alone, and then itself.
func TestCarryLimits(t *testing.T) {
	ctx := context.Background()
	inner := kv.NewMem()
	c := kv.NewCarrier(inner)
	if err := c.Carry([]byte(kv.ReservedPrefix+"x"), []byte("v")); !errors.Is(err, kv.ErrInvalidKey) {
		t.Fatalf("reserved key: %v", err)
	}
	if err := c.Carry(nil, []byte("v")); !errors.Is(err, kv.ErrInvalidKey) {
		t.Fatalf("empty key: %v", err)
	}
	big := bytes.Repeat([]byte{7}, kv.CarryMax/2)
	if err := c.Carry([]byte("obj/a"), big); err != nil {
		t.Fatal(err)
	}
	if err := c.Carry([]byte("obj/b"), big); !errors.Is(err, kv.ErrCarryFull) {
		t.Fatalf("past CarryMax: %v", err)
	}
	// Replacing a carried value counts only the new one.
	if err := c.Carry([]byte("obj/a"), big[:100]); err != nil {
		t.Fatal(err)
	}
	for i := range kv.CarryWritesMax - 1 {
		if err := c.Carry([]byte("obj/n"+strings.Repeat("x", i)), []byte("v")); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := c.Carry([]byte("obj/one-too-many"), []byte("v")); !errors.Is(err, kv.ErrCarryFull) {
		t.Fatalf("past CarryWritesMax: %v", err)
	}
	// A transaction as big as a transaction may be: the carried writes go first, alone.
	huge := bytes.Repeat([]byte{9}, kv.MaxValueSize)
	if err := c.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("meta/big"), huge) }); err != nil {
		t.Fatal(err)
	}
	if v, err := getIn(t, inner, "obj/a"); err != nil || v != string(big[:100]) {
		t.Fatalf("carried write after a full transaction: %d bytes, %v", len(v), err)
	}
	if v, err := getIn(t, inner, "meta/big"); err != nil || len(v) != kv.MaxValueSize {
		t.Fatalf("the full transaction: %d bytes, %v", len(v), err)
	}
	if err := c.Carry([]byte("obj/b"), big); err != nil {
		t.Fatalf("the carrier did not empty: %v", err)
	}
}

// Sync and Close commit what is carried: after a reopen of a Badger store it is there.
func TestCarrierSyncAndClose(t *testing.T) {
	ctx := context.Background()
	dir, key := t.TempDir(), newKey(t)
	c := kv.NewCarrier(openBadger(t, dir, key))
	if err := c.Carry([]byte("obj/s"), []byte("synced")); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Carry([]byte("obj/c"), []byte("closed")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b := openBadger(t, dir, key)
	defer b.Close()
	for k, want := range map[string]string{"obj/s": "synced", "obj/c": "closed"} {
		if v, err := getIn(t, b, k); err != nil || v != want {
			t.Fatalf("%s after reopen: %q, %v", k, v, err)
		}
	}
	if err := c.Carry([]byte("obj/late"), []byte("x")); err != nil {
		t.Fatal(err) // carrying needs no store; committing it does
	}
	ctx2, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := c.Update(ctx2, func(kv.Txn) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("update after close: %v", err)
	}
}
