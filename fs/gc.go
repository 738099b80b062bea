package fs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"dsh/blob"
)

// collect deletes objects nobody references: first, once, those an earlier run left behind
// (written but never committed to the metadata, because of a crash) and older than this
// attach; then, periodically, those the metadata put on its garbage list.
func (g *Group) collect(ctx context.Context, be *Backend, attached time.Time) {
	if n, err := g.sweepUnreferenced(ctx, be, attached); err != nil && ctx.Err() == nil {
		g.log.Error("group tree: sweep of unreferenced objects", "err", err)
	} else if n > 0 {
		g.log.Info("group tree: removed objects left by an interrupted write", "objects", n)
	}
	t := time.NewTicker(g.opts.GCInterval)
	defer t.Stop()
	for {
		if err := g.collectGarbage(ctx, be); err != nil && ctx.Err() == nil {
			g.log.Error("group tree: garbage collection", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// collectGarbage deletes the objects on the metadata's garbage list, in batches.
//
// An object goes on the list in the commit that stops naming it, and a commit is visible
// to other transactions before it is durable. Deleted before that commit reaches the
// disk, an object could still be named by the metadata a power cut leaves behind, and its
// file would read EIO. So each batch first waits until every commit it may come from is
// durable (one sync for the batch), and only then deletes.
func (g *Group) collectGarbage(ctx context.Context, be *Backend) error {
	for {
		var ids []blob.ID
		if err := be.Meta.Garbage(ctx, 256, func(id blob.ID) error {
			ids = append(ids, id)
			return nil
		}); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if err := be.Meta.Sync(ctx); err != nil {
			return fmt.Errorf("make the commits that freed objects durable before deleting them: %w", err)
		}
		for _, id := range ids {
			if err := be.Blobs.Delete(ctx, id); err != nil && !errors.Is(err, blob.ErrNotFound) {
				return err
			}
		}
		if err := be.Meta.Collected(ctx, ids); err != nil {
			return err
		}
	}
}

// sweepUnreferenced deletes objects older than before that no inode references. Objects
// written since are left alone: their metadata commit may be on its way. As in
// collectGarbage, the commits that stopped naming them are made durable first.
func (g *Group) sweepUnreferenced(ctx context.Context, be *Backend, before time.Time) (int, error) {
	refs := make(map[blob.ID]struct{})
	if err := be.Meta.Referenced(ctx, func(id blob.ID) error {
		refs[id] = struct{}{}
		return nil
	}); err != nil {
		return 0, err
	}
	var stale []blob.ID
	if err := be.Blobs.List(ctx, func(info blob.Info) error {
		if _, ok := refs[info.ID]; !ok && info.ModTime.Before(before) {
			stale = append(stale, info.ID)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if len(stale) == 0 {
		return 0, nil
	}
	if err := be.Meta.Sync(ctx); err != nil {
		return 0, fmt.Errorf("make the metadata durable before deleting objects: %w", err)
	}
	n := 0
	for _, id := range stale {
		if err := be.Blobs.Delete(ctx, id); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}
