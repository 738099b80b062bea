package meta

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestCacheCoherent: once a mutation has returned, every read sees it, even while other
// goroutines keep reading the inode (and filling the cache from older snapshots).
func TestCacheCoherent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open(t))
			f := e.file(e.root.Ino, "f")
			var stop atomic.Bool
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for !stop.Load() {
						if _, err := e.s.GetAttr(ctx, f.Ino); err != nil {
							t.Error(err)
							return
						}
						if _, err := e.s.Lookup(ctx, e.root.Ino, "f"); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			for i := range 300 {
				m := uint32(0o600 + i%0o100)
				e.ok2(e.s.SetAttr(ctx, f.Ino, SetAttr{Mode: &m}))
				if got := e.attr(f.Ino).Mode; got != m {
					t.Fatalf("after SetAttr(%o): getattr says %o", m, got)
				}
				if got := e.lookup(e.root.Ino, "f").Mode; got != m {
					t.Fatalf("after SetAttr(%o): lookup says %o", m, got)
				}
				size := int64(i)
				e.ok2(e.s.SetContent(ctx, f.Ino, size, Content{FileID: f.Content.FileID, Key: f.Content.Key}, int64(i)))
				if got := e.attr(f.Ino).Size; got != size {
					t.Fatalf("after SetContent(%d): getattr says %d", size, got)
				}
			}
			stop.Store(true)
			wg.Wait()
			// A deleted inode is not served from the cache.
			e.attr(f.Ino)
			e.ok2(e.s.Unlink(ctx, e.root.Ino, "f"))
			if got := e.attr(f.Ino).Nlink; got != 0 {
				t.Fatalf("after unlink: nlink %d", got)
			}
			e.ok(e.s.Reap(ctx, f.Ino))
			_, err := e.s.GetAttr(ctx, f.Ino)
			e.is(err, ErrNotFound)
		})
	}
}
