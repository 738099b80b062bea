package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"dsh/vault"

	"github.com/dgraph-io/badger/v4"
)

func openTestBadger(t *testing.T, dir string, key *vault.Key) *Badger {
	t.Helper()
	b, err := OpenBadger(dir, key, BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testKey(t *testing.T) *vault.Key {
	t.Helper()
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &k
}

// fill writes straight to Badger (nothing registered, nothing synced) until it has rotated
// its memtable at least once more.
func fill(t *testing.T, b *Badger, tag string) {
	t.Helper()
	start := b.dur.epoch.Load()
	v := bytes.Repeat([]byte{7}, 256<<10)
	for i := 0; b.dur.epoch.Load() == start; i++ {
		if i > 4*memTableSize/len(v) {
			t.Fatalf("no memtable rotation seen after %d MiB: Badger no longer logs %q?", i*len(v)>>20, rotationMessage)
		}
		k := []byte(fmt.Sprintf("fill/%s/%d", tag, i))
		if err := b.db.Update(func(tx *badger.Txn) error { return tx.Set(k, v) }); err != nil {
			t.Fatal(err)
		}
	}
}

func get(t *testing.T, s Store, key string) (string, bool) {
	t.Helper()
	var v []byte
	err := s.View(context.Background(), func(tx Txn) error {
		var err error
		v, err = tx.Get([]byte(key))
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

// TestRotationRefresh writes lazily, lets the memtable rotate, and checks that the next
// Update writes those keys again (their current state, including a later overwrite and a
// delete) into the new memtable, leaves nothing pending, and that all of it reads back after
// a reopen.
func TestRotationRefresh(t *testing.T) {
	ctx := context.Background()
	dir, key := t.TempDir(), testKey(t)
	b := openTestBadger(t, dir, key)
	set := func(k, v string) error {
		return b.UpdateLazy(ctx, func(tx Txn) error { return tx.Set([]byte(k), []byte(v)) })
	}
	for _, kv := range [][2]string{{"a", "1"}, {"b", "1"}, {"gone", "x"}} {
		if err := set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := set("a", "2"); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdateLazy(ctx, func(tx Txn) error { return tx.Delete([]byte("gone")) }); err != nil {
		t.Fatal(err)
	}
	fill(t, b, "1")
	if err := set("b", "3"); err != nil { // after the rotation: in the new memtable
		t.Fatal(err)
	}
	before := b.dur.refreshes.Load()
	if err := b.Update(ctx, func(tx Txn) error { return tx.Set([]byte("c"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	refreshed := b.dur.refreshes.Load() - before
	// a and gone, written lazily before the rotation; not b (synced, then rewritten after
	// the rotation) nor c.
	if refreshed != 2 {
		t.Fatalf("%d keys refreshed after a rotation, want 2 (a and gone)", refreshed)
	}
	b.dur.mu.Lock()
	left := len(b.dur.pending)
	b.dur.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d keys still pending after Update", left)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTestBadger(t, dir, key)
	for k, want := range map[string]string{"a": "2", "b": "3", "c": "1"} {
		if got, ok := get(t, b, k); !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	if _, ok := get(t, b, "gone"); ok {
		t.Error("a key deleted before the rotation is back")
	}
}

// TestSyncRoundLogic drives syncRound with a scripted log: a rotation during the sync makes
// it sync again, and only keys registered before the current memtable began are refreshed.
func TestSyncRoundLogic(t *testing.T) {
	d := newDurability()
	d.register(0, []write{{key: []byte("old1")}, {key: []byte("old2")}})
	d.epoch.Add(1)
	d.register(1, []write{{key: []byte("new")}})
	syncs := 0
	sync := func() error {
		syncs++
		if syncs == 1 {
			d.epoch.Add(1) // a rotation while syncing
		}
		return nil
	}
	var refreshed []string
	refresh := func(_ context.Context, keys []string) error {
		refreshed = append(refreshed, keys...)
		b := make([]write, len(keys))
		for i, k := range keys {
			b[i] = write{key: []byte(k)}
		}
		d.register(d.epoch.Load(), b)
		return nil
	}
	if err := d.syncRound(context.Background(), sync, refresh); err != nil {
		t.Fatal(err)
	}
	slices.Sort(refreshed)
	// Epoch is 2 after the first sync: all three keys started before the current memtable.
	if want := []string{"new", "old1", "old2"}; !slices.Equal(refreshed, want) {
		t.Fatalf("refreshed %v, want %v", refreshed, want)
	}
	if syncs != 3 { // rotated, then stale keys found, then clean
		t.Fatalf("%d syncs, want 3", syncs)
	}
	if len(d.pending) != 0 {
		t.Fatalf("pending after the round: %v", d.pending)
	}

	// A failing sync is reported and forgets nothing.
	d.register(d.epoch.Load(), []write{{key: []byte("k")}})
	boom := errors.New("disk gone")
	if err := d.syncRound(context.Background(), func() error { return boom }, refresh); !errors.Is(err, boom) {
		t.Fatalf("syncRound = %v, want %v", err, boom)
	}
	if _, ok := d.pending["k"]; !ok {
		t.Fatal("a failed sync dropped a pending key")
	}
}

// TestGroupSync checks that concurrent Updates share sync rounds and that every one of them
// reads back.
func TestGroupSync(t *testing.T) {
	ctx := context.Background()
	b := openTestBadger(t, t.TempDir(), testKey(t))
	const workers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				k := []byte(fmt.Sprintf("w%d/%d", w, i))
				if err := b.Update(ctx, func(tx Txn) error { return tx.Set(k, k) }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b.dur.roundMu.Lock()
	rounds := b.dur.started
	b.dur.roundMu.Unlock()
	t.Logf("%d updates, %d sync rounds", workers*each, rounds)
	if rounds >= workers*each {
		t.Fatalf("%d sync rounds for %d concurrent updates: no group sync", rounds, workers*each)
	}
	for w := range workers {
		for i := range each {
			k := fmt.Sprintf("w%d/%d", w, i)
			if v, ok := get(t, b, k); !ok || v != k {
				t.Fatalf("%s = %q, %v", k, v, ok)
			}
		}
	}
}

// TestPendingBound checks that lazy commits alone cannot grow the pending set without
// bound: past maxPendingKeys a lazy commit syncs.
func TestPendingBound(t *testing.T) {
	ctx := context.Background()
	b := openTestBadger(t, t.TempDir(), testKey(t))
	for i := range maxPendingKeys/100 + 2 {
		err := b.UpdateLazy(ctx, func(tx Txn) error {
			for j := range 100 {
				if err := tx.Set([]byte(fmt.Sprintf("k%d/%d", i, j)), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	b.dur.mu.Lock()
	n := len(b.dur.pending)
	b.dur.mu.Unlock()
	if n > maxPendingKeys {
		t.Fatalf("%d keys pending, bound %d", n, maxPendingKeys)
	}
	// And by bytes: four lazy 512 KiB values leave at most the bound waiting.
	for i := range 4 {
		k := []byte(fmt.Sprintf("big%d", i))
		if err := b.UpdateLazy(ctx, func(tx Txn) error { return tx.Set(k, make([]byte, 512<<10)) }); err != nil {
			t.Fatal(err)
		}
	}
	b.dur.mu.Lock()
	nb := b.dur.pendingBytes
	b.dur.mu.Unlock()
	if nb > maxPendingBytes {
		t.Fatalf("%d bytes pending, bound %d", nb, maxPendingBytes)
	}
}
