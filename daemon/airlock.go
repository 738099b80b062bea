package daemon

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"dsh/acl"
	"dsh/airlock"
	"dsh/blob"
	"dsh/content"
	"dsh/control"
	dshfs "dsh/fs"
	"dsh/mail"
	"dsh/meta"
	"dsh/scan"
	"dsh/token"
	"dsh/vault"
)

// The airlock in the daemon: the quarantine of the malware gate (whose files live in the
// Arrivals tree) and egress requests (package airlock, reading share files through the
// frozen-content functions of fs). Every method resolves the caller first: the operator
// (root), or a user with a live two-factor session.

// airlockKinds are the control kinds of the airlock's errors.
var airlockKinds = []kind{
	{airlock.ErrNotFound, control.ErrNotFound},
	{airlock.ErrForbidden, control.ErrForbidden},
	{airlock.ErrState, control.ErrConflict},
	{airlock.ErrInvalid, control.ErrInvalid},
	{airlock.ErrScan, control.ErrConflict},
	{airlock.ErrChanged, control.ErrConflict},
	{airlock.ErrAudit, control.ErrUnavailable},
	{dshfs.ErrNoQuarantined, control.ErrNotFound},
	{dshfs.ErrSamePerson, control.ErrForbidden},
	{dshfs.ErrSealed, control.ErrUnavailable},
	{dshfs.ErrBadName, control.ErrInvalid},
}

func airlockError(err error) error { return withKind(err, airlockKinds) }

// whoIs resolves the caller; d.mu is held.
func (d *Daemon) whoIs(c control.Caller) (airlock.Who, error) {
	if c.IsRoot() {
		return airlock.Who{UID: 0, Operator: true}, nil
	}
	u, ok := d.acl.UserByUID(c.UID)
	if !ok || u.Status != acl.StatusActive {
		return airlock.Who{}, fmt.Errorf("%w: uid %d has no active DSH account", control.ErrForbidden, c.UID)
	}
	if user, _, ok := d.tok.Sessions().Active(c.UID); !ok || user != u.ID {
		return airlock.Who{}, fmt.Errorf("%w: no active session (log in first with dsh login)", control.ErrForbidden)
	}
	return airlock.Who{UID: c.UID, User: u.ID}, nil
}

// withAirlock runs fn with the store unsealed and the caller resolved.
func (d *Daemon) withAirlock(ctx context.Context, c control.Caller, fn func(ctx context.Context, who airlock.Who) error) error {
	// Like acl changes, an action that has started is finished and audited as it happened.
	ctx = context.WithoutCancel(ctx)
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.parts == nil || d.egress == nil {
		return fmt.Errorf("%w: %w", control.ErrUnavailable, vault.ErrSealed)
	}
	who, err := d.whoIs(c)
	if err != nil {
		return err
	}
	return airlockError(fn(ctx, who))
}

// openAirlock builds the egress store at unseal; d.mu is held for writing.
func (d *Daemon) openAirlock(ns *meta.Store, a *acl.Store, tok *token.Service) {
	be := &dshfs.Backend{Meta: ns, Content: content.New(d.parts.Blobs, content.Options{}), Blobs: d.parts.Blobs, ACL: a,
		Sessions: tok.Sessions(), Audit: d.parts.Audit}
	var sc scan.Scanner
	if d.scanner != nil {
		sc = d.scanner
	}
	d.egress = airlock.New(d.parts.KV, d.parts.Audit, directory{a: a, s: tok.Sessions()}, egressFiles{be: be}, sc,
		airlock.Options{Window: d.cfg.EgressWindow, Metrics: d.airlockMet, Log: d.log.With("part", "airlock")})
	if n, err := d.egress.Reconcile(context.Background()); err != nil {
		d.log.Error("airlock: reconcile pins", "err", err)
	} else if n > 0 {
		d.log.Info("airlock: dropped pins of requests that had ended", "pins", n)
	}
}

// sweepEgress ends requests that ran out of time, every interval, until ctx ends.
func (d *Daemon) sweepEgress(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		d.mu.RLock()
		defer d.mu.RUnlock()
		if d.egress == nil {
			return
		}
		if n, err := d.egress.Expire(ctx); err != nil {
			d.log.Error("airlock: expiry sweep", "err", err)
		} else if n > 0 {
			d.log.Info("airlock: requests expired or closed", "requests", n)
		}
	})
}

// directory answers the airlock's questions from the acl and the sessions.
type directory struct {
	a *acl.Store
	s *token.Sessions
}

func (r directory) ShareProject(share string) (string, bool) { return r.a.ShareProject(share) }

func (r directory) CanRead(uid int, share string) bool {
	if !r.a.Decide(uid, acl.Group, share, acl.Read).Allow {
		return false
	}
	ring, ok := r.s.Keyring(uid)
	return ok && ring.Has(share)
}

func (r directory) Managers(project string) (string, []string, bool) {
	p, ok := r.a.ProjectByName(project)
	return p.IAO, p.IAAs, ok
}

func (r directory) Active(user string) bool {
	u, ok := r.a.UserByID(user)
	return ok && u.Status == acl.StatusActive
}

// egressFiles reads share files for the airlock through fs's frozen content.
type egressFiles struct{ be *dshfs.Backend }

// frozenRecord is how a frozen file's content record is kept in a request.
type frozenRecord struct {
	FileID   string   `json:"file_id"`
	Key      []byte   `json:"key"`
	Segments []uint64 `json:"segments"` // segment indexes, in the order of Objects
	Objects  []string `json:"objects"`  // each segment's object
	// Patches are the patches of the patched segments (content/patch.go), which the
	// frozen content reads through as much as through the segments' objects.
	Patches []frozenPatch `json:"patches,omitempty"`
}

// frozenPatch is one patch of segment Segment in a frozenRecord, in 4 KiB blocks
// (meta.Patch). Requests frozen before patches were counted in blocks hold the same fields
// in 64 KiB chunks, Blocks zero and Chunks set; they are read as such (meta.ChunkPatch).
type frozenPatch struct {
	Segment uint64 `json:"segment"`
	From    uint32 `json:"from"`
	To      uint32 `json:"to"`
	First   uint32 `json:"first"`
	Blocks  uint32 `json:"blocks,omitempty"`
	Chunks  uint32 `json:"chunks,omitempty"`
	Object  string `json:"object"`
}

// patch returns p as a meta.Patch of object obj.
func (p frozenPatch) patch(obj blob.ID) (meta.Patch, error) {
	switch {
	case p.Blocks > 0 && p.Chunks == 0:
		return meta.Patch{From: p.From, To: p.To, First: p.First, Blocks: p.Blocks, Object: obj}, nil
	case p.Chunks > 0 && p.Blocks == 0 && p.Chunks <= meta.MaxPatches && p.From <= meta.MaxPatches && p.To <= meta.MaxPatches && p.First <= meta.MaxPatches:
		return meta.ChunkPatch(p.From, p.To, p.First, p.Chunks, obj), nil
	}
	return meta.Patch{}, errors.New("a patch has neither a block nor a chunk count")
}

func (f egressFiles) Freeze(ctx context.Context, share, pin string, paths []string) ([]airlock.Frozen, error) {
	ff, err := dshfs.Freeze(ctx, f.be, share, pin, paths)
	if errors.Is(err, dshfs.ErrNoFile) || errors.Is(err, dshfs.ErrNotRegular) {
		return nil, fmt.Errorf("%w: %w", airlock.ErrInvalid, err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]airlock.Frozen, len(ff))
	for i, x := range ff {
		key, err := x.Content.Key.MarshalBinary()
		if err != nil {
			return nil, err
		}
		rec := frozenRecord{FileID: x.Content.FileID.String(), Key: key}
		for _, s := range x.Content.Segments {
			rec.Segments = append(rec.Segments, s.Index)
			rec.Objects = append(rec.Objects, s.Object.String())
			for _, p := range x.Content.Patches[s.Index] {
				rec.Patches = append(rec.Patches, frozenPatch{Segment: s.Index, From: p.From, To: p.To, First: p.First, Blocks: p.Blocks, Object: p.Object.String()})
			}
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		out[i] = airlock.Frozen{Path: x.Path, Size: x.Size, Objects: x.Objects(), Content: b}
	}
	return out, nil
}

func (f egressFiles) Open(ctx context.Context, share string, fr airlock.Frozen) (io.ReadCloser, error) {
	var rec frozenRecord
	if err := json.Unmarshal(fr.Content, &rec); err != nil || len(rec.Segments) != len(rec.Objects) {
		return nil, fmt.Errorf("airlock: frozen record of %s is damaged", fr.Path)
	}
	c := meta.Content{}
	id, err := hex.DecodeString(rec.FileID)
	if err != nil || len(id) != len(c.FileID) {
		return nil, fmt.Errorf("airlock: frozen record of %s is damaged", fr.Path)
	}
	copy(c.FileID[:], id)
	if c.Key, err = vault.UnmarshalWrappedKey(rec.Key); err != nil {
		return nil, fmt.Errorf("airlock: frozen record of %s: %w", fr.Path, err)
	}
	for i, o := range rec.Objects {
		obj, err := blob.ParseID(o)
		if err != nil {
			return nil, fmt.Errorf("airlock: frozen record of %s: %w", fr.Path, err)
		}
		c.Segments = append(c.Segments, meta.Segment{Index: rec.Segments[i], Object: obj})
	}
	for _, p := range rec.Patches {
		obj, err := blob.ParseID(p.Object)
		if err != nil {
			return nil, fmt.Errorf("airlock: frozen record of %s: %w", fr.Path, err)
		}
		if c.Patches == nil {
			c.Patches = make(map[uint64][]meta.Patch)
		}
		mp, err := p.patch(obj)
		if err != nil {
			return nil, fmt.Errorf("airlock: frozen record of %s is damaged: %w", fr.Path, err)
		}
		c.Patches[p.Segment] = append(c.Patches[p.Segment], mp)
	}
	return dshfs.OpenFrozen(ctx, f.be, share, dshfs.FrozenFile{Path: fr.Path, Size: fr.Size, Content: c})
}

func (f egressFiles) Unfreeze(ctx context.Context, pin string) error {
	return f.be.Meta.Unpin(ctx, pin)
}

func (f egressFiles) Pins(ctx context.Context, prefix string) ([]string, error) {
	return f.be.Meta.Pins(ctx, prefix)
}

// Quarantine.

func quarantineView(q dshfs.Quarantined) control.QuarantineView {
	return control.QuarantineView{ID: q.ID, User: q.User, Name: q.Name, Size: q.Size, Result: string(q.Verdict.Result),
		Signature: q.Verdict.Signature, Verdict: q.Verdict.String(), Held: q.Held, Release: q.Release}
}

// quarantineReviewer reports whether who may see and release q: the operator, or an IAO or
// IAA of a project in whose shares the uploader is a member.
func (d *Daemon) quarantineReviewer(who airlock.Who, q dshfs.Quarantined) bool {
	if who.Operator {
		return true
	}
	up, ok := d.acl.UserByID(q.User)
	if !ok {
		return false
	}
	for _, sh := range d.acl.SharesOf(up.UID) {
		if p, ok := d.acl.ProjectByName(sh.Project); ok && (p.IAO == who.User || slices.Contains(p.IAAs, who.User)) {
			return true
		}
	}
	return false
}

func (d *Daemon) quarantineTree() (*dshfs.Group, error) {
	if d.arrivals == nil {
		return nil, fmt.Errorf("%w: this daemon serves no Arrivals tree (dsh serve --arrivals DIR)", control.ErrUnavailable)
	}
	return d.arrivals, nil
}

// ListQuarantine lists the quarantined files the caller may review.
func (d *Daemon) ListQuarantine(ctx context.Context, c control.Caller) ([]control.QuarantineView, error) {
	var out []control.QuarantineView
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		g, err := d.quarantineTree()
		if err != nil {
			return err
		}
		qs, err := g.Quarantine(ctx)
		for _, q := range qs {
			if d.quarantineReviewer(who, q) {
				out = append(out, quarantineView(q))
			}
		}
		return err
	})
	return out, err
}

// ReleaseQuarantine records the caller's request to release a quarantined file; the second
// different person releases it.
func (d *Daemon) ReleaseQuarantine(ctx context.Context, c control.Caller, id string) (control.QuarantineReleaseResponse, error) {
	var out control.QuarantineReleaseResponse
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		g, err := d.quarantineTree()
		if err != nil {
			return err
		}
		q, err := g.QuarantinedFile(ctx, id)
		if err != nil {
			return err
		}
		if !d.quarantineReviewer(who, q) {
			return fmt.Errorf("%w: %s", dshfs.ErrNoQuarantined, id)
		}
		by := who.User
		if who.Operator {
			by = "operator"
		}
		q, arr, err := g.ReleaseQuarantined(ctx, c.UID, by, id)
		out.File, out.Needed = quarantineView(q), dshfs.ReleaseApprovals
		if arr != nil {
			v := arrivalView(*arr)
			out.Released = &v
		}
		return err
	})
	return out, err
}

// DeleteQuarantine deletes a quarantined file (the operator only).
func (d *Daemon) DeleteQuarantine(ctx context.Context, c control.Caller, id string) error {
	if err := d.requireOperator(ctx, c, "quarantine.delete"); err != nil {
		return err
	}
	return d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		g, err := d.quarantineTree()
		if err != nil {
			return err
		}
		return g.DeleteQuarantined(ctx, c.UID, "operator", id)
	})
}

// Egress.

func egressView(r *airlock.Request) control.EgressView {
	v := control.EgressView{ID: r.ID, Project: r.Project, Share: r.Share, Requester: r.Requester, Reason: r.Reason,
		State: string(r.State), Manifest: r.Manifest, K: r.K, Created: r.Created, Submitted: r.Submitted,
		Expires: r.Expires, Downloads: r.Downloads, Files: []control.EgressFileView{}}
	for _, f := range r.Files {
		fv := control.EgressFileView{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Objects: f.Objects}
		if f.Verdict != nil {
			fv.Verdict = f.Verdict.String()
		}
		v.Files = append(v.Files, fv)
	}
	for _, a := range r.Approvals {
		v.Approvals = append(v.Approvals, control.EgressApprovalView{User: a.User, At: a.At})
	}
	for _, e := range r.History {
		v.History = append(v.History, control.EgressEventView{At: e.At, By: e.By, Action: e.Action, State: string(e.State), Why: e.Why})
	}
	return v
}

// CreateEgress asks to release files of a share.
func (d *Daemon) CreateEgress(ctx context.Context, c control.Caller, req control.EgressCreateRequest) (control.EgressView, error) {
	var out control.EgressView
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		r, err := d.egress.Create(ctx, who, req.Share, req.Paths, req.Reason, req.Draft)
		if err == nil {
			out = egressView(r)
			d.egressNotices(ctx, r, c)
		}
		return err
	})
	return out, err
}

// ListEgress lists the requests the caller may see.
func (d *Daemon) ListEgress(ctx context.Context, c control.Caller) ([]control.EgressView, error) {
	var out []control.EgressView
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		rs, err := d.egress.List(ctx, who)
		for _, r := range rs {
			out = append(out, egressView(r))
		}
		return err
	})
	return out, err
}

// ShowEgress returns one request with the project's earlier ones.
func (d *Daemon) ShowEgress(ctx context.Context, c control.Caller, id string) (control.EgressShowResponse, error) {
	var out control.EgressShowResponse
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		r, earlier, err := d.egress.Get(ctx, who, id)
		if err != nil {
			return err
		}
		out.Request = egressView(r)
		out.Earlier = []control.EgressView{}
		for _, e := range earlier {
			out.Earlier = append(out.Earlier, egressView(e))
		}
		out.Reviewers, _, _ = d.egress.Reviewers(ctx, r.Project)
		out.Reviewer = d.egress.IsReviewer(ctx, who, r.Project)
		return nil
	})
	return out, err
}

// EgressAction does one action to a request.
func (d *Daemon) EgressAction(ctx context.Context, c control.Caller, action string, req control.EgressAction) (control.EgressView, error) {
	var out control.EgressView
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		var r *airlock.Request
		var err error
		switch action {
		case "submit":
			r, err = d.egress.Submit(ctx, who, req.ID)
		case "approve":
			r, err = d.egress.Approve(ctx, who, req.ID)
		case "reject":
			r, err = d.egress.Reject(ctx, who, req.ID, req.Reason)
		case "revoke":
			r, err = d.egress.Revoke(ctx, who, req.ID, req.Reason)
		case "cancel":
			r, err = d.egress.Cancel(ctx, who, req.ID)
		default:
			return fmt.Errorf("%w: unknown action %q", control.ErrInvalid, action)
		}
		if err == nil {
			out = egressView(r)
			d.egressNotices(ctx, r, c)
		}
		return err
	})
	return out, err
}

// egressNotices tells whom a request's new state concerns: its reviewers when it waits
// for them, its requester when it was approved, rejected or revoked.
func (d *Daemon) egressNotices(ctx context.Context, r *airlock.Request, c control.Caller) {
	n := mail.Notice{Object: r.ID, Detail: r.Project, Until: r.Expires, Via: via(c)}
	switch r.State {
	case airlock.Submitted:
		reviewers, _, err := d.egress.Reviewers(ctx, r.Project)
		if err != nil {
			return
		}
		n.Kind = mail.NoticeEgressReview
		for _, u := range reviewers {
			if u != r.Requester {
				n.User = u
				d.notify(n)
			}
		}
		return
	case airlock.Approved:
		n.Kind = mail.NoticeEgressApproved
	case airlock.Rejected:
		n.Kind = mail.NoticeEgressRejected
	case airlock.Revoked:
		n.Kind = mail.NoticeEgressRevoked
	default:
		return
	}
	n.User = r.Requester
	d.notify(n)
}

// DownloadEgress streams file n of an approved request to its requester.
func (d *Daemon) DownloadEgress(ctx context.Context, c control.Caller, id string, n int) (*control.Stream, error) {
	var out *control.Stream
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		dl, err := d.egress.Download(ctx, who, id, n)
		if err == nil {
			out = &control.Stream{Name: dl.Name, Size: dl.Size, SHA256: dl.SHA256, Body: dl.Body}
		}
		return err
	})
	return out, err
}

// ViewEgress streams file n of a request to a reviewer (never its requester).
func (d *Daemon) ViewEgress(ctx context.Context, c control.Caller, id string, n int) (*control.Stream, error) {
	var out *control.Stream
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		dl, err := d.egress.View(ctx, who, id, n)
		if err == nil {
			out = &control.Stream{Name: dl.Name, Size: dl.Size, SHA256: dl.SHA256, Body: dl.Body}
		}
		return err
	})
	return out, err
}

func (d *Daemon) policyView(ctx context.Context, project string, pol airlock.Policy) control.EgressPolicyView {
	rs, _, _ := d.egress.Reviewers(ctx, project)
	return control.EgressPolicyView{Project: project, K: pol.K, Reviewers: rs, Extra: pol.Reviewers}
}

// EgressPolicy returns a project's review rule (anyone with a session may read it).
func (d *Daemon) EgressPolicy(ctx context.Context, c control.Caller, project string) (control.EgressPolicyView, error) {
	var out control.EgressPolicyView
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		if _, ok := d.acl.ProjectByName(project); !ok {
			return fmt.Errorf("%w: project %s", airlock.ErrNotFound, project)
		}
		pol, err := d.egress.Policy(ctx, project)
		out = d.policyView(ctx, project, pol)
		return err
	})
	return out, err
}

// SetEgressPolicy changes a project's review rule.
func (d *Daemon) SetEgressPolicy(ctx context.Context, c control.Caller, req control.EgressPolicyRequest) (control.EgressPolicyView, error) {
	var out control.EgressPolicyView
	err := d.withAirlock(ctx, c, func(ctx context.Context, who airlock.Who) error {
		pol, err := d.egress.SetPolicy(ctx, who, req.Project, req.K, req.Add, req.Remove)
		if err == nil {
			out = d.policyView(ctx, req.Project, pol)
		}
		return err
	})
	return out, err
}

// egressSweepInterval is how often requests are checked for their deadlines: often enough
// for a short window (tests), at most every 30 s.
func egressSweepInterval(window time.Duration) time.Duration {
	if window <= 0 {
		window = airlock.DefaultWindow
	}
	return min(max(window/8, time.Second), 30*time.Second)
}
