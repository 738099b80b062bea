package airlock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"

	"dsh/kv"
	"dsh/metrics"
	"dsh/scan"
)

// Download is one approved file on its way out.
type Download struct {
	// Name is the file's name (the last element of its path).
	Name   string
	Size   int64
	SHA256 string
	// Body streams the approved bytes; its Read fails with an error wrapping ErrChanged
	// (never io.EOF) if the bytes do not hash to SHA256. The caller closes it.
	Body io.ReadCloser
}

// fileOf returns file n (counted from 1) of r.
func fileOf(r *Request, n int) (File, error) {
	if n < 1 || n > len(r.Files) {
		return File{}, fmt.Errorf("%w: request %s has files 1 to %d, not %d", ErrInvalid, r.ID, len(r.Files), n)
	}
	return r.Files[n-1], nil
}

// frozen turns a stored file back into what Files opens.
func frozen(f File) Frozen {
	return Frozen{Path: f.Path, Size: f.Size, Objects: f.Objects, Content: f.Content}
}

// Download hands file n of request id to its requester: only the requester (and only while
// still a member of the share), only while the request is approved or released and its
// window is open, and only the approved bytes. The
// file is hashed and scanned before any byte leaves (a difference or a finding refuses the
// download), the download is audited (the first one releases the request, after which the
// approval can no longer be revoked), and the bytes are hashed again as they stream.
func (s *Store) Download(ctx context.Context, who Who, id string, n int) (*Download, error) {
	const action = "egress.download"
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.canSee(ctx, who, r) {
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: %s", ErrNotFound, id))
	}
	count := func(res metrics.Result) {
		if s.opts.Metrics != nil {
			s.opts.Metrics.Download(res)
		}
	}
	refuse := func(err error) (*Download, error) {
		count(metrics.ResultDenied)
		return nil, s.refuse(ctx, who, action, r, err)
	}
	switch {
	case who.User == "" || who.User != r.Requester:
		return refuse(fmt.Errorf("%w: only the requester (%s) downloads approved files", ErrForbidden, r.Requester))
	case r.State != Approved && r.State != Released:
		return refuse(fmt.Errorf("%w: request %s is %s", ErrState, r.ID, r.State.Label()))
	case !s.now().Before(r.Expires):
		return refuse(fmt.Errorf("%w: the download window of request %s ended", ErrState, r.ID))
	case !s.dir.CanRead(who.UID, r.Share):
		// Someone who has left the share takes nothing out of it, approved or not.
		return refuse(fmt.Errorf("%w: you are no longer a member of share %s", ErrForbidden, r.Share))
	case s.scanner == nil:
		return refuse(fmt.Errorf("%w: no malware scanner is configured", ErrScan))
	}
	f, err := fileOf(r, n)
	if err != nil {
		return refuse(err)
	}
	// Before any byte leaves: the bytes must still be the approved ones, and clean.
	sum, v, err := s.hashAndScan(ctx, r.Share, frozen(f))
	switch {
	case err != nil:
		count(metrics.ResultError)
		_ = s.record(ctx, who, action, r, "error", fmt.Sprintf("file %d %s: %v", n, f.Path, err))
		return nil, fmt.Errorf("%w: file %d of request %s could not be read or scanned: %w", ErrChanged, n, r.ID, err)
	case sum != f.SHA256:
		count(metrics.ResultError)
		_ = s.record(ctx, who, action, r, "error", fmt.Sprintf("file %d %s: sha256 %s, approved %s", n, f.Path, sum, f.SHA256))
		return nil, fmt.Errorf("%w: file %d of request %s", ErrChanged, n, r.ID)
	case v.Result != scan.Clean:
		count(metrics.ResultError)
		_ = s.record(ctx, who, action, r, "error", fmt.Sprintf("file %d %s: %s", n, f.Path, v))
		return nil, fmt.Errorf("%w: file %d of request %s is now %s", ErrScan, n, r.ID, v)
	}
	r.Downloads++
	detail := fmt.Sprintf("file %d %s %d B sha256 %s; scan clean; download %d", n, f.Path, f.Size, f.SHA256, r.Downloads)
	if r.State == Approved {
		err = s.transition(ctx, who, action, r, Released, "", detail)
	} else {
		if err = s.record(ctx, who, action, r, "ok", "released; "+detail); err == nil {
			err = s.save(context.WithoutCancel(ctx), r)
		}
	}
	if err != nil {
		return nil, err
	}
	rc, err := s.files.Open(ctx, r.Share, frozen(f))
	if err != nil {
		return nil, err
	}
	body := &verified{rc: rc, h: sha256.New(), size: f.Size, want: f.SHA256, done: func(ok bool, why string) {
		if ok {
			count(metrics.ResultOK)
			if s.opts.Metrics != nil {
				s.opts.Metrics.ReleasedBytes.Add(float64(f.Size))
			}
			return
		}
		count(metrics.ResultError)
		_ = s.record(context.WithoutCancel(ctx), who, action, r, "error", fmt.Sprintf("file %d %s: %s", n, f.Path, why))
	}}
	return &Download{Name: path.Base(f.Path), Size: f.Size, SHA256: f.SHA256, Body: body}, nil
}

// View opens file n of request id for reading by a reviewer of its project: the review
// view, which needs no membership of the share. Its requester is refused, even one who
// reviews the project's other requests: the portal shows the view in a browser, which may
// be outside the haven, so it would let the bytes out before any approval; and a requester
// removed from the share would keep reading through it (a member reads the share itself).
// It is audited; the bytes are checked against the frozen hash as they stream.
func (s *Store) View(ctx context.Context, who Who, id string, n int) (*Download, error) {
	const action = "egress.view"
	r, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.canSee(ctx, who, r) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	switch {
	case who.Operator || who.User == "":
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: the operator sees requests, not their files", ErrForbidden))
	case who.User == r.Requester:
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: the requester does not view a request's files through the review view; read them in the share, or download them once approved", ErrForbidden))
	case !s.isReviewer(ctx, who, r.Project):
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: only the project's reviewers view a request's files", ErrForbidden))
	case r.Manifest == "" || r.Unpinned:
		return nil, s.refuse(ctx, who, action, r, fmt.Errorf("%w: request %s holds no frozen files (it is %s)", ErrState, r.ID, r.State.Label()))
	}
	f, err := fileOf(r, n)
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, who, action, r, "ok", fmt.Sprintf("file %d %s %d B sha256 %s", n, f.Path, f.Size, f.SHA256)); err != nil {
		return nil, err
	}
	rc, err := s.files.Open(ctx, r.Share, frozen(f))
	if err != nil {
		return nil, err
	}
	body := &verified{rc: rc, h: sha256.New(), size: f.Size, want: f.SHA256, done: func(bool, string) {}}
	return &Download{Name: path.Base(f.Path), Size: f.Size, SHA256: f.SHA256, Body: body}, nil
}

// verified streams rc and checks, at its end, that exactly size bytes came that hash to
// want; otherwise its last Read fails with ErrChanged instead of io.EOF.
type verified struct {
	rc   io.ReadCloser
	h    hash.Hash
	n    int64
	size int64
	want string
	done func(ok bool, why string)
	end  error
}

func (v *verified) Read(p []byte) (int, error) {
	if v.end != nil {
		return 0, v.end
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		v.end = fmt.Errorf("%w: more bytes than approved", ErrChanged)
		v.done(false, v.end.Error())
		return 0, v.end
	}
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); v.n != v.size || got != v.want {
			v.end = fmt.Errorf("%w: %d bytes with sha256 %s, approved %d bytes with %s", ErrChanged, v.n, got, v.size, v.want)
			v.done(false, v.end.Error())
			return n, v.end
		}
		v.end = io.EOF
		v.done(true, "")
		return n, io.EOF
	}
	if err != nil {
		v.end = err
		v.done(false, err.Error())
	}
	return n, err
}

func (v *verified) Close() error { return v.rc.Close() }

// SetPolicy changes project's review rule: k (when not 0) and the extra reviewers to add
// and remove. The project's IAO or the operator may. k is at least 2: no single person
// decides alone what leaves.
func (s *Store) SetPolicy(ctx context.Context, who Who, project string, k int, add, remove []string) (Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	iao, _, ok := s.dir.Managers(project)
	object := "project " + project
	deny := func(err error) (Policy, error) {
		_ = s.append(ctx, who, "egress.policy", object, "denied", err.Error())
		return Policy{}, err
	}
	if !ok {
		return deny(fmt.Errorf("%w: project %s not found", ErrNotFound, project))
	}
	if !who.Operator && (who.User == "" || who.User != iao) {
		return deny(fmt.Errorf("%w: only the IAO of project %s (or the operator) sets its review rule", ErrForbidden, project))
	}
	pol, err := s.Policy(ctx, project)
	if err != nil {
		return Policy{}, err
	}
	if k != 0 {
		if k < 2 || k > 9 {
			return deny(fmt.Errorf("%w: k must be 2 to 9, not %d", ErrInvalid, k))
		}
		pol.K = k
	}
	for _, u := range add {
		if !s.dir.Active(u) {
			return deny(fmt.Errorf("%w: %s is not an active account", ErrInvalid, u))
		}
		if !slices.Contains(pol.Reviewers, u) {
			pol.Reviewers = append(pol.Reviewers, u)
		}
	}
	pol.Reviewers = slices.DeleteFunc(pol.Reviewers, func(u string) bool { return slices.Contains(remove, u) })
	slices.Sort(pol.Reviewers)
	if err := s.append(ctx, who, "egress.policy", object, "ok", fmt.Sprintf("k %d; extra reviewers %v", pol.K, pol.Reviewers)); err != nil {
		return Policy{}, err
	}
	if err := s.kv.Update(ctx, func(tx kv.Txn) error { return setJSON(tx, policyKey(project), pol) }); err != nil {
		return Policy{}, err
	}
	return pol, nil
}

// Reviewers returns who reviews project's requests, with its policy.
func (s *Store) Reviewers(ctx context.Context, project string) ([]string, Policy, error) {
	return s.reviewers(ctx, project)
}
