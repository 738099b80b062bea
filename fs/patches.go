package fs

import (
	"context"
	"reflect"
	"slices"
	"sync"

	"dsh/content"
	"dsh/meta"
	"dsh/vault"
)

// The content of a file travels between meta (which stores it) and content (which reads
// and writes it) in two shapes; these convert, patches included (content/patch.go: a
// small write into a big file is stored as a patch over its segment).

// layoutsMax bounds what the layout cache keeps: its entries' patches and segments
// together (about 100 bytes each).
const layoutsMax = 16384

// layoutCache keeps the checked layouts of files with patches, so that opening such a file
// again (a database or a build tool opens and closes its files all the time) does not
// read, convert and check every patch anew. An entry serves only the committed state it
// was made from: the same file ID, size and segment list, and the very patch map meta
// handed out for it. Meta replaces that map whenever the inode's patches change and never
// edits it, and the entry holds it, so its address cannot be reused by another state.
// Entries hold object IDs and lengths, nothing secret; they are looked up only by an open
// that passed its access checks.
type layoutCache struct {
	mu    sync.Mutex
	m     map[meta.Ino]*layoutEntry
	items int // patches and segments held, bounded by layoutsMax
}

type layoutEntry struct {
	fileID  vault.FileID
	size    int64
	segs    []meta.Segment
	patches map[uint64][]meta.Patch
	layout  *content.Layout
}

// items is what the entry counts against layoutsMax.
func (e *layoutEntry) items() int { return e.layout.Patches() + len(e.segs) }

func (e *layoutEntry) matches(a *meta.Attr, ps map[uint64][]meta.Patch) bool {
	return e.fileID == a.Content.FileID && e.size == a.Size && slices.Equal(e.segs, a.Content.Segments) &&
		reflect.ValueOf(e.patches).UnsafePointer() == reflect.ValueOf(ps).UnsafePointer()
}

// layoutOf returns the checked layout of a's content, from the cache when it holds this
// state. Files without patches are checked every time: that is cheap.
func layoutOf(ctx context.Context, be *Backend, a *meta.Attr) (*content.Layout, error) {
	patched := false
	for _, s := range a.Content.Segments {
		patched = patched || s.Patched
	}
	if !patched {
		return be.Content.CheckLayout(a.Size, contentSegments(a))
	}
	ps, err := be.Meta.PatchesOf(ctx, a.Ino)
	if err != nil {
		return nil, err
	}
	c := &be.layouts
	c.mu.Lock()
	if e := c.m[a.Ino]; e != nil && e.matches(a, ps) {
		c.mu.Unlock()
		return e.layout, nil
	}
	c.mu.Unlock()
	l, err := be.Content.CheckLayout(a.Size, withPatches(contentSegments(a), ps))
	if err != nil {
		return nil, err
	}
	e := &layoutEntry{fileID: a.Content.FileID, size: a.Size, segs: slices.Clone(a.Content.Segments), patches: ps, layout: l}
	if e.items() > layoutsMax/4 {
		return l, nil // one file would crowd out the others
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[meta.Ino]*layoutEntry)
	}
	if old := c.m[a.Ino]; old != nil {
		c.items -= old.items()
		delete(c.m, a.Ino)
	}
	for ino, old := range c.m {
		if c.items+e.items() <= layoutsMax {
			break
		}
		c.items -= old.items()
		delete(c.m, ino)
	}
	c.m[a.Ino] = e
	c.items += e.items()
	return l, nil
}

// contentSegmentsOf is the segment list of a's content, patches included, in the form
// package content takes. Patches are read only when the inode marks a segment as patched.
func contentSegmentsOf(ctx context.Context, be *Backend, a *meta.Attr) ([]content.Segment, error) {
	segs := contentSegments(a)
	patched := false
	for _, s := range a.Content.Segments {
		patched = patched || s.Patched
	}
	if !patched {
		return segs, nil
	}
	ps, err := be.Meta.PatchesOf(ctx, a.Ino)
	if err != nil {
		return nil, err
	}
	return withPatches(segs, ps), nil
}

// withPatches adds meta's patch lists to segs.
func withPatches(segs []content.Segment, ps map[uint64][]meta.Patch) []content.Segment {
	for i := range segs {
		mp := ps[segs[i].Index]
		if len(mp) == 0 {
			continue
		}
		segs[i].Patches = make([]content.Patch, len(mp))
		for j, p := range mp {
			segs[i].Patches[j] = content.Patch{From: p.From, To: p.To, First: p.First, Chunks: p.Chunks, Object: p.Object}
		}
	}
	return segs
}

// metaContent is the content a flush staged, in the form meta stores: the file's identity
// and key as the flush left them (a file can move to a new key: content/seals.go; id and
// wrapped, as opened, stand in only if the flush did not say), its seal count, each
// segment marked patched or not, and the patch lists of the segments the flush changed.
func metaContent(id vault.FileID, wrapped vault.WrappedKey, st content.Staged) meta.Content {
	if st.FileID != (vault.FileID{}) {
		id, wrapped = st.FileID, st.Key
	}
	c := meta.Content{FileID: id, Key: wrapped, Seals: st.Seals, Segments: make([]meta.Segment, len(st.Segments))}
	byIndex := make(map[uint64]int, len(st.Segments))
	for i, s := range st.Segments {
		c.Segments[i] = meta.Segment{Index: s.Index, Object: s.Object, Patched: len(s.Patches) > 0}
		byIndex[s.Index] = i
	}
	for _, idx := range st.Changed {
		i, ok := byIndex[idx]
		if !ok {
			continue // cut by a truncate: meta drops its patches with it
		}
		if c.Patches == nil {
			c.Patches = make(map[uint64][]meta.Patch)
		}
		ps := make([]meta.Patch, 0, len(st.Segments[i].Patches))
		for _, p := range st.Segments[i].Patches {
			ps = append(ps, meta.Patch{From: p.From, To: p.To, First: p.First, Chunks: p.Chunks, Object: p.Object})
		}
		c.Patches[idx] = ps
	}
	return c
}
