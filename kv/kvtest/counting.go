package kvtest

import (
	"context"
	"sync/atomic"

	"dsh/kv"
)

// Counting passes everything to a real store and counts how changes reach it, so that
// tests of the layers above can check which of their changes wait for the disk.
type Counting struct {
	kv.Store
	// Durable, Lazy and Syncs count calls of Update, UpdateLazy and Sync.
	Durable, Lazy, Syncs atomic.Int32
}

// Update counts the call and passes it on.
func (c *Counting) Update(ctx context.Context, fn func(kv.Txn) error) error {
	c.Durable.Add(1)
	return c.Store.Update(ctx, fn)
}

// UpdateLazy counts the call and passes it on.
func (c *Counting) UpdateLazy(ctx context.Context, fn func(kv.Txn) error) error {
	c.Lazy.Add(1)
	return c.Store.UpdateLazy(ctx, fn)
}

// Sync counts the call and passes it on.
func (c *Counting) Sync(ctx context.Context) error {
	c.Syncs.Add(1)
	return c.Store.Sync(ctx)
}
