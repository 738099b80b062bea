package kv_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dsh/kv"
	"dsh/kv/kvtest"
	"dsh/vault"

	"github.com/dgraph-io/badger/v4"
)

func newKey(t testing.TB) *vault.Key {
	t.Helper()
	k, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &k
}

func openBadger(t testing.TB, dir string, key *vault.Key) *kv.Badger {
	t.Helper()
	b, err := kv.OpenBadger(dir, key, kv.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBadger(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return openBadger(t, t.TempDir(), newKey(t)) })
}

var ctx = context.Background()

func put(t *testing.T, s kv.Store, key, value string) {
	t.Helper()
	if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte(key), []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

func TestBadgerSurvivesReopen(t *testing.T) {
	dir, key := t.TempDir(), newKey(t)
	b := openBadger(t, dir, key)
	for i := range 100 {
		put(t, b, "k"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBadger(t, dir, key)
	err := b.View(ctx, func(tx kv.Txn) error {
		for i := range 100 {
			v, err := tx.Get([]byte("k" + strconv.Itoa(i)))
			if err != nil || string(v) != "v"+strconv.Itoa(i) {
				t.Errorf("k%d after reopen = %q, %v", i, v, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadgerWrongKey(t *testing.T) {
	dir, key := t.TempDir(), newKey(t)
	b := openBadger(t, dir, key)
	put(t, b, "k", "v")
	b.Close()

	_, err := kv.OpenBadger(dir, newKey(t), kv.BadgerOptions{})
	if !errors.Is(err, kv.ErrWrongKey) {
		t.Fatalf("open with another key = %v; want ErrWrongKey", err)
	}
	t.Logf("wrong key: %v", err)
	// The failed open must have let go of the directory.
	b = openBadger(t, dir, key)
	if err := b.View(ctx, func(tx kv.Txn) error { _, err := tx.Get([]byte("k")); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.OpenBadger(dir, &vault.Key{}, kv.BadgerOptions{}); err == nil {
		t.Fatal("open with a zero key succeeded")
	}
}

func TestBadgerSecondOpenFails(t *testing.T) {
	dir, key := t.TempDir(), newKey(t)
	b := openBadger(t, dir, key)
	_, err := kv.OpenBadger(dir, key, kv.BadgerOptions{})
	if !errors.Is(err, kv.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open = %v; want ErrLocked naming %s", err, dir)
	}
	t.Logf("second open: %v", err)
	b.Close()
	openBadger(t, dir, key)
}

// TestBadgerEncryptedAtRest stores a marker in a key and a value and looks for it in every
// byte under the directory, both while the store is open (write-ahead log, value log) and
// after Close (tables). A plaintext store, checked the same way, shows that the search works.
func TestBadgerEncryptedAtRest(t *testing.T) {
	const marker = "PATIENT-ZX81"
	bigValue := bytes.Repeat([]byte(marker), 10000) // above the value-log threshold
	write := func(s kv.Store) {
		err := s.Update(ctx, func(tx kv.Txn) error {
			if err := tx.Set([]byte("name/"+marker), []byte("record of "+marker)); err != nil {
				return err
			}
			return tx.Set([]byte("big"), bigValue)
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	plainDir := t.TempDir()
	plain, err := badger.Open(badger.DefaultOptions(plainDir).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	err = plain.Update(func(tx *badger.Txn) error { return tx.Set([]byte("name/"+marker), []byte(marker)) })
	plain.Close()
	if err != nil {
		t.Fatal(err)
	}
	if found := filesContaining(t, plainDir, marker); len(found) == 0 {
		t.Fatal("the marker search finds nothing even in an unencrypted store")
	}

	dir := t.TempDir()
	b := openBadger(t, dir, newKey(t))
	write(b)
	if found := filesContaining(t, dir, marker); len(found) > 0 {
		t.Errorf("plaintext marker in %v while open", found)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if found := filesContaining(t, dir, marker); len(found) > 0 {
		t.Errorf("plaintext marker in %v after Close", found)
	}
}

func filesContaining(t *testing.T, dir, marker string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(marker)) {
			found = append(found, filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestBadgerGCStopsOnClose runs value-log GC often over overwritten big values and checks
// that Close returns promptly with the GC goroutine running.
func TestBadgerGCStopsOnClose(t *testing.T) {
	b, err := kv.OpenBadger(t.TempDir(), newKey(t), kv.BadgerOptions{GCInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 512<<10)
	for i := range 20 {
		big[0] = byte(i)
		if err := b.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("big"), big) }); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
}

func BenchmarkBadgerGet(b *testing.B) {
	s := openBadger(b, b.TempDir(), newKey(b))
	const n = 10000
	err := s.Update(ctx, func(tx kv.Txn) error {
		for i := range n {
			if err := tx.Set([]byte("inode/"+strconv.Itoa(i)), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte("inode/" + strconv.Itoa(i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		err := s.View(ctx, func(tx kv.Txn) error {
			_, err := tx.Get(keys[i%n])
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkBadgerUpdate commits one small synced write per op: the cost of one metadata
// change, dominated by fsync.
func BenchmarkBadgerUpdate(b *testing.B) {
	s := openBadger(b, b.TempDir(), newKey(b))
	value := make([]byte, 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := []byte("inode/" + strconv.Itoa(i))
		if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set(key, value) }); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkBadgerUpdateParallel shows group commit: concurrent Updates share fsyncs.
func BenchmarkBadgerUpdateParallel(b *testing.B) {
	s := openBadger(b, b.TempDir(), newKey(b))
	value := make([]byte, 100)
	var next atomicCounter
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := []byte("inode/" + strconv.Itoa(next.inc()))
			if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set(key, value) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) inc() int { return int(c.n.Add(1)) }
