package airlock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"dsh/audit"
	"dsh/metrics"
	"dsh/scan"
)

// reviewers returns who may review project's requests (its IAO, IAAs and the policy's extra
// reviewers, active accounts only) with its policy.
func (s *Store) reviewers(ctx context.Context, project string) ([]string, Policy, error) {
	pol, err := s.Policy(ctx, project)
	if err != nil {
		return nil, pol, err
	}
	iao, iaas, ok := s.dir.Managers(project)
	if !ok {
		return nil, pol, fmt.Errorf("%w: project %s not found", ErrNotFound, project)
	}
	var out []string
	for _, u := range append(append([]string{iao}, iaas...), pol.Reviewers...) {
		if u != "" && !slices.Contains(out, u) && s.dir.Active(u) {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out, pol, nil
}

// isReviewer reports whether who reviews project's requests.
func (s *Store) isReviewer(ctx context.Context, who Who, project string) bool {
	if who.Operator || who.User == "" {
		return false
	}
	rs, _, err := s.reviewers(ctx, project)
	return err == nil && slices.Contains(rs, who.User)
}

// canSee reports whether who may see r: its requester, the project's reviewers, the
// operator (who sees requests, never their bytes).
func (s *Store) canSee(ctx context.Context, who Who, r *Request) bool {
	return who.Operator || (who.User != "" && who.User == r.Requester) || s.isReviewer(ctx, who, r.Project)
}

// object names a request in audit records.
func object(r *Request) string { return "egress " + r.ID + " share " + r.Share }

// hashes describes what a request froze, for its audit records: the manifest and every
// file's size and SHA-256 (paths shortened if the record would grow too long).
func hashes(r *Request) string {
	var b strings.Builder
	if r.Manifest != "" {
		b.WriteString("manifest " + r.Manifest)
	}
	for limit := 200; limit >= 0; limit -= 50 {
		var f strings.Builder
		for i, fl := range r.Files {
			p := fl.Path
			if len(p) > limit {
				p = "..." + p[len(p)-limit:]
			}
			fmt.Fprintf(&f, "; %d %s %d B", i+1, p, fl.Size)
			if fl.SHA256 != "" {
				f.WriteString(" sha256 " + fl.SHA256)
			}
		}
		if b.Len()+f.Len() < 3000 || limit == 0 {
			return b.String() + f.String()
		}
	}
	return b.String()
}

// clip bounds free text kept in a record.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// record writes the audit record of an action on r: Durable for one that takes effect (the
// caller does nothing if it fails), Buffered for a refusal.
func (s *Store) record(ctx context.Context, who Who, action string, r *Request, result, detail string) error {
	return s.append(ctx, who, action, object(r), result, detail)
}

// append writes one audit record; see record.
func (s *Store) append(ctx context.Context, who Who, action, object, result, detail string) error {
	d := audit.Durable
	if result != "ok" {
		d = audit.Buffered
	}
	user := who.User
	if who.Operator {
		user = ""
	}
	e := audit.Entry{UID: int64(who.UID), User: user, Action: action, Object: object, Result: result, Detail: clip(detail, 4000)}
	if _, err := s.audit.Append(context.WithoutCancel(ctx), e, d); err != nil {
		s.opts.Log.Error("airlock: audit record not written", "action", action, "err", err)
		return fmt.Errorf("%s %s refused: %w: %w", action, object, ErrAudit, err)
	}
	return nil
}

// refuse audits a refusal of action on r and returns err.
func (s *Store) refuse(ctx context.Context, who Who, action string, r *Request, err error) error {
	_ = s.record(ctx, who, action, r, "denied", err.Error())
	return err
}

// transition moves r to state: the event is added, the record written (refusing the
// change if it cannot be), then r is saved.
func (s *Store) transition(ctx context.Context, who Who, action string, r *Request, to State, why, detail string) error {
	from := r.State
	r.State = to
	r.History = append(r.History, Event{At: s.now(), By: who.name(), Action: action, State: to, Why: why})
	fromLabel := from.Label()
	if from == "" {
		fromLabel = "new"
	}
	full := fmt.Sprintf("%s -> %s; %s", fromLabel, to.Label(), detail)
	if why != "" {
		full += "; why: " + clip(why, MaxReason)
	}
	if err := s.record(ctx, who, action, r, "ok", full); err != nil {
		return err
	}
	if err := s.save(context.WithoutCancel(ctx), r); err != nil {
		// The record above said it happened; say that it did not.
		_ = s.record(ctx, who, action, r, "error", "not saved: "+err.Error())
		return fmt.Errorf("airlock: %s %s: %w", action, r.ID, err)
	}
	if s.opts.Metrics != nil {
		s.opts.Metrics.Entered(metrics.EgressState(to))
	}
	s.refreshGauge(ctx)
	return nil
}

// refreshGauge sets the per-state gauge from what is stored.
func (s *Store) refreshGauge(ctx context.Context) {
	if s.opts.Metrics == nil {
		return
	}
	all, err := s.all(context.WithoutCancel(ctx))
	if err != nil {
		return
	}
	n := map[metrics.EgressState]int{}
	for _, r := range all {
		n[metrics.EgressState(r.State)]++
	}
	s.opts.Metrics.SetRequests(n)
}

// unpin lets r's frozen objects go; the request no longer needs them.
func (s *Store) unpin(ctx context.Context, r *Request) {
	if err := s.files.Unfreeze(context.WithoutCancel(ctx), pinName(r.ID)); err != nil {
		// The pin stays; Reconcile drops it at the next start.
		s.opts.Log.Error("airlock: unpin", "request", r.ID, "err", err)
		return
	}
	r.Unpinned = true
}

// checkPaths cleans the paths of a new request.
func checkPaths(paths []string) ([]string, error) {
	if len(paths) == 0 || len(paths) > MaxFiles {
		return nil, fmt.Errorf("%w: a request names 1 to %d files, not %d", ErrInvalid, MaxFiles, len(paths))
	}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		c := strings.TrimPrefix(path.Clean("/"+p), "/")
		if p == "" || c == "" || len(c) > 1024 || strings.ContainsRune(c, 0) {
			return nil, fmt.Errorf("%w: file path %q", ErrInvalid, clip(p, 100))
		}
		if slices.Contains(out, c) {
			return nil, fmt.Errorf("%w: %s is named twice", ErrInvalid, c)
		}
		out = append(out, c)
	}
	return out, nil
}

// Create makes a request for the files paths of share, with reason: submitted at once, or
// kept as a draft to submit later. The caller must be able to read the share.
func (s *Store) Create(ctx context.Context, who Who, share string, paths []string, reason string, draft bool) (*Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Request{ID: newID(), Share: share, Requester: who.User, Reason: strings.TrimSpace(reason), Created: s.now()}
	action := "egress.submit"
	if draft {
		action = "egress.draft"
	}
	project, ok := s.dir.ShareProject(share)
	if who.Operator || who.User == "" || !ok || !s.dir.CanRead(who.UID, share) {
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: only a member of share %s with a session may ask to release its files", ErrForbidden, share))
	}
	r.Project = project
	clean, err := checkPaths(paths)
	if err != nil {
		return nil, s.refuse(ctx, who, action, r, err)
	}
	if r.Reason == "" || len(r.Reason) > MaxReason {
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: a request needs a reason (--reason, at most %d bytes)", ErrInvalid, MaxReason))
	}
	for _, p := range clean {
		r.Files = append(r.Files, File{Path: p})
	}
	if draft {
		if err := s.transition(ctx, who, action, r, Draft, "", hashes(r)+"; reason: "+clip(r.Reason, MaxReason)); err != nil {
			return nil, err
		}
		return r, nil
	}
	if err := s.submit(ctx, who, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Submit submits draft id: its files are frozen and scanned now.
func (s *Store) Submit(ctx context.Context, who Who, id string) (*Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case who.User == "" || who.User != r.Requester:
		return nil, s.refuse(ctx, who, "egress.submit", r, fmt.Errorf("%w: only its requester submits a draft", ErrForbidden))
	case r.State != Draft:
		return nil, s.refuse(ctx, who, "egress.submit", r, fmt.Errorf("%w: request %s is %s, not a draft", ErrState, r.ID, r.State.Label()))
	case !s.dir.CanRead(who.UID, r.Share):
		return nil, s.refuse(ctx, who, "egress.submit", r, fmt.Errorf("%w: you may no longer read share %s", ErrForbidden, r.Share))
	}
	if err := s.submit(ctx, who, r); err != nil {
		return nil, err
	}
	return r, nil
}

// submit freezes and scans r's files and moves it to Submitted. s.mu is held.
func (s *Store) submit(ctx context.Context, who Who, r *Request) error {
	const action = "egress.submit"
	rs, pol, err := s.reviewers(ctx, r.Project)
	if err != nil {
		return s.refuse(ctx, who, action, r, err)
	}
	eligible := slices.DeleteFunc(rs, func(u string) bool { return u == r.Requester })
	if len(eligible) < pol.K {
		return s.refuse(ctx, who, action, r, fmt.Errorf("%w: project %s needs %d approvals but has only %d reviewers besides you; its IAO can name more (dsh egress policy)", ErrState, r.Project, pol.K, len(eligible)))
	}
	if s.scanner == nil {
		return s.refuse(ctx, who, action, r, fmt.Errorf("%w: no malware scanner is configured (dsh serve --clamd SOCKET)", ErrScan))
	}
	paths := make([]string, len(r.Files))
	for i, f := range r.Files {
		paths[i] = f.Path
	}
	frozen, err := s.files.Freeze(ctx, r.Share, pinName(r.ID), paths)
	if err != nil {
		return s.refuse(ctx, who, action, r, err)
	}
	fail := func(err error) error {
		if uerr := s.files.Unfreeze(context.WithoutCancel(ctx), pinName(r.ID)); uerr != nil {
			s.opts.Log.Error("airlock: unpin after a failed submission", "request", r.ID, "err", uerr)
		}
		return s.refuse(ctx, who, action, r, err)
	}
	files := make([]File, len(frozen))
	for i, f := range frozen {
		sum, v, err := s.hashAndScan(ctx, r.Share, f)
		if err != nil {
			return fail(fmt.Errorf("%w: %s: %w", ErrScan, f.Path, err))
		}
		if v.Result != scan.Clean {
			return fail(fmt.Errorf("%w: %s is %s; it cannot leave", ErrScan, f.Path, v))
		}
		files[i] = File{Path: f.Path, Size: f.Size, SHA256: sum, Objects: f.Objects, Verdict: &v, Content: f.Content}
	}
	r.Files = files
	r.Manifest = manifest(files)
	r.K = pol.K
	r.Submitted = s.now()
	r.Expires = r.Submitted.Add(s.opts.ReviewFor)
	detail := fmt.Sprintf("k %d of reviewers %v; %s; reason: %s", r.K, eligible, hashes(r), clip(r.Reason, MaxReason))
	if err := s.transition(ctx, who, action, r, Submitted, "", detail); err != nil {
		if uerr := s.files.Unfreeze(context.WithoutCancel(ctx), pinName(r.ID)); uerr != nil {
			s.opts.Log.Error("airlock: unpin after a failed submission", "request", r.ID, "err", uerr)
		}
		return err
	}
	return nil
}

// hashAndScan reads a frozen file once: its bytes go to the scanner and the hash together.
func (s *Store) hashAndScan(ctx context.Context, share string, f Frozen) (string, scan.Verdict, error) {
	rc, err := s.files.Open(ctx, share, f)
	if err != nil {
		return "", scan.Verdict{}, err
	}
	defer rc.Close()
	h := sha256.New()
	start := time.Now()
	v, err := s.scanner.Scan(ctx, f.Size, io.TeeReader(rc, h))
	if s.opts.Metrics != nil {
		r := metrics.ScanResult(v.Result)
		if err != nil {
			r = metrics.ScanError
		}
		s.opts.Metrics.Scanned(r, f.Size, time.Since(start))
	}
	if err != nil {
		return "", v, err
	}
	return hex.EncodeToString(h.Sum(nil)), v, nil
}

// Approve adds who's approval to request id. Only the project's reviewers approve, never
// the requester, each once; the k-th approval makes the request approved, and its download
// window starts.
func (s *Store) Approve(ctx context.Context, who Who, id string) (*Request, error) {
	const action = "egress.approve"
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.canSee(ctx, who, r) {
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: %s", ErrNotFound, id))
	}
	switch {
	case who.User != "" && who.User == r.Requester:
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: the requester never approves their own request", ErrForbidden))
	case !s.isReviewer(ctx, who, r.Project):
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: only the reviewers of project %s (its IAO, IAAs and named reviewers) approve", ErrForbidden, r.Project))
	case r.State != Submitted && r.State != InReview:
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: request %s is %s", ErrState, r.ID, r.State.Label()))
	case slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.User == who.User }):
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: %s has already approved request %s", ErrState, who.User, r.ID))
	}
	r.Approvals = append(r.Approvals, Approval{User: who.User, At: s.now()})
	to := InReview
	if len(r.Approvals) >= r.K {
		to = Approved
		r.Expires = s.now().Add(s.opts.Window)
	}
	detail := fmt.Sprintf("approval %d of %d; %s", len(r.Approvals), r.K, hashes(r))
	if to == Approved {
		detail += "; downloadable by " + r.Requester + " until " + r.Expires.Format(time.RFC3339)
	}
	if err := s.transition(ctx, who, action, r, to, "", detail); err != nil {
		return nil, err
	}
	return r, nil
}

// Reject ends request id with a reviewer's reason.
func (s *Store) Reject(ctx context.Context, who Who, id, reason string) (*Request, error) {
	return s.end(ctx, who, id, "egress.reject", reason, Rejected)
}

// Revoke withdraws the approval of request id before anything was downloaded.
func (s *Store) Revoke(ctx context.Context, who Who, id, reason string) (*Request, error) {
	return s.end(ctx, who, id, "egress.revoke", reason, Revoked)
}

// Cancel withdraws request id (its requester, before it is approved).
func (s *Store) Cancel(ctx context.Context, who Who, id string) (*Request, error) {
	return s.end(ctx, who, id, "egress.cancel", "", Cancelled)
}

// end moves request id to a final state by a person's decision.
func (s *Store) end(ctx context.Context, who Who, id, action, reason string, to State) (*Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.canSee(ctx, who, r) {
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: %s", ErrNotFound, id))
	}
	reason = strings.TrimSpace(reason)
	requester := who.User != "" && who.User == r.Requester
	var allowed bool
	var from []State
	switch to {
	case Rejected:
		allowed, from = !requester && s.isReviewer(ctx, who, r.Project), []State{Submitted, InReview}
	case Revoked:
		allowed, from = !requester && (who.Operator || s.isReviewer(ctx, who, r.Project)), []State{Approved}
	case Cancelled:
		allowed, from = requester, []State{Draft, Submitted, InReview}
	}
	switch {
	case !allowed && to == Cancelled:
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: only its requester cancels a request", ErrForbidden))
	case !allowed:
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: only a reviewer of project %s who is not the requester may do that", ErrForbidden, r.Project))
	case !slices.Contains(from, r.State):
		msg := fmt.Sprintf("request %s is %s", r.ID, r.State.Label())
		if to == Revoked && r.State == Released {
			msg += ": its files have been downloaded"
		}
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: %s", ErrState, msg))
	case to != Cancelled && (reason == "" || len(reason) > MaxReason):
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: give a reason (--reason, at most %d bytes)", ErrInvalid, MaxReason))
	}
	if err := s.transition(ctx, who, action, r, to, reason, hashes(r)); err != nil {
		return nil, err
	}
	if r.Manifest != "" {
		s.unpin(ctx, r)
		_ = s.save(context.WithoutCancel(ctx), r)
	}
	return r, nil
}

// Expire ends what ran out of time at now: requests not decided by their deadline, and
// approvals whose download window ended; released requests let their frozen objects go
// once their window ends. It acts as the daemon itself.
func (s *Store) Expire(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.all(ctx)
	if err != nil {
		return 0, err
	}
	daemon := Who{UID: -1}
	now := s.now()
	n := 0
	for _, r := range all {
		if r.Expires.IsZero() || now.Before(r.Expires) {
			continue
		}
		switch r.State {
		case Submitted, InReview, Approved:
			why := "not decided in time"
			if r.State == Approved {
				why = "approved files not downloaded within the window"
			}
			if err := s.transition(ctx, daemon, "egress.expire", r, Expired, why, hashes(r)); err != nil {
				return n, err
			}
			s.unpin(ctx, r)
			_ = s.save(ctx, r)
			n++
		case Released:
			if r.Unpinned {
				continue
			}
			if err := s.record(ctx, daemon, "egress.close", r, "ok", "download window ended; "+hashes(r)); err != nil {
				return n, err
			}
			s.unpin(ctx, r)
			if err := s.save(ctx, r); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Reconcile drops the pins of requests that no longer need them (a crash between a pin
// and its request's record, or between a request's end and its unpin). For start-up.
func (s *Store) Reconcile(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pins, err := s.files.Pins(ctx, pinPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pins {
		id := strings.TrimPrefix(p, pinPrefix)
		r, err := s.load(ctx, id)
		if err == nil && r.State.open() && !r.Unpinned {
			continue
		}
		if err := s.files.Unfreeze(ctx, p); err != nil {
			return n, err
		}
		n++
	}
	s.refreshGauge(ctx)
	return n, nil
}

// List returns the requests who may see, newest first.
func (s *Store) List(ctx context.Context, who Who) ([]*Request, error) {
	all, err := s.all(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Request
	for _, r := range all {
		if s.canSee(ctx, who, r) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *Request) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// Get returns request id with, for a reviewer of its project (or the operator), the
// project's other submitted requests (newest first), so a reviewer sees what left before
// and can spot differencing across requests. A requester who does not review the project
// gets none: they name files of the project's other shares, with their reasons and hashes.
func (s *Store) Get(ctx context.Context, who Who, id string) (*Request, []*Request, error) {
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !s.canSee(ctx, who, r) {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if !who.Operator && !s.isReviewer(ctx, who, r.Project) {
		return r, nil, nil
	}
	all, err := s.all(ctx)
	if err != nil {
		return nil, nil, err
	}
	var earlier []*Request
	for _, o := range all {
		if o.ID != r.ID && o.Project == r.Project && !o.Submitted.IsZero() {
			earlier = append(earlier, o)
		}
	}
	slices.SortFunc(earlier, func(a, b *Request) int { return b.Submitted.Compare(a.Submitted) })
	return r, earlier, nil
}

// IsReviewer reports whether who reviews the requests of project.
func (s *Store) IsReviewer(ctx context.Context, who Who, project string) bool {
	return s.isReviewer(ctx, who, project)
}
