package meta

import "sync"

// attrCache keeps the attributes of recently read inodes in this process, so that the
// reads of the FUSE hot paths (getattr, open, the parent check of a create) do not each
// cost a kv read transaction. It is the daemon's own memory: what one uid is shown is
// still decided by the FUSE layer on every call.
//
// Coherence: every record of an inode is written by update (op.flush), and update
// invalidates each inode it wrote once its transaction has returned, whether it committed
// or not. A read that misses loads the inode from kv and installs it only if no
// invalidation touched its shard since before it started reading: an invalidation after
// that start may belong to a commit its snapshot did not see. So once a mutation has
// returned, no reader gets an older state from the cache than from kv. Invalidating
// rather than installing the written state keeps this true whatever order concurrent
// mutations of one inode finish their bookkeeping in.
//
// The cache assumes it sees every write of the "fs/" keys: only one Store may work on a kv
// store at a time (the daemon shares one between its trees).
type attrCache struct {
	shards [cacheShards]cacheShard
}

// cacheShards spreads the cache's locks; cacheShardMax bounds each shard, so the cache
// holds at most cacheShards*cacheShardMax inodes (a few MiB).
const (
	cacheShards   = 64
	cacheShardMax = 512
)

type cacheShard struct {
	mu  sync.Mutex
	gen uint64 // bumped by every invalidation in the shard
	m   map[Ino]Attr
}

func (c *attrCache) shard(ino Ino) *cacheShard { return &c.shards[ino%cacheShards] }

// get returns the cached attributes of ino; when there are none, gen is what a later put
// must present.
func (c *attrCache) get(ino Ino) (a Attr, ok bool, gen uint64) {
	sh := c.shard(ino)
	sh.mu.Lock()
	a, ok = sh.m[ino]
	gen = sh.gen
	sh.mu.Unlock()
	return a, ok, gen
}

// put caches a, read by a transaction that started after get returned gen, unless the
// shard was invalidated since. A full shard drops an arbitrary entry.
func (c *attrCache) put(a Attr, gen uint64) {
	sh := c.shard(a.Ino)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return
	}
	if sh.m == nil {
		sh.m = make(map[Ino]Attr, cacheShardMax)
	}
	if len(sh.m) >= cacheShardMax {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[a.Ino] = a
}

// invalidate forgets ino and turns away puts of reads that may have started before.
func (c *attrCache) invalidate(ino Ino) {
	sh := c.shard(ino)
	sh.mu.Lock()
	sh.gen++
	delete(sh.m, ino)
	sh.mu.Unlock()
}

// rootCache remembers share roots: a share's root, once created, never changes.
type rootCache struct {
	m sync.Map // share name -> Ino
}
