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
	// cachePatchesMax bounds the patches a shard keeps (32 bytes each, 8 MiB in all): room
	// for one file at content's bound of 4096 patches a file.
	cachePatchesMax = 4100
)

type cacheShard struct {
	mu  sync.Mutex
	gen uint64 // bumped by every invalidation in the shard
	m   map[Ino]Attr
	// p holds the patch lists of recently opened files (PatchesOf), np the patches it holds
	// in all. Patch records are written only by updates that also write their inode, so
	// the inode's invalidation covers them.
	p  map[Ino]*PatchSet
	np int
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
	if ps, ok := sh.p[ino]; ok {
		sh.np -= countPatches(ps)
		delete(sh.p, ino)
	}
	sh.mu.Unlock()
}

// getPatches returns the cached patch lists of ino; when there are none cached, gen is
// what a later putPatches must present. The set is shared: callers must not change it.
func (c *attrCache) getPatches(ino Ino) (ps *PatchSet, ok bool, gen uint64) {
	sh := c.shard(ino)
	sh.mu.Lock()
	ps, ok = sh.p[ino]
	gen = sh.gen
	sh.mu.Unlock()
	return ps, ok, gen
}

// putPatches caches the patch lists of ino, read by a transaction that started after
// getPatches returned gen, unless the shard was invalidated since. Entries are dropped,
// arbitrary ones first, until the shard is inside its bound.
func (c *attrCache) putPatches(ino Ino, ps *PatchSet, gen uint64) {
	n := countPatches(ps)
	if n > cachePatchesMax {
		return
	}
	sh := c.shard(ino)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return
	}
	if sh.p == nil {
		sh.p = make(map[Ino]*PatchSet)
	}
	if old, ok := sh.p[ino]; ok {
		sh.np -= countPatches(old)
		delete(sh.p, ino)
	}
	for k, v := range sh.p {
		if sh.np+n <= cachePatchesMax && len(sh.p) < cacheShardMax {
			break
		}
		sh.np -= countPatches(v)
		delete(sh.p, k)
	}
	sh.p[ino] = ps
	sh.np += n
}

func countPatches(ps *PatchSet) int {
	n := 1 // a file with none still takes an entry
	for _, l := range ps.Lists {
		n += len(l)
	}
	return n
}

// rootCache remembers share roots: a share's root, once created, never changes.
type rootCache struct {
	m sync.Map // share name -> Ino
}
