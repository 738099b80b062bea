package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"dsh/acl"
	"dsh/meta"
	"dsh/metrics"
	"dsh/scan"
)

// quarantineDir holds, inside a user's Arrivals folder, the uploads the malware gate
// stopped. Like the staging folder it is never shown (hidden), so the uploader cannot
// reach it through the mount; a quarantined file stays encrypted under the user's Arrivals
// key exactly as it was staged, and moves out only by one rename when two people release it.
const quarantineDir = ".quarantine"

// quarantineXattr holds a quarantined file's record (JSON Quarantined). It is in the
// trusted. namespace, which the mount never lets a member read or set.
const quarantineXattr = "trusted.dsh.quarantine"

// Errors of quarantine actions.
var (
	// ErrNoQuarantined: no quarantined file has that ID.
	ErrNoQuarantined = errors.New("no such quarantined file")
	// ErrSamePerson: a release needs two different people, neither of them the uploader.
	ErrSamePerson = errors.New("a release needs a second, different person")
)

// ReleaseApprovals is how many different people must ask for a quarantined file's release.
const ReleaseApprovals = 2

// Quarantined is one file held by the malware gate.
type Quarantined struct {
	ID      string       `json:"id"`
	User    string       `json:"user"` // the uploader
	Name    string       `json:"name"` // the name it was uploaded as
	Size    int64        `json:"size"`
	Verdict scan.Verdict `json:"verdict"`
	Held    time.Time    `json:"held"`
	// Release lists who asked for the file's release so far (user IDs, "operator").
	Release []string `json:"release,omitempty"`

	ino meta.Ino
}

// newQuarantineID draws the ID of a quarantined file: short enough to type.
func newQuarantineID() string {
	var b [5]byte
	rand.Read(b[:])
	return "q" + hex.EncodeToString(b[:])
}

// quarantineFolder returns the quarantine folder of user's Arrivals root, making it when
// create is set (ok is false when it does not exist and create is not set).
func quarantineFolder(ctx context.Context, be *Backend, root meta.Ino, create bool) (meta.Attr, bool, error) {
	q, err := be.Meta.Lookup(ctx, root, quarantineDir)
	if errors.Is(err, meta.ErrNotFound) {
		if !create {
			return meta.Attr{}, false, nil
		}
		q, err = be.Meta.Create(ctx, root, quarantineDir, meta.KindDir, 0o700, "", meta.Content{})
		if errors.Is(err, meta.ErrExists) {
			q, err = be.Meta.Lookup(ctx, root, quarantineDir)
		}
	}
	if err != nil {
		return meta.Attr{}, false, fmt.Errorf("quarantine folder: %w", err)
	}
	return q, true, nil
}

// quarantine moves the staged file into the uploader's quarantine folder: audited first
// (with the verdict and the signature), then its record is set and one rename moves it, so
// it is never published. The upload is closed. u.mu must be held.
func (u *Upload) quarantine(ctx context.Context, v scan.Verdict, size int64) (Arrival, error) {
	be := u.be
	q := Quarantined{ID: newQuarantineID(), User: u.user, Name: u.name, Size: size, Verdict: v, Held: time.Now().UTC()}
	detail := fmt.Sprintf("%s; %d bytes; quarantine %s", v, size, q.ID)
	if err := u.g.recordAs(ctx, be, u.uid, u.user, "arrivals.quarantine", u.user+"/"+u.name, "denied", detail); err != nil {
		return Arrival{}, err
	}
	bg := context.WithoutCancel(ctx)
	dir, _, err := quarantineFolder(bg, be, u.root, true)
	if err != nil {
		return Arrival{}, fmt.Errorf("arrivals: %w", err)
	}
	rec, err := json.Marshal(q)
	if err != nil {
		return Arrival{}, fmt.Errorf("arrivals: quarantine record: %w", err)
	}
	if err := be.Meta.SetXattr(bg, u.staged, quarantineXattr, rec, 0); err != nil {
		return Arrival{}, fmt.Errorf("arrivals: quarantine record: %w", err)
	}
	if _, err := be.Meta.Rename(bg, u.inc, u.tmp, dir.Ino, q.ID, meta.RenameNoReplace); err != nil {
		return Arrival{}, fmt.Errorf("arrivals: move into quarantine: %w", err)
	}
	u.state = uploadFinished
	u.dropFile()
	u.g.airlockMetrics(func(m *metrics.Airlock) { m.Quarantined.Inc() })
	what := "it is held in quarantine"
	if v.Result == scan.Held {
		what = "it is held for review"
	}
	return Arrival{}, fmt.Errorf("upload of %q %w: %s; %s (%s) until the operator and a second person release or delete it", u.name, ErrQuarantined, v, what, q.ID)
}

// Quarantine lists every quarantined file, oldest first. A file whose record was lost (a
// crash between its move and its record) is listed under its ID with an unknown verdict.
func (g *Group) Quarantine(ctx context.Context) ([]Quarantined, error) {
	be := g.backend()
	if be == nil {
		return nil, ErrSealed
	}
	if g.opts.Tree != acl.Arrivals {
		return nil, ErrNotArrivals
	}
	return quarantineOf(ctx, be)
}

// quarantineOf lists the quarantined files of be.
func quarantineOf(ctx context.Context, be *Backend) ([]Quarantined, error) {
	var out []Quarantined
	for _, user := range be.ACL.UserIDs() {
		root, err := be.Meta.ShareRoot(ctx, arrivalsPrefix+user, shareRootMode)
		if err != nil {
			return nil, err
		}
		dir, ok, err := quarantineFolder(ctx, be, root.Ino, false)
		if err != nil || !ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		var ents []meta.Dirent
		if err := be.Meta.ReadDir(ctx, dir.Ino, 0, func(d meta.Dirent) bool {
			ents = append(ents, d)
			return true
		}); err != nil {
			return nil, err
		}
		for _, d := range ents {
			q := Quarantined{ID: d.Name, User: user, Name: d.Name, Verdict: scan.Verdict{Result: scan.Held, Reason: "record lost"}, ino: d.Ino}
			if a, err := be.Meta.GetAttr(ctx, d.Ino); err == nil {
				q.Size, q.Held = a.Size, time.Unix(0, a.Ctime).UTC()
			}
			if b, err := be.Meta.GetXattr(ctx, d.Ino, quarantineXattr); err == nil {
				var rec Quarantined
				if json.Unmarshal(b, &rec) == nil && rec.ID == d.Name && rec.User == user {
					rec.ino = d.Ino
					q = rec
				}
			}
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b Quarantined) int { return a.Held.Compare(b.Held) })
	return out, nil
}

// findQuarantined returns the quarantined file id with its user's Arrivals root.
func (g *Group) findQuarantined(ctx context.Context, id string) (*Backend, Quarantined, meta.Attr, meta.Attr, error) {
	be := g.backend()
	if be == nil {
		return nil, Quarantined{}, meta.Attr{}, meta.Attr{}, ErrSealed
	}
	all, err := g.Quarantine(ctx)
	if err != nil {
		return nil, Quarantined{}, meta.Attr{}, meta.Attr{}, err
	}
	for _, q := range all {
		if q.ID != id {
			continue
		}
		root, err := be.Meta.ShareRoot(ctx, arrivalsPrefix+q.User, shareRootMode)
		if err != nil {
			return nil, q, root, meta.Attr{}, err
		}
		dir, _, err := quarantineFolder(ctx, be, root.Ino, false)
		return be, q, root, dir, err
	}
	return nil, Quarantined{}, meta.Attr{}, meta.Attr{}, fmt.Errorf("%w: %s", ErrNoQuarantined, id)
}

// QuarantinedFile returns one quarantined file.
func (g *Group) QuarantinedFile(ctx context.Context, id string) (Quarantined, error) {
	_, q, _, _, err := g.findQuarantined(ctx, id)
	return q, err
}

// ReleaseQuarantined records that by (a user ID, or "operator") asks for the release of
// quarantined file id, acting as uid. The uploader never counts, nor does anyone twice; the
// second different person's request releases the file: audited, then moved into the
// uploader's Arrivals under its name (or "name (N).ext"), arriving now. It returns the
// record as it stands and, once released, the arrival.
func (g *Group) ReleaseQuarantined(ctx context.Context, uid int, by, id string) (Quarantined, *Arrival, error) {
	be, q, root, dir, err := g.findQuarantined(ctx, id)
	if err != nil {
		return q, nil, err
	}
	object := q.User + "/" + q.Name + " (" + q.ID + ")"
	if by == q.User || slices.Contains(q.Release, by) {
		_ = g.recordAs(ctx, be, uid, by, "quarantine.release", object, "denied", "needs a second, different person who is not the uploader")
		return q, nil, fmt.Errorf("%w: %s already asked for it or uploaded it", ErrSamePerson, by)
	}
	q.Release = append(q.Release, by)
	if len(q.Release) < ReleaseApprovals {
		if err := g.recordAs(ctx, be, uid, by, "quarantine.release", object, "pending", fmt.Sprintf("%d of %d; %s", len(q.Release), ReleaseApprovals, q.Verdict)); err != nil {
			return q, nil, err
		}
		rec, _ := json.Marshal(q)
		if err := be.Meta.SetXattr(ctx, q.ino, quarantineXattr, rec, meta.XattrReplace); err != nil {
			return q, nil, fmt.Errorf("quarantine: record the release request: %w", err)
		}
		return q, nil, nil
	}
	if err := g.recordAs(ctx, be, uid, by, "quarantine.release", object, "ok",
		fmt.Sprintf("released by %v; %s", q.Release, q.Verdict)); err != nil {
		return q, nil, err
	}
	bg := context.WithoutCancel(ctx)
	// The record goes first: a crash before the rename leaves the file quarantined (listed
	// with its record lost), never published with a stale record.
	if err := be.Meta.RemoveXattr(bg, q.ino, quarantineXattr); err != nil && !errors.Is(err, meta.ErrNoAttr) {
		return q, nil, fmt.Errorf("quarantine: release: %w", err)
	}
	final := ""
	for i := 0; i < 1000 && final == ""; i++ {
		c := candidate(q.Name, i)
		if len(c) > 255 {
			break
		}
		_, err := be.Meta.Rename(bg, dir.Ino, q.ID, root.Ino, c, meta.RenameNoReplace)
		switch {
		case err == nil:
			final = c
		case !errors.Is(err, meta.ErrExists):
			return q, nil, fmt.Errorf("quarantine: release: %w", err)
		}
	}
	if final == "" {
		return q, nil, fmt.Errorf("%w: no free name for %q", ErrBadName, q.Name)
	}
	// It arrives now: its 30 days in Arrivals start at the release.
	now := time.Now().UnixNano()
	a, err := be.Meta.SetAttr(bg, q.ino, meta.SetAttr{Mtime: &now})
	if err != nil {
		return q, nil, fmt.Errorf("quarantine: release: %w", err)
	}
	g.airlockMetrics(func(m *metrics.Airlock) { m.Quarantined.Dec() })
	arr := g.arrival(&a, final)
	return q, &arr, nil
}

// DeleteQuarantined deletes quarantined file id for good (audited first).
func (g *Group) DeleteQuarantined(ctx context.Context, uid int, by, id string) error {
	be, q, _, dir, err := g.findQuarantined(ctx, id)
	if err != nil {
		return err
	}
	if err := g.recordAs(ctx, be, uid, by, "quarantine.delete", q.User+"/"+q.Name+" ("+q.ID+")", "ok", q.Verdict.String()); err != nil {
		return err
	}
	a, err := be.Meta.Unlink(context.WithoutCancel(ctx), dir.Ino, q.ID)
	if err != nil {
		return fmt.Errorf("quarantine: delete: %w", err)
	}
	g.reapIfUnused(context.WithoutCancel(ctx), be, a.Ino, a.Nlink)
	g.airlockMetrics(func(m *metrics.Airlock) { m.Quarantined.Dec() })
	return nil
}

// countQuarantined sets the quarantine gauge from what is stored (at attach).
func (g *Group) countQuarantined(ctx context.Context, be *Backend) {
	if g.opts.Airlock == nil || g.opts.Tree != acl.Arrivals {
		return
	}
	if all, err := quarantineOf(ctx, be); err == nil {
		g.opts.Airlock.Quarantined.Set(float64(len(all)))
	}
}
