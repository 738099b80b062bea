package content

import (
	"context"
	"errors"
	"fmt"

	"dsh/blob"
	"dsh/vault"
)

// Seal counting. Every chunk is sealed with AES-GCM under its file's content key with a
// random 96-bit nonce, and FORMAT.md bounds that at 2^32 chunks per key (a collision chance
// of 2^-33). A file rewritten in place for long enough, a database's, could get there:
// each flush counts the chunks it sealed, the metadata keeps the count with the key, and a
// file whose count has reached the budget, half of the bound, moves to a new key when it is
// next opened: a new file ID and content key, every segment sealed again under them, one
// commit that switches over (the old objects go to the collector). Files of a dsh from
// before the count start from zero.

// DefaultSealBudget is when a file moves to a new key: half of FORMAT.md's 2^32.
const DefaultSealBudget = 1 << 31

// OpenOption tunes Open.
type OpenOption func(*openConfig)

type openConfig struct {
	seals  uint64
	layout *Layout
}

// WithSeals tells Open how many chunks the metadata counts as sealed under the file's key.
func WithSeals(n uint64) OpenOption { return func(c *openConfig) { c.seals = n } }

// Seals returns the chunks sealed under the file's current key, as committed.
func (f *File) Seals() uint64 {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	return f.seals
}

// sealed counts the chunks sealed into objs.
func sealed(objs []segState) uint64 {
	var n uint64
	for _, o := range objs {
		n += vault.Seals(o.objLen)
	}
	return n
}

// rollover moves the file to a new content key and file ID, sealing every stored segment
// again, and commits the switch. It is best effort: on failure the file stays on its old
// key (the budget is half the bound) and the next open tries again.
func (f *File) rollover(ctx context.Context, share string, shareKey *vault.Key) {
	if err := f.moveToNewKey(ctx, share, shareKey); err != nil && f.store.onRollover != nil {
		f.store.onRollover(fmt.Errorf("move file %s to a new content key: %w", f.id, err))
	}
}

func (f *File) moveToNewKey(ctx context.Context, share string, shareKey *vault.Key) error {
	id, err := vault.NewFileID()
	if err != nil {
		return err
	}
	key, err := vault.NewKey()
	if err != nil {
		return err
	}
	wrapped, err := vault.WrapKey(shareKey, &key, wrapContext(share, id))
	if err != nil {
		key.Wipe()
		return err
	}
	c, err := vault.NewContentCipher(&key)
	key.Wipe()
	if err != nil {
		return err
	}
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.RLock()
	size, segs := f.size, f.segs
	f.mu.RUnlock()
	plan := flushPlan{size: size, segs: segs, committed: f.committed, chunks: map[int64]*chunkBuf{}, cipher: c, fileID: id}
	var written []segState
	scratch := f.store.getChunk(nil)
	defer func() {
		scratch.n = vault.ChunkSize
		f.store.putChunk(scratch)
	}()
	for i := range segs {
		old := &segs[i]
		l := segLen(old.index, size, f.segSize)
		w := segState{index: old.index, obj: blob.NewIDFor(f.blobs), objLen: l, valid: l, to: f.segChunks * blocksPerChunk}
		written = append(written, w)
		if err := f.writeObject(ctx, &plan, w, old, scratch); err != nil {
			return f.dropNew(ctx, written, err)
		}
	}
	st := Staged{Size: size, FileID: id, Key: wrapped, Seals: sealed(written), New: make([]blob.ID, len(written))}
	for i, w := range written {
		st.Segments = append(st.Segments, stagedSegment(w))
		st.New[i] = w.obj
		st.Changed = append(st.Changed, uint64(w.index))
	}
	st.Dropped = droppedObjects(f.committed, written)
	if err := f.commit(ctx, st); err != nil {
		return f.dropNew(ctx, written, err)
	}
	f.mu.Lock()
	f.id, f.wrapped, f.cipher, f.seals = id, wrapped, c, st.Seals
	f.segs, f.committed, f.committedSize = written, written, size
	f.segsChanged = false
	f.resetReadAhead()
	f.mu.Unlock()
	f.evict(nil)
	return nil
}

// dropNew deletes the objects of a move that did not commit.
func (f *File) dropNew(ctx context.Context, written []segState, err error) error {
	ctx = context.WithoutCancel(ctx)
	for _, w := range written {
		if derr := f.blobs.Delete(ctx, w.obj); derr != nil && !errors.Is(derr, blob.ErrNotFound) {
			err = errors.Join(err, derr)
		}
	}
	return err
}
