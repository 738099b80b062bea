package acl

import (
	"slices"
	"strings"
)

// Tree is one of the two drives a uid reaches through the filesystem.
type Tree uint8

// The trees. The zero Tree is invalid, so a forgotten field denies.
const (
	Group    Tree = iota + 1 // S:, project shares; the name is a share
	Arrivals                 // Q:, inbound files; the name is the owner's user ID
)

// String returns the tree's metric label.
func (t Tree) String() string {
	switch t {
	case Group:
		return "group"
	case Arrivals:
		return "arrivals"
	}
	return "invalid"
}

// Op is what a uid wants to do in a share or an Arrivals folder.
type Op uint8

// The operations. The zero Op is invalid, so a forgotten field denies.
const (
	// Read covers open for reading, lookup and stat.
	Read Op = iota + 1
	// Write covers every change of content or namespace: create, write, truncate, rename,
	// mkdir, chmod, setxattr.
	Write
	// List covers reading a directory.
	List
	// Delete covers unlink and rmdir. It is a change like Write in a share, but in
	// Arrivals it is the one change the owner may make.
	Delete
)

// String returns the operation's metric label.
func (o Op) String() string {
	switch o {
	case Read:
		return "read"
	case Write:
		return "write"
	case List:
		return "list"
	case Delete:
		return "delete"
	}
	return "invalid"
}

// Reason says why a decision went the way it did. The set is fixed (it is a metric label);
// see Reasons.
type Reason string

// The reasons.
const (
	ReasonOK          Reason = "ok"
	ReasonNoAccount   Reason = "no_account"   // the uid has no DSH account (root included)
	ReasonDisabled    Reason = "disabled"     // the account is disabled
	ReasonNotMember   Reason = "not_member"   // not a member of the share, or no such share
	ReasonReadOnly    Reason = "read_only"    // a read-only member asked to change something
	ReasonNotOwner    Reason = "not_owner"    // another user's Arrivals folder
	ReasonInboundOnly Reason = "inbound_only" // a write into Arrivals from inside
	ReasonInvalid     Reason = "invalid"      // an unknown tree or operation (a caller's bug)
)

// Reasons returns every Reason, for registering metric label values up front.
func Reasons() []Reason {
	return []Reason{ReasonOK, ReasonNoAccount, ReasonDisabled, ReasonNotMember,
		ReasonReadOnly, ReasonNotOwner, ReasonInboundOnly, ReasonInvalid}
}

// Decision is the answer to one access question.
type Decision struct {
	Allow  bool
	Reason Reason
	// Mode is the caller's mode in a Group share ("" when not a member, and in Arrivals).
	Mode Mode
}

// Decide says whether uid may do op on name in tree, from the current stored state. It is
// the one access decision of dsh; the filesystem asks it on every open, lookup and listing.
//
// An account that is missing or disabled is denied everything. In Group, a read-write
// member may do everything, a read-only member may read and list, and everyone else is
// denied "not_member", whether or not the share exists: an IAO or IAA is not a member until
// added. In Arrivals only the owner may read, list and delete; nobody writes into it from
// inside ("inbound_only").
//
// Decide takes no lock and does not allocate: it reads the snapshot that every change
// through this Store has replaced before returning. It does not audit; the filesystem
// records its decisions, with the context (path, open flags) that Decide does not see.
func (s *Store) Decide(uid int, tree Tree, name string, op Op) Decision {
	if op < Read || op > Delete || (tree != Group && tree != Arrivals) {
		return Decision{Reason: ReasonInvalid}
	}
	snap := s.snap.Load()
	u := snap.byUID[uid]
	switch {
	case u == nil:
		return Decision{Reason: ReasonNoAccount}
	case u.Status != StatusActive:
		return Decision{Reason: ReasonDisabled}
	}
	if tree == Arrivals {
		switch {
		case name != u.ID:
			return Decision{Reason: ReasonNotOwner}
		case op == Write:
			return Decision{Reason: ReasonInboundOnly}
		}
		return Decision{Allow: true, Reason: ReasonOK}
	}
	mode := snap.members[name][u.ID]
	switch {
	case mode == "":
		return Decision{Reason: ReasonNotMember}
	case mode != ReadWrite && (op == Write || op == Delete):
		return Decision{Reason: ReasonReadOnly, Mode: mode}
	}
	return Decision{Allow: true, Reason: ReasonOK, Mode: mode}
}

// SharesOf returns the shares uid may see on the S drive, sorted by name: those it is a
// member of, with its mode. Managing a share's project does not make it visible; a missing
// or disabled account sees none.
func (s *Store) SharesOf(uid int) []ShareAccess {
	snap := s.snap.Load()
	u := snap.byUID[uid]
	if u == nil || u.Status != StatusActive {
		return nil
	}
	mine := snap.memberOf[u.ID]
	out := make([]ShareAccess, 0, len(mine))
	for name, mode := range mine {
		acc := ShareAccess{Share: name, Mode: mode}
		if sh := snap.shares[name]; sh != nil {
			acc.Project = sh.Project
		}
		out = append(out, acc)
	}
	slices.SortFunc(out, func(x, y ShareAccess) int { return strings.Compare(x.Share, y.Share) })
	return out
}
