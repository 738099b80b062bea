package fs

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"dsh/acl"
	"dsh/audit"
	"dsh/metrics"
	"dsh/token"
	"dsh/vault"
)

// grant is what one access check established about the caller of one operation.
type grant struct {
	be       *Backend
	uid      int
	gid      uint32
	share    string
	ring     *token.Keyring // the caller's keyring, which held the share's key at the check
	arrivals bool           // the key is the keyring's Arrivals key
	readOnly bool
}

// useKey runs fn with the folder's key under the keyring's lock, so that a revocation
// cannot wipe the key while it is used; a key revoked since the check is EACCES.
func (gr grant) useKey(fn func(*vault.Key) error) error {
	var ok bool
	var err error
	if gr.arrivals {
		ok, err = gr.ring.UseArrivals(fn)
	} else {
		ok, err = gr.ring.UseKey(gr.share, fn)
	}
	if !ok {
		return syscall.EACCES
	}
	return err
}

// callerOf returns the uid and gid of the process behind a FUSE request.
func callerOf(ctx context.Context) (uid int, gid uint32, ok bool) {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return -1, 0, false
	}
	return int(c.Uid), c.Gid, true
}

// eHidden is what check answers when the caller may not even know that the share (or
// Arrivals folder) exists: no session, not a member, sealed. It never reaches the kernel:
// observe turns it into ENOENT, as for a name that does not exist, and counts the
// operation as denied; a handle that is already open gets EACCES instead (handle.live).
// Because a non-member gets ENOENT from every operation inside a share, not only from the
// lookup at the root, the kernel may cache the root's names: a name cached for a member
// still shows nothing to anyone else.
const eHidden = syscall.Errno(0x7fff)

// check is the one access check of the Group tree, made on every operation: the store must
// be unsealed, the caller must hold a live session whose keyring has the share's key, and
// the acl must allow op on the share now. A refusal is counted by reason; it is eHidden, or
// EACCES for a member asking for what its mode does not allow (a read-only member's write,
// any write into Arrivals).
func (g *Group) check(ctx context.Context, share string, op acl.Op) (grant, syscall.Errno) {
	uid, gid, ok := callerOf(ctx)
	if !ok {
		g.denied(metrics.ReasonInvalid)
		return grant{}, eHidden
	}
	return g.checkAs(uid, gid, share, op)
}

// checkAs is check for a given uid rather than the request's: an open handle is decided
// for the uid that opened it (handle.live), whatever uid the kernel put in the request.
func (g *Group) checkAs(uid int, gid uint32, share string, op acl.Op) (grant, syscall.Errno) {
	gr, e, reason := g.decide(uid, gid, share, op)
	if e != 0 {
		g.denied(reason)
	}
	return gr, e
}

// decide is the decision of checkAs without counting it: AccessEnded asks it of every
// opener, which is no access attempt.
func (g *Group) decide(uid int, gid uint32, share string, op acl.Op) (grant, syscall.Errno, metrics.Reason) {
	be := g.backend()
	if be == nil {
		return grant{}, eHidden, metrics.ReasonSealed
	}
	ring, ok := be.Sessions.Keyring(uid)
	if !ok {
		return grant{}, eHidden, metrics.ReasonNoSession
	}
	name, arrivals := share, g.opts.Tree == acl.Arrivals
	if arrivals {
		// An Arrivals folder opens with its owner's Arrivals key; the acl decides by owner.
		name = strings.TrimPrefix(share, arrivalsPrefix)
		ok = ring.HasArrivals()
	} else {
		ok = ring.Has(share)
	}
	if !ok {
		return grant{}, eHidden, metrics.ReasonNotMember
	}
	d := be.ACL.Decide(uid, g.opts.Tree, name, op)
	if !d.Allow {
		if d.Reason == acl.ReasonReadOnly || d.Reason == acl.ReasonInboundOnly {
			return grant{}, syscall.EACCES, metrics.Reason(d.Reason)
		}
		return grant{}, eHidden, metrics.Reason(d.Reason)
	}
	return grant{be: be, uid: uid, gid: gid, share: share, ring: ring, arrivals: arrivals, readOnly: d.Mode != acl.ReadWrite}, 0, ""
}

func (g *Group) denied(r metrics.Reason) {
	if g.met != nil {
		g.met.Denied(g.label, r)
	}
}

// record appends an audit record of a file event and returns 0, or EIO when the record
// could not be written: an access that cannot be accounted for does not happen.
func (g *Group) record(ctx context.Context, be *Backend, action, object, result, detail string) syscall.Errno {
	uid, _, _ := callerOf(ctx)
	return g.recordFor(ctx, be, uid, action, object, result, detail)
}

// recordFor is record for a given uid: records of reads and writes on an open handle name
// the uid that opened it.
func (g *Group) recordFor(ctx context.Context, be *Backend, uid int, action, object, result, detail string) syscall.Errno {
	if be == nil {
		return syscall.EIO
	}
	user := ""
	if u, ok := be.ACL.UserByUID(uid); ok {
		user = u.ID
	}
	_, err := be.Audit.Append(context.WithoutCancel(ctx), audit.Entry{
		UID: int64(uid), User: user, Action: action, Object: string(g.label) + ":" + object, Result: result, Detail: detail,
	}, audit.Buffered)
	if err != nil {
		g.log.Error("group tree: audit record not written; refusing the operation", "action", action, "err", err)
		return syscall.EIO
	}
	return 0
}

// change makes an allowed namespace change the way DESIGN.md asks: its audit record is
// written first (no record, no change), and if the change then fails, a second record
// says so, so the log never shows a change that did not happen as if it had.
func (g *Group) change(ctx context.Context, be *Backend, action, object, detail, op string, fn func() error) syscall.Errno {
	if e := g.record(ctx, be, action, object, "ok", detail); e != 0 {
		return e
	}
	if err := fn(); err != nil {
		e := errno(g.log, op, err)
		_ = g.record(ctx, be, action, object, "error", e.Error())
		return e
	}
	return 0
}

// recordDenied audits a refused open, create or delete. The refusal stands whether or not
// the record lands.
func (g *Group) recordDenied(ctx context.Context, action, object string) {
	if be := g.backend(); be != nil {
		_ = g.record(ctx, be, action, object, "denied", "")
	}
}
