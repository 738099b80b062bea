package acl

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"dsh/kv"
)

// snapshot is the whole stored ACL state in memory, indexed for Decide. A published snapshot
// is never modified: a change builds a new one that shares every map it did not touch, and
// swaps it in with one atomic store, so readers take no lock and never see half a change.
type snapshot struct {
	users    map[string]*User
	byUID    map[int]*User
	projects map[string]*Project
	shares   map[string]*Share
	members  map[string]map[string]Mode // share -> user -> mode
	memberOf map[string]map[string]Mode // user -> share -> mode
}

func emptySnapshot() *snapshot {
	return &snapshot{
		users:    map[string]*User{},
		byUID:    map[int]*User{},
		projects: map[string]*Project{},
		shares:   map[string]*Share{},
		members:  map[string]map[string]Mode{},
		memberOf: map[string]map[string]Mode{},
	}
}

// builder makes the next snapshot from the last one, copying a map the first time it
// changes it (copy on write). A membership change thus copies two outer maps and two small
// inner ones, not every membership in the store.
type builder struct {
	s                                  *snapshot
	ownUsers, ownUIDs, ownProjects     bool
	ownShares, ownMembers, ownMemberOf bool
	ownInner                           map[string]bool // "m/"+share or "u/"+user
}

// newBuilder starts from old, which it never modifies.
func newBuilder(old *snapshot) *builder {
	cp := *old
	return &builder{s: &cp, ownInner: map[string]bool{}}
}

// loadSnapshot reads every acl/ key of st into a new snapshot. Loading goes through the same
// apply as a change, so the cache after a restart is exactly the cache before it.
func loadSnapshot(ctx context.Context, st kv.Store) (*snapshot, error) {
	b := newBuilder(emptySnapshot())
	err := st.View(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte(prefix), nil, func(k, v []byte) (bool, error) {
			return true, b.apply(string(k), v, false)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("acl: load: %w", err)
	}
	return b.s, nil
}

// own returns m itself if this builder already copied it, else a copy it may modify.
func own[K comparable, V any](m map[K]V, owned *bool) map[K]V {
	if *owned {
		return m
	}
	*owned = true
	if m == nil {
		return map[K]V{}
	}
	return maps.Clone(m)
}

// apply replays one write of key onto the snapshot being built. Kinds of keys it does not
// know are ignored (see the layout); a damaged value of a known kind is an error, since a
// cache that silently skipped a record could grant or deny wrongly.
func (b *builder) apply(key string, val []byte, deleted bool) error {
	switch {
	case strings.HasPrefix(key, userPrefix):
		return b.applyUser(key[len(userPrefix):], val, deleted)
	case strings.HasPrefix(key, projectPrefix):
		name := key[len(projectPrefix):]
		b.s.projects = own(b.s.projects, &b.ownProjects)
		if deleted {
			delete(b.s.projects, name)
			return nil
		}
		var p Project
		if err := decode(key, val, &p); err != nil {
			return err
		}
		if p.Name != name {
			return damaged(key, "names project "+show(p.Name))
		}
		b.s.projects[name] = &p
	case strings.HasPrefix(key, sharePrefix):
		name := key[len(sharePrefix):]
		b.s.shares = own(b.s.shares, &b.ownShares)
		if deleted {
			delete(b.s.shares, name)
			return nil
		}
		var r shareRecord
		if err := decode(key, val, &r); err != nil {
			return err
		}
		if r.Name != name {
			return damaged(key, "names share "+show(r.Name))
		}
		b.s.shares[name] = &r.Share
	case strings.HasPrefix(key, memberPrefix):
		b.s.members = own(b.s.members, &b.ownMembers)
		return b.applyPair(b.s.members, "m/", key, key[len(memberPrefix):], val, deleted)
	case strings.HasPrefix(key, userSharePrefix):
		b.s.memberOf = own(b.s.memberOf, &b.ownMemberOf)
		return b.applyPair(b.s.memberOf, "u/", key, key[len(userSharePrefix):], val, deleted)
	}
	// acl/uid/ only keeps uids unique in kv; the snapshot indexes uids from the user records.
	return nil
}

func (b *builder) applyUser(id string, val []byte, deleted bool) error {
	key := userPrefix + id
	b.s.users = own(b.s.users, &b.ownUsers)
	b.s.byUID = own(b.s.byUID, &b.ownUIDs)
	if old := b.s.users[id]; old != nil && b.s.byUID[old.UID] == old {
		delete(b.s.byUID, old.UID)
	}
	if deleted {
		delete(b.s.users, id)
		return nil
	}
	var r userRecord
	if err := decode(key, val, &r); err != nil {
		return err
	}
	if r.ID != id {
		return damaged(key, "names user "+show(r.ID))
	}
	if other := b.s.byUID[r.UID]; other != nil {
		return damaged(key, fmt.Sprintf("uid %d is also held by %s", r.UID, other.ID))
	}
	u := r.User
	b.s.users[id] = &u
	b.s.byUID[u.UID] = &u
	return nil
}

// applyPair sets or deletes outer[a][b] for a key "<a>/<b>" of the member index or its
// reverse, copying the inner map once per builder.
func (b *builder) applyPair(outer map[string]map[string]Mode, tag, key, rest string, val []byte, deleted bool) error {
	x, y, ok := strings.Cut(rest, "/")
	if !ok || !validID(x) || !validID(y) {
		return damaged(key, "malformed key")
	}
	inner := outer[x]
	if !b.ownInner[tag+x] {
		inner = maps.Clone(inner)
		if inner == nil {
			inner = map[string]Mode{}
		}
		b.ownInner[tag+x] = true
		outer[x] = inner
	}
	if deleted {
		delete(inner, y)
		if len(inner) == 0 {
			delete(outer, x)
			delete(b.ownInner, tag+x) // a later write recreates it
		}
		return nil
	}
	m := Mode(val)
	if !m.valid() {
		return damaged(key, "holds no valid mode")
	}
	inner[y] = m
	return nil
}

func decode(key string, val []byte, v any) error {
	if err := json.Unmarshal(val, v); err != nil {
		return fmt.Errorf("acl: stored record %s is damaged: %w", key, err)
	}
	return nil
}

func damaged(key, why string) error {
	return fmt.Errorf("acl: stored record %s is damaged: %s", key, why)
}

// snapState answers the checks of listings from a snapshot.
type snapState struct{ s *snapshot }

func (s snapState) user(id string) (*User, error)         { return s.s.users[id], nil }
func (s snapState) userByUID(uid int) (*User, error)      { return s.s.byUID[uid], nil }
func (s snapState) project(name string) (*Project, error) { return s.s.projects[name], nil }
func (s snapState) share(name string) (*Share, error)     { return s.s.shares[name], nil }
func (s snapState) mode(share, user string) (Mode, error) { return s.s.members[share][user], nil }
