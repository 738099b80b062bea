package fs

import (
	"context"
	"fmt"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Changes made through setattr and the extended-attribute calls are audited before they
// take effect, as creates and deletes are: a truncate destroys content, a chmod can make
// a file read-only for every member or executable, a chown is an attempt to give a file
// away (refused: each member is its owner), and extended attributes carry data of their
// own. An attempt refused by the access check is audited as denied.

// attrChange is one auditable part of a setattr.
type attrChange struct {
	action, detail string
	denied         bool // refused whatever the access check says (chown to another owner)
}

// attrChanges lists the auditable parts of a setattr as caller uid, gid sees it; times
// alone (touch, cp -p) are not audited.
func attrChanges(in *fuse.SetAttrIn, uid int, gid uint32) []attrChange {
	var out []attrChange
	if size, ok := in.GetSize(); ok {
		out = append(out, attrChange{action: "fs.truncate", detail: fmt.Sprintf("size %d", size)})
	}
	if m, ok := in.GetMode(); ok {
		out = append(out, attrChange{action: "fs.chmod", detail: fmt.Sprintf("mode %04o", m&0o7777)})
	}
	if u, ok := in.GetUID(); ok {
		out = append(out, attrChange{action: "fs.chown", detail: fmt.Sprintf("uid %d", u), denied: int(u) != uid})
	}
	if g, ok := in.GetGID(); ok {
		out = append(out, attrChange{action: "fs.chown", detail: fmt.Sprintf("gid %d", g), denied: g != gid})
	}
	return out
}

// recordSetattr audits the auditable parts of a setattr that passed the access check,
// before any takes effect (EIO if a record cannot be written: the change is refused). A
// chown to another owner is recorded as denied (Setattr refuses it with EPERM). The
// function returned records, once Setattr knows its result, that the changes failed.
func (g *Group) recordSetattr(ctx context.Context, gr grant, n *node, in *fuse.SetAttrIn) (func(syscall.Errno), syscall.Errno) {
	changes := attrChanges(in, gr.uid, gr.gid)
	for _, c := range changes {
		result := "ok"
		if c.denied {
			result = "denied"
		}
		if e := g.record(ctx, gr.be, c.action, n.path(), result, c.detail); e != 0 {
			return func(syscall.Errno) {}, e
		}
	}
	return func(e syscall.Errno) {
		if e == 0 || e == syscall.EPERM {
			return
		}
		for _, c := range changes {
			if !c.denied {
				_ = g.record(ctx, gr.be, c.action, n.path(), "error", e.Error())
			}
		}
	}, 0
}

// recordSetattrDenied audits the auditable parts of a setattr the access check refused.
func (g *Group) recordSetattrDenied(ctx context.Context, n *node, in *fuse.SetAttrIn) {
	uid, gid, _ := callerOf(ctx)
	for _, c := range attrChanges(in, uid, gid) {
		g.recordRefused(ctx, c.action, n.path(), c.detail)
	}
}

// recordRefused audits a refused change with a detail. The refusal stands whether or not
// the record lands.
func (g *Group) recordRefused(ctx context.Context, action, object, detail string) {
	if be := g.backend(); be != nil {
		_ = g.record(ctx, be, action, object, "denied", detail)
	}
}
