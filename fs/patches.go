package fs

import (
	"context"

	"dsh/content"
	"dsh/meta"
	"dsh/vault"
)

// The content of a file travels between meta (which stores it) and content (which reads
// and writes it) in two shapes; these convert, patches included (content/patch.go: a
// small write into a big file is stored as a patch over its segment).

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
	return segs, nil
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
