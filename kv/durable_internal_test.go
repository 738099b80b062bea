package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"dsh/vault"
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

// fill writes lazily until Badger has rotated its memtable at least once more.
func fill(t *testing.T, b *Badger, tag string) {
	t.Helper()
	start := b.dur.rotations.Load()
	v := bytes.Repeat([]byte{7}, 256<<10)
	for i := 0; b.dur.rotations.Load() == start; i++ {
		if i > 4*memTableSize/len(v) {
			t.Fatalf("no memtable rotation seen after %d MiB: Badger no longer names its logs %%05d%s?", i*len(v)>>20, memSuffix)
		}
		k := []byte(fmt.Sprintf("fill/%s/%d", tag, i))
		if err := b.UpdateLazy(context.Background(), func(tx Txn) error { return tx.Set(k, v) }); err != nil {
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

// TestRotationSyncsLog writes lazily across memtable rotations and checks that kv saw each
// rotation right after the lazy commit that made it (fill fails otherwise), that the logs
// it synced are the files Badger keeps, and that every lazy commit reads back after a
// reopen.
func TestRotationSyncsLog(t *testing.T) {
	ctx := context.Background()
	dir, key := t.TempDir(), testKey(t)
	b := openTestBadger(t, dir, key)
	if err := b.UpdateLazy(ctx, func(tx Txn) error { return tx.Set([]byte("before"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	fill(t, b, "1")
	fill(t, b, "2")
	logs, err := filepath.Glob(filepath.Join(dir, "*"+memSuffix))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no memtable logs named *%s in Badger's folder (%v): the rotation sync would sync nothing", memSuffix, err)
	}
	if err := b.UpdateLazy(ctx, func(tx Txn) error { return tx.Set([]byte("after"), []byte("2")) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTestBadger(t, dir, key)
	for k, want := range map[string]string{"before": "1", "after": "2"} {
		if got, ok := get(t, b, k); !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
		}
	}
}

// TestFailedRotationSyncIsSticky checks that once a log failed to sync at rotation, no
// Update or Sync reports success: commits it held may be lost.
func TestFailedRotationSyncIsSticky(t *testing.T) {
	ctx := context.Background()
	b := openTestBadger(t, t.TempDir(), testKey(t))
	boom := errors.New("EIO")
	b.dur.failed.Store(&boom)
	if err := b.Update(ctx, func(tx Txn) error { return tx.Set([]byte("k"), []byte("v")) }); !errors.Is(err, boom) {
		t.Fatalf("Update after a failed rotation sync: %v", err)
	}
	if err := b.Sync(ctx); !errors.Is(err, boom) {
		t.Fatalf("Sync after a failed rotation sync: %v", err)
	}
	// And a real failure: a complete log whose sync fails (here a device, which cannot be
	// synced) when a newer log appears after a lazy commit.
	d := newDurability(t.TempDir())
	dev, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	d.cur = dev
	d.curFid.Store(1)
	if err := os.WriteFile(logPath(d.dir, 2), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.afterCommit()
	if d.check() == nil {
		t.Fatal("a log that could not be synced left no error")
	}
	d.closeCurrent()
}

// TestUnknownLogNamesRefused: a Badger folder without logs named as kv expects (a Badger
// that changed its naming) is refused at open, not served without ordered durability.
func TestUnknownLogNamesRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "wal-0001.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := newDurability(dir).start(); !errors.Is(err, errNoLog) {
		t.Fatalf("start without %%05d.mem logs: %v", err)
	}
}

// TestSyncFollowsCurrentLog checks that the durable sync fdatasyncs the log Badger writes
// to now, whatever the rotations, and that Badger still names its logs as kv expects.
func TestSyncFollowsCurrentLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openTestBadger(t, dir, testKey(t))
	newest := func() int {
		logs, err := filepath.Glob(filepath.Join(dir, "*"+memSuffix))
		if err != nil {
			t.Fatal(err)
		}
		n := -1
		for _, l := range logs {
			fid, ok := logFid(l)
			if !ok {
				t.Fatalf("memtable log %s is not named by a number", l)
			}
			n = max(n, fid)
		}
		return n
	}
	for round := range 3 {
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := int(b.dur.curFid.Load()), newest(); got != want {
			t.Fatalf("round %d: syncing log %d, Badger writes to %d", round, got, want)
		}
		fill(t, b, fmt.Sprint(round))
	}
	// fill returns after the rotation's commit, when the new log exists: no fallback.
	if n := b.dur.fallbacks.Load(); n != 0 {
		t.Errorf("%d rounds fell back to db.Sync", n)
	}
}

// TestSyncFindsLogMadeWithoutRotation checks that kv finds a log Badger starts for another
// reason than a full memtable (DropAll).
func TestSyncFindsLogMadeWithoutRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openTestBadger(t, dir, testKey(t))
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := b.dur.curFid.Load()
	if err := b.db.DropAll(); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, func(tx Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if b.dur.curFid.Load() <= before {
		t.Fatalf("after DropAll, kv still syncs log %d (Badger made a newer one)", b.dur.curFid.Load())
	}
}
