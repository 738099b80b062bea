package acl

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"dsh/kv"
	"dsh/vault"
)

func testKeys(t *testing.T, e *env) {
	e.world()
	get := func(f func() (vault.Key, error)) vault.Key {
		t.Helper()
		k, err := f()
		e.ok(err)
		if k.IsZero() {
			t.Fatal("zero key")
		}
		return k
	}
	share := func(name string) func() (vault.Key, error) {
		return func() (vault.Key, error) { return e.s.ShareKey(ctx, name) }
	}
	arrivals := func(user string) func() (vault.Key, error) {
		return func() (vault.Key, error) { return e.s.ArrivalsKey(ctx, user) }
	}
	s1, s1again, s2 := get(share("s1")), get(share("s1")), get(share("s2"))
	a1, a1again, a2 := get(arrivals("mem1")), get(arrivals("mem1")), get(arrivals("mem2"))
	if !s1.Equal(&s1again) || !a1.Equal(&a1again) {
		t.Fatal("a key unwraps differently on a second read")
	}
	for _, pair := range [][2]vault.Key{{s1, s2}, {a1, a2}, {s1, a1}, {s2, a2}} {
		if pair[0].Equal(&pair[1]) {
			t.Fatal("two shares or users have the same key")
		}
	}
	// Stored wrapped with the documented context, never in the clear.
	raw := e.dumpKV()
	for _, k := range []vault.Key{s1, s2, a1, a2} {
		for key, v := range raw {
			if bytes.Contains([]byte(v), k[:]) {
				t.Fatalf("a clear key is stored under %s", key)
			}
		}
	}
	var rec shareRecord
	e.ok(json.Unmarshal([]byte(raw["acl/share/s1"]), &rec))
	w, err := vault.UnmarshalWrappedKey(rec.Key)
	e.ok(err)
	direct, err := vault.UnwrapKey(&e.wrap.parent, w, []byte("share:s1"))
	e.ok(err)
	if !direct.Equal(&s1) {
		t.Fatal("the share key is not wrapped under context share:s1")
	}

	_, err = e.s.ShareKey(ctx, "zz")
	wantErr(t, err, ErrNotFound)
	_, err = e.s.ArrivalsKey(ctx, "nobody")
	wantErr(t, err, ErrNotFound)

	// A wrapped key moved into another record does not unwrap there.
	moveField(t, e.kv, "acl/share/s1", "acl/share/s2", "key")
	_, err = e.s.ShareKey(ctx, "s2")
	if !errors.Is(err, vault.ErrIntegrity) {
		t.Fatalf("s1's key in s2's record: %v, want vault.ErrIntegrity", err)
	}
	moveField(t, e.kv, "acl/user/mem1", "acl/user/mem2", "arrivals_key")
	_, err = e.s.ArrivalsKey(ctx, "mem2")
	if !errors.Is(err, vault.ErrIntegrity) {
		t.Fatalf("mem1's key in mem2's record: %v, want vault.ErrIntegrity", err)
	}
	// The moved-from records still open.
	get(share("s1"))
	get(arrivals("mem1"))
}

// moveField copies one JSON field of the record under from into the record under to.
func moveField(t *testing.T, st kv.Store, from, to, field string) {
	t.Helper()
	err := st.Update(ctx, func(tx kv.Txn) error {
		var src, dst map[string]any
		for key, m := range map[string]*map[string]any{from: &src, to: &dst} {
			b, err := tx.Get([]byte(key))
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, m); err != nil {
				return err
			}
		}
		if reflect.DeepEqual(src[field], dst[field]) {
			t.Fatal("the two records already hold the same wrapped key")
		}
		dst[field] = src[field]
		b, err := json.Marshal(dst)
		if err != nil {
			return err
		}
		return tx.Set([]byte(to), b)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReopenBadger closes the Badger store and opens it again, as a daemon restart does:
// a new Store over it sees the same users, roles, memberships, decisions and keys.
func TestReopenBadger(t *testing.T) {
	dir := t.TempDir()
	dbKey, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	db := openBadgerAt(t, dir, &dbKey)
	e := newEnv(t, db, Options{})
	e.world()
	e.ok(e.s.AddMember(ctx, e.as("iao2"), "s2", "ro1", ReadOnly))
	type view struct {
		Users   []User
		Proj    []Project
		Shares  []ShareAccess
		Members []Member
		Of      []ShareAccess
		Key     vault.Key
	}
	look := func(s *Store) view {
		var v view
		var err error
		v.Users, err = s.ListUsers(ctx, operator)
		e.ok(err)
		v.Proj, err = s.ListProjects(ctx, operator)
		e.ok(err)
		v.Shares, err = s.ListShares(ctx, operator)
		e.ok(err)
		v.Members, err = s.ShareMembers(ctx, operator, "s1")
		e.ok(err)
		v.Of = s.SharesOf(worldUIDs["ro1"])
		v.Key, err = s.ShareKey(ctx, "s2")
		e.ok(err)
		return v
	}
	before := look(e.s)
	snapBefore := e.s.snap.Load()
	e.s.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	e.kv = openBadgerAt(t, dir, &dbKey)
	s2 := e.reload()
	if after := look(s2); !reflect.DeepEqual(before, after) {
		t.Fatalf("after reopening:\n%+v\nbefore:\n%+v", after, before)
	}
	if !reflect.DeepEqual(snapBefore, s2.snap.Load()) {
		t.Fatal("the cache after reopening differs from the cache before")
	}
	if d := s2.Decide(worldUIDs["ro1"], Group, "s2", Write); d.Reason != ReasonReadOnly {
		t.Fatalf("decision after reopening: %+v", d)
	}
	if d := s2.Decide(worldUIDs["dis1"], Group, "s1", Read); d.Reason != ReasonDisabled {
		t.Fatalf("decision after reopening: %+v", d)
	}
}
