package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"dsh/content"
	"dsh/meta"
)

// Frozen content: the airlock's egress requests keep the content a share file had when the
// request was submitted, by pinning its objects (meta.Pin) and keeping the file's content
// record (ID, wrapped key, segments). The objects are immutable, so the pinned record reads
// back exactly the submitted bytes however the file changes later; the daemon reads it with
// the share's key for reviewers, who need no membership of the share.

// Errors of Freeze.
var (
	// ErrNotRegular: a path that is not a regular file in the share.
	ErrNotRegular = errors.New("not a regular file in the share")
	// ErrNoFile: no such path in the share.
	ErrNoFile = errors.New("no such file in the share")
)

// FrozenFile is one file as frozen.
type FrozenFile struct {
	Path    string
	Size    int64
	Content meta.Content
}

// Objects returns the IDs of the objects the frozen content reads from, in file order:
// each segment's object, then its patches'.
func (f FrozenFile) Objects() []string {
	out := make([]string, 0, len(f.Content.Segments))
	for _, s := range f.Content.Segments {
		out = append(out, s.Object.String())
		for _, p := range f.Content.Patches[s.Index] {
			out = append(out, p.Object.String())
		}
	}
	return out
}

// resolve finds path in share, following no symlinks.
func resolve(ctx context.Context, be *Backend, share, path string) (meta.Attr, error) {
	a, err := be.Meta.ShareRoot(ctx, share, shareRootMode)
	if err != nil {
		return meta.Attr{}, err
	}
	for _, name := range strings.Split(path, "/") {
		if a.Kind != meta.KindDir {
			return meta.Attr{}, fmt.Errorf("%s: %w", path, ErrNotRegular)
		}
		if a, err = be.Meta.Lookup(ctx, a.Ino, name); err != nil {
			if errors.Is(err, meta.ErrNotFound) {
				return meta.Attr{}, fmt.Errorf("%s: %w %s", path, ErrNoFile, share)
			}
			return meta.Attr{}, err
		}
	}
	if a.Kind != meta.KindFile {
		return meta.Attr{}, fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	return a, nil
}

// Freeze finds paths in share and pins the content each has now under pin (segments and
// their patches), all in one transaction. Open files' unflushed writes are not part of it: what is frozen is what the
// metadata recorded, as another reader would see it.
func Freeze(ctx context.Context, be *Backend, share, pin string, paths []string) ([]FrozenFile, error) {
	inos := make([]meta.Ino, len(paths))
	for i, p := range paths {
		a, err := resolve(ctx, be, share, p)
		if err != nil {
			return nil, err
		}
		inos[i] = a.Ino
	}
	as, err := be.Meta.Pin(ctx, pin, inos...)
	if err != nil {
		return nil, err
	}
	out := make([]FrozenFile, len(as))
	for i, a := range as {
		out[i] = FrozenFile{Path: paths[i], Size: a.Size, Content: a.Content}
	}
	return out, nil
}

// OpenFrozen returns a reader of a frozen file's plaintext, decrypted with share's key. A
// damaged or missing object fails the read with an error wrapping content.ErrIntegrity.
func OpenFrozen(ctx context.Context, be *Backend, share string, f FrozenFile) (io.ReadCloser, error) {
	key, err := be.ACL.ShareKey(ctx, share)
	if err != nil {
		return nil, err
	}
	segs := make([]content.Segment, len(f.Content.Segments))
	for i, s := range f.Content.Segments {
		segs[i] = content.Segment{Index: s.Index, Object: s.Object}
		for _, p := range f.Content.Patches[s.Index] {
			segs[i].Patches = append(segs[i].Patches, content.Patch(p))
		}
	}
	file, err := be.Content.Open(share, &key, f.Content.FileID, f.Content.Key, f.Size, segs, readOnly)
	key.Wipe()
	if err != nil {
		return nil, err
	}
	return &frozenReader{fileReader: fileReader{ctx: context.WithoutCancel(ctx), f: file, size: f.Size}}, nil
}

// readOnly refuses to commit: frozen content is never written.
func readOnly(context.Context, content.Staged) error {
	return errors.New("frozen content is read-only")
}

type frozenReader struct{ fileReader }

func (r *frozenReader) Close() error {
	r.f.Close()
	return nil
}
