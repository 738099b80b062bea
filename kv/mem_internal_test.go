package kv

import (
	"context"
	"testing"
)

// TestMemForgetsDeletedKeys checks that history is pruned: with no snapshot open, a deleted
// key leaves nothing behind, and an overwritten key keeps one version.
func TestMemForgetsDeletedKeys(t *testing.T) {
	m := NewMem()
	ctx := context.Background()
	write := func(fn func(Txn) error) {
		t.Helper()
		if err := m.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		write(func(tx Txn) error { return tx.Set([]byte("k"), []byte("v")) })
	}
	if n := len(m.vers["k"]); n != 1 {
		t.Fatalf("%d versions of an overwritten key; want 1", n)
	}
	write(func(tx Txn) error { return tx.Delete([]byte("k")) })
	write(func(tx Txn) error { return tx.Delete([]byte("never")) })
	if len(m.keys) != 0 || len(m.vers) != 0 || len(m.readers) != 0 {
		t.Fatalf("after deletes: keys %q, %d histories, %d readers; want none", m.keys, len(m.vers), len(m.readers))
	}
}
