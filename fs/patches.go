package fs

import (
	"context"
	"slices"
	"sync"

	"dsh/content"
	"dsh/meta"
	"dsh/vault"
)

// The content of a file travels between meta (which stores it) and content (which reads
// and writes it) in two shapes; these convert, patches included (content/patch.go: a
// small write into a big file is stored as a patch over its segment). meta.Patch and
// content.Patch have the same fields, so a patch converts directly; a field added to one
// and not the other fails to compile here.

// layoutsMax bounds what the layout cache keeps: its entries' patches and segments
// together (about 100 bytes each).
const layoutsMax = 16384

// layoutCache keeps the checked layouts of files with patches, so that opening such a file
// again (a database or a build tool opens and closes its files all the time) does not
// read, convert and check every patch anew. An entry serves only the committed state it
// was made from: the same file ID, size and segment list, and the very *meta.PatchSet meta
// handed out for it (meta makes a new set whenever the file's patches change, and the
// entry holds the set, so its address cannot be reused by another state).
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
	patches *meta.PatchSet
	layout  *content.Layout
}

// items is what the entry counts against layoutsMax.
func (e *layoutEntry) items() int { return e.layout.Patches() + len(e.segs) }

func (e *layoutEntry) matches(a *meta.Attr, ps *meta.PatchSet) bool {
	return e.patches == ps && e.fileID == a.Content.FileID && e.size == a.Size && slices.Equal(e.segs, a.Content.Segments)
}

// patchesOf returns the patches of a's content; nil, without asking meta, when the inode
// marks no segment as patched.
func patchesOf(ctx context.Context, be *Backend, a *meta.Attr) (*meta.PatchSet, error) {
	for _, s := range a.Content.Segments {
		if s.Patched {
			return be.Meta.PatchesOf(ctx, a.Ino)
		}
	}
	return nil, nil
}

// layoutOf returns the checked layout of a's content, from the cache when it holds this
// state. Files without patches are checked every time: that is cheap.
func layoutOf(ctx context.Context, be *Backend, a *meta.Attr) (*content.Layout, error) {
	ps, err := patchesOf(ctx, be, a)
	if err != nil {
		return nil, err
	}
	if ps == nil {
		return be.Content.CheckLayout(a.Size, contentSegments(a))
	}
	c := &be.layouts
	c.mu.Lock()
	if e := c.m[a.Ino]; e != nil && e.matches(a, ps) {
		c.mu.Unlock()
		return e.layout, nil
	}
	c.mu.Unlock()
	l, err := be.Content.CheckLayout(a.Size, addPatches(contentSegments(a), ps))
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
// package content takes.
func contentSegmentsOf(ctx context.Context, be *Backend, a *meta.Attr) ([]content.Segment, error) {
	ps, err := patchesOf(ctx, be, a)
	if err != nil {
		return nil, err
	}
	return addPatches(contentSegments(a), ps), nil
}

// addPatches adds the patch lists of ps (if any) to segs.
func addPatches(segs []content.Segment, ps *meta.PatchSet) []content.Segment {
	if ps == nil {
		return segs
	}
	for i := range segs {
		mp := ps.Lists[segs[i].Index]
		if len(mp) == 0 {
			continue
		}
		segs[i].Patches = make([]content.Patch, len(mp))
		for j, p := range mp {
			segs[i].Patches[j] = content.Patch(p)
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
			ps = append(ps, meta.Patch(p))
		}
		c.Patches[idx] = ps
	}
	return c
}
