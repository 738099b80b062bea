package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"dsh/acl"
	"dsh/audit"
	"dsh/meta"
	"dsh/token"
)

// DefaultRetention is how long a file stays in Arrivals: 30 days.
const DefaultRetention = 720 * time.Hour

// arrivalsPrefix names a user's Arrivals folder in the metadata; share names cannot
// contain ':', so the two trees never meet.
const arrivalsPrefix = "arrivals:"

// incomingDir holds uploads in progress inside a user's folder. It is never shown: a file
// appears in the folder by one rename, once it is complete and durable.
const incomingDir = ".incoming"

// Errors of the ingest path; the daemon maps them to control errors.
var (
	// ErrNoSession: the uploader holds no live session with an Arrivals key.
	ErrNoSession = errors.New("no active session (log in first with dsh login)")
	// ErrBadName: the file name cannot be used in Arrivals.
	ErrBadName = errors.New("invalid file name")
	// ErrSealed: the store is sealed.
	ErrSealed = errors.New("store is sealed")
	// ErrNotArrivals: the tree is not an Arrivals tree.
	ErrNotArrivals = errors.New("not the Arrivals tree")
)

// Arrival is one file in a user's Arrivals folder.
type Arrival struct {
	Name    string
	Size    int64
	Arrived time.Time
	Expires time.Time
}

// Ingester is how files enter Arrivals: `dsh upload` through the control socket now, the
// web portal later. uid is the uploader, as the transport authenticated it.
type Ingester interface {
	// Ingest streams body into uid's Arrivals folder under name (or "name (N).ext" when
	// name is taken) and returns the file as it arrived. Nothing is visible before the
	// whole file is durable and scanned clean; on any error nothing is left behind but
	// objects for the collector (and a quarantined file, when the scanner stopped it).
	Ingest(ctx context.Context, uid int, name string, body io.Reader) (Arrival, error)
	// List returns uid's arrivals with their expiry.
	List(ctx context.Context, uid int) ([]Arrival, error)
	// BeginUpload starts a resumable upload of size bytes (-1: unknown) into uid's
	// Arrivals folder, published by its Finish, under the same rules as Ingest.
	BeginUpload(ctx context.Context, uid int, name string, size int64) (*Upload, error)
}

var _ Ingester = (*Group)(nil)

// arrivalsFolder returns uid's folder (creating its root on first use) with what it takes
// to write there, after the same checks as a read through the mount.
func (g *Group) arrivalsFolder(ctx context.Context, uid int) (be *Backend, user string, ring *token.Keyring, root meta.Attr, err error) {
	if g.opts.Tree != acl.Arrivals {
		return nil, "", nil, root, ErrNotArrivals
	}
	be, user, ring, err = g.arrivalsCaller(uid)
	if err != nil {
		return nil, "", nil, root, err
	}
	root, err = be.Meta.ShareRoot(ctx, arrivalsPrefix+user, shareRootMode)
	return be, user, ring, root, err
}

// arrivalsCaller checks that uid may use its Arrivals folder now: the store is unsealed,
// uid has a live session holding its Arrivals key, and the acl lets it read its folder.
// It reads only memory, so an upload can ask at every buffer.
func (g *Group) arrivalsCaller(uid int) (be *Backend, user string, ring *token.Keyring, err error) {
	be = g.backend()
	if be == nil {
		return nil, "", nil, ErrSealed
	}
	ring, ok := be.Sessions.Keyring(uid)
	if !ok || !ring.HasArrivals() {
		return nil, "", nil, ErrNoSession
	}
	u, ok := be.ACL.UserByUID(uid)
	if !ok || !be.ACL.Decide(uid, acl.Arrivals, u.ID, acl.Read).Allow {
		return nil, "", nil, ErrNoSession
	}
	return be, u.ID, ring, nil
}

// checkName refuses names that are not a single path element a desktop could show.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == ".." || name == incomingDir || name == quarantineDir:
		return fmt.Errorf("%w: %q", ErrBadName, name)
	case len(name) > 255:
		return fmt.Errorf("%w: longer than 255 bytes", ErrBadName)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: %q contains '/' or NUL", ErrBadName, name)
	}
	return nil
}

// candidate returns name for n == 0, else "base (n).ext", as desktops name a second copy.
func candidate(name string, n int) string {
	if n == 0 {
		return name
	}
	ext := path.Ext(name)
	if ext == name {
		ext = ""
	}
	return fmt.Sprintf("%s (%d)%s", strings.TrimSuffix(name, ext), n, ext)
}

// ingestBufs are the 1 MiB buffers uploads stream through.
var ingestBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// fill reads into buf until it is full or the reader fails, and returns the reader's error
// unchanged. Unlike io.ReadFull it keeps a clean end (io.EOF) apart from a transfer cut off
// half-way (io.ErrUnexpectedEOF from an HTTP body whose client went away), which must never
// be published as a whole file.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Ingest implements Ingester: an Upload of unknown size written in one piece and
// finished, or aborted on any error. A body that ends in anything but a clean io.EOF is
// never published.
func (g *Group) Ingest(ctx context.Context, uid int, name string, body io.Reader) (Arrival, error) {
	u, err := g.BeginUpload(ctx, uid, name, -1)
	if err != nil {
		return Arrival{}, err
	}
	if _, err := u.Write(ctx, 0, body); err != nil {
		_ = u.Abort(ctx)
		return Arrival{}, err
	}
	a, err := u.Finish(ctx)
	if err != nil {
		// Nothing to do once Finish has published (the upload is then closed); before,
		// the staged file goes.
		_ = u.Abort(ctx)
		return Arrival{}, err
	}
	return a, nil
}

func (g *Group) arrival(a *meta.Attr, name string) Arrival {
	t := time.Unix(0, a.Mtime)
	return Arrival{Name: name, Size: a.Size, Arrived: t, Expires: t.Add(g.opts.Retention)}
}

// List implements Ingester.
func (g *Group) List(ctx context.Context, uid int) ([]Arrival, error) {
	be, _, _, root, err := g.arrivalsFolder(ctx, uid)
	if err != nil {
		return nil, err
	}
	var out []Arrival
	err = g.eachArrival(ctx, be, root.Ino, func(name string, a *meta.Attr) error {
		out = append(out, g.arrival(a, name))
		return nil
	})
	return out, err
}

// eachArrival calls fn for every published file of a folder.
func (g *Group) eachArrival(ctx context.Context, be *Backend, dir meta.Ino, fn func(name string, a *meta.Attr) error) error {
	var ents []meta.Dirent
	if err := be.Meta.ReadDir(ctx, dir, 0, func(d meta.Dirent) bool {
		if d.Name != incomingDir && d.Name != quarantineDir {
			ents = append(ents, d)
		}
		return true
	}); err != nil {
		return err
	}
	for _, d := range ents {
		a, err := be.Meta.GetAttr(ctx, d.Ino)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(d.Name, &a); err != nil {
			return err
		}
	}
	return nil
}

// recordAs appends an audit record for uid/user outside a FUSE request.
func (g *Group) recordAs(ctx context.Context, be *Backend, uid int, user, action, object, result, detail string) error {
	_, err := be.Audit.Append(context.WithoutCancel(ctx), audit.Entry{
		UID: int64(uid), User: user, Action: action, Object: string(g.label) + ":" + object, Result: result, Detail: detail,
	}, audit.Durable)
	if err != nil {
		g.log.Error("arrivals: audit record not written", "action", action, "err", err)
		return fmt.Errorf("arrivals: audit log: %w", err)
	}
	return nil
}

// cleanIncoming removes uploads left half-way by a daemon that stopped; nothing can be
// uploading while the tree is being attached.
func (g *Group) cleanIncoming(ctx context.Context, be *Backend) (int, error) {
	n := 0
	for _, user := range be.ACL.UserIDs() {
		root, err := be.Meta.ShareRoot(ctx, arrivalsPrefix+user, shareRootMode)
		if err != nil {
			return n, err
		}
		inc, err := be.Meta.Lookup(ctx, root.Ino, incomingDir)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		var names []string
		if err := be.Meta.ReadDir(ctx, inc.Ino, 0, func(d meta.Dirent) bool {
			names = append(names, d.Name)
			return true
		}); err != nil {
			return n, err
		}
		for _, nm := range names {
			a, err := be.Meta.Unlink(ctx, inc.Ino, nm)
			if err != nil {
				return n, err
			}
			if err := be.Meta.Reap(ctx, a.Ino); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// sweepExpired deletes every arrival older than the retention. A file open at that moment
// loses its name at once and its data when its last handle closes (as a deleted file on a
// local disk): a reader that has it open finishes reading it.
func (g *Group) sweepExpired(ctx context.Context, be *Backend, now time.Time) (int, error) {
	n := 0
	for _, user := range be.ACL.UserIDs() {
		root, err := be.Meta.ShareRoot(ctx, arrivalsPrefix+user, shareRootMode)
		if err != nil {
			return n, err
		}
		type arrival struct {
			name string
			ino  meta.Ino
		}
		var expired []arrival
		err = g.eachArrival(ctx, be, root.Ino, func(name string, a *meta.Attr) error {
			if !now.Before(time.Unix(0, a.Mtime).Add(g.opts.Retention)) {
				expired = append(expired, arrival{name, a.Ino})
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		for _, x := range expired {
			object := user + "/" + x.name
			// Fail closed on the audit log: a deletion it cannot record waits for the next sweep.
			if err := g.recordAs(ctx, be, -1, user, "arrivals.expire", object, "ok", "retention "+g.opts.Retention.String()); err != nil {
				return n, fmt.Errorf("expiry postponed: %w", err)
			}
			// The file that expired, not whatever holds its name now: its owner may have
			// deleted it and uploaded a new one under the same name since the look above.
			a, err := be.Meta.UnlinkInode(ctx, root.Ino, x.name, x.ino)
			if errors.Is(err, meta.ErrNotFound) {
				// The record above must not stand for a deletion that did not happen.
				_ = g.recordAs(ctx, be, -1, user, "arrivals.expire", object, "skipped", "the file that expired is gone; the name holds another file or none")
				continue
			}
			if err != nil {
				_ = g.recordAs(ctx, be, -1, user, "arrivals.expire", object, "error", "")
				return n, err
			}
			g.reapIfUnused(ctx, be, a.Ino, a.Nlink)
			if g.met != nil {
				g.met.ArrivalsExpired.Inc()
			}
			n++
		}
	}
	return n, nil
}

// retain runs the retention sweep every interval until ctx ends (the first sweep, at
// attach, catches up with what expired while the daemon was down).
func (g *Group) retain(ctx context.Context, be *Backend) {
	every := min(max(g.opts.Retention/4, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := g.sweepExpired(ctx, be, time.Now()); err != nil && ctx.Err() == nil {
			g.log.Error("arrivals: retention sweep", "err", err)
		} else if n > 0 {
			g.log.Info("arrivals: expired files deleted", "files", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// hidden reports names the tree never shows: the staging folder of uploads in Arrivals, and
// the quarantine of uploads the malware gate stopped.
func (g *Group) hidden(name string) bool {
	return g.opts.Tree == acl.Arrivals && (name == incomingDir || name == quarantineDir)
}
