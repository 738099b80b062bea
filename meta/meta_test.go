package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"dsh/blob"
	"dsh/kv"
	"dsh/vault"
)

var ctx = context.Background()

// TestMeta runs the whole suite against every kv backend: what holds on Mem must hold on
// Badger, where the daemon runs it.
func TestMeta(t *testing.T) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"ShareRoot", testShareRoot},
		{"CreateLookup", testCreateLookup},
		{"NameRules", testNameRules},
		{"GetSetAttr", testGetSetAttr},
		{"Unlink", testUnlink},
		{"Rmdir", testRmdir},
		{"Link", testLink},
		{"SetContent", testSetContent},
		{"OrphansAndReap", testOrphansAndReap},
		{"ReapAll", testReapAll},
		{"GarbageList", testGarbageList},
		{"Referenced", testReferenced},
		{"Usage", testUsage},
		{"RenameMove", testRenameMove},
		{"RenameReplace", testRenameReplace},
		{"RenameNoReplace", testRenameNoReplace},
		{"RenameExchange", testRenameExchange},
		{"RenameSubtree", testRenameSubtree},
		{"RenameCrossShare", testRenameCrossShare},
		{"RenameSameInode", testRenameSameInode},
		{"RenameErrors", testRenameErrors},
		{"ReadDir", testReadDir},
		{"ReadDirKeepsReplacedTarget", testReadDirReplacedTarget},
		{"Xattr", testXattr},
		{"XattrLimits", testXattrLimits},
		{"ConcurrentSameName", testConcurrentSameName},
		{"ConcurrentTwoStores", testConcurrentTwoStores},
		{"ConcurrentRenameCycle", testConcurrentRenameCycle},
		{"ConcurrentMixed", testConcurrentMixed},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, newEnv(t, b.open(t)))
				})
			}
		})
	}
}

var backends = []struct {
	name string
	open func(testing.TB) kv.Store
}{
	{"mem", openMem},
	{"badger", openBadger},
}

func openMem(tb testing.TB) kv.Store {
	m := kv.NewMem()
	tb.Cleanup(func() { m.Close() })
	return m
}

func openBadger(tb testing.TB) kv.Store {
	tb.Helper()
	k, err := vault.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := kv.OpenBadger(tb.TempDir(), &k, kv.BadgerOptions{GCInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Error(err)
		}
	})
	return b
}

// clock is a test clock that moves on by a millisecond at every reading, so that "changed"
// timestamps are always strictly later.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time {
	return time.Unix(0, c.ns.Add(int64(time.Millisecond))+1_700_000_000_000_000_000)
}

type env struct {
	t    *testing.T
	db   kv.Store
	s    *Store
	clk  *clock
	root Attr // root of share "s1"
}

func newEnv(t *testing.T, db kv.Store) *env {
	e := &env{t: t, db: db, clk: &clock{}}
	e.s = New(db, Options{Now: e.clk.now})
	e.root = e.ok2(e.s.ShareRoot(ctx, "s1", 0o770))
	return e
}

func (e *env) ok(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) ok2(a Attr, err error) Attr {
	e.t.Helper()
	e.ok(err)
	return a
}

func (e *env) is(err, want error) {
	e.t.Helper()
	if !errors.Is(err, want) {
		e.t.Fatalf("error %v, want %v", err, want)
	}
}

func (e *env) file(parent Ino, name string) Attr {
	e.t.Helper()
	return e.ok2(e.s.Create(ctx, parent, name, KindFile, 0o640, "", newContent(e.t)))
}

func (e *env) dir(parent Ino, name string) Attr {
	e.t.Helper()
	return e.ok2(e.s.Create(ctx, parent, name, KindDir, 0o750, "", Content{}))
}

func (e *env) attr(ino Ino) Attr {
	e.t.Helper()
	return e.ok2(e.s.GetAttr(ctx, ino))
}

func (e *env) lookup(parent Ino, name string) Attr {
	e.t.Helper()
	return e.ok2(e.s.Lookup(ctx, parent, name))
}

func (e *env) gone(parent Ino, name string) {
	e.t.Helper()
	_, err := e.s.Lookup(ctx, parent, name)
	e.is(err, ErrNotFound)
}

// names lists dir in ReadDir order.
func (e *env) names(dir Ino) []string {
	e.t.Helper()
	var out []string
	e.ok(e.s.ReadDir(ctx, dir, 0, func(d Dirent) bool {
		out = append(out, d.Name)
		return true
	}))
	return out
}

// garbage returns the garbage list as a set.
func (e *env) garbage() map[blob.ID]bool {
	e.t.Helper()
	out := map[blob.ID]bool{}
	e.ok(e.s.Garbage(ctx, 1<<30, func(id blob.ID) error {
		out[id] = true
		return nil
	}))
	return out
}

func (e *env) usage() (uint64, uint64) {
	e.t.Helper()
	i, b, err := e.s.Usage(ctx)
	e.ok(err)
	return i, b
}

func newContent(t testing.TB) Content {
	id, err := vault.NewFileID()
	if err != nil {
		t.Fatal(err)
	}
	parent, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	child, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	w, err := vault.WrapKey(&parent, &child, []byte("file:"+id.String()))
	if err != nil {
		t.Fatal(err)
	}
	return Content{FileID: id, Key: w}
}

func segs(n int) []Segment {
	out := make([]Segment, n)
	for i := range out {
		out[i] = Segment{Index: uint64(i), Object: blob.NewID()}
	}
	return out
}

// check verifies, from the raw keys, every invariant that the namespace keeps: both keys of
// each entry agree, link counts match names, directories know their parent, orphans are
// listed, attribute counts match and the usage counters match the inodes.
func (e *env) check() {
	e.t.Helper()
	if err := checkStore(e.db); err != nil {
		e.t.Fatal(err)
	}
}

func checkStore(db kv.Store) error {
	return db.View(ctx, func(tx kv.Txn) error {
		nodes := map[Ino]*inode{}
		err := tx.Scan([]byte(inodePrefix), nil, func(k, v []byte) (bool, error) {
			ino, err := parseInoKey(k)
			if err != nil {
				return false, err
			}
			n, err := decodeInode(ino, v)
			nodes[ino] = n
			return err == nil, err
		})
		if err != nil {
			return err
		}
		names := map[Ino]int{}
		subdirs := map[Ino]uint32{}
		parentOf := map[Ino]Ino{}
		entries := 0
		err = tx.Scan([]byte(direntPrefix), nil, func(k, v []byte) (bool, error) {
			entries++
			dir := Ino(binaryIno(k))
			name := string(k[prefixLen+8:])
			d, err := decodeDirent(v)
			if err != nil {
				return false, err
			}
			p, n := nodes[dir], nodes[d.ino]
			switch {
			case p == nil || p.kind != KindDir:
				return false, fmt.Errorf("entry in %d, not a directory", dir)
			case n == nil:
				return false, fmt.Errorf("entry in %d names missing inode %d", dir, d.ino)
			case n.kind != d.kind:
				return false, fmt.Errorf("entry kind %v, inode %d is %v", d.kind, d.ino, n.kind)
			case d.seq >= p.nextSeq:
				return false, fmt.Errorf("entry seq %d, dir %d next %d", d.seq, dir, p.nextSeq)
			case n.share != p.share:
				return false, fmt.Errorf("inode %d share %q in dir of share %q", d.ino, n.share, p.share)
			}
			ov, err := tx.Get(orderKey(dir, d.seq))
			if err != nil {
				return false, fmt.Errorf("order key of %d/%q: %w", dir, name, err)
			}
			oino, okind, oname, err := decodeOrder(ov)
			if err != nil || oino != d.ino || okind != d.kind || oname != name {
				return false, fmt.Errorf("order key of %d/%q disagrees: %v %v %q %v", dir, name, oino, okind, oname, err)
			}
			names[d.ino]++
			if n.kind == KindDir {
				subdirs[dir]++
				if _, dup := parentOf[d.ino]; dup {
					return false, fmt.Errorf("directory %d has two names", d.ino)
				}
				parentOf[d.ino] = dir
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		orders := 0
		if err := tx.Scan([]byte(orderPrefix), nil, func(_, _ []byte) (bool, error) { orders++; return true, nil }); err != nil {
			return err
		}
		if orders != entries {
			return fmt.Errorf("%d order keys, %d entries", orders, entries)
		}
		orphans := map[Ino]bool{}
		if err := tx.Scan([]byte(orphanPrefix), nil, func(k, _ []byte) (bool, error) {
			ino, err := parseInoKey(k)
			orphans[ino] = true
			return err == nil, err
		}); err != nil {
			return err
		}
		roots := map[Ino]bool{}
		if err := tx.Scan([]byte(rootPrefix), nil, func(k, v []byte) (bool, error) {
			ino, err := decodeIno(v)
			if n := nodes[ino]; err == nil && (n == nil || n.share != string(k[len(rootPrefix):]) || n.parent != 0) {
				err = fmt.Errorf("bad root %d", ino)
			}
			roots[ino] = true
			return err == nil, err
		}); err != nil {
			return err
		}
		xattrs := map[Ino]uint32{}
		if err := tx.Scan([]byte(xattrPrefix), nil, func(k, _ []byte) (bool, error) {
			xattrs[Ino(binaryIno(k))]++
			return true, nil
		}); err != nil {
			return err
		}
		var want usage
		for ino, n := range nodes {
			want.inodes++
			want.bytes += n.size
			if n.xattrs != xattrs[ino] {
				return fmt.Errorf("inode %d counts %d xattrs, has %d", ino, n.xattrs, xattrs[ino])
			}
			if n.kind == KindDir {
				if n.nlink != 2+subdirs[ino] {
					return fmt.Errorf("dir %d nlink %d, %d subdirs", ino, n.nlink, subdirs[ino])
				}
				if roots[ino] {
					continue
				}
				if p, ok := parentOf[ino]; !ok || p != n.parent {
					return fmt.Errorf("dir %d: parent %d, entry in %d (%v)", ino, n.parent, p, ok)
				}
				continue
			}
			if int(n.nlink) != names[ino] {
				return fmt.Errorf("inode %d nlink %d, %d names", ino, n.nlink, names[ino])
			}
			if (n.nlink == 0) != orphans[ino] {
				return fmt.Errorf("inode %d nlink %d, orphan key %v", ino, n.nlink, orphans[ino])
			}
		}
		// Every directory reaches a share root: no loop has been cut off the tree.
		for ino, n := range nodes {
			if n.kind != KindDir {
				continue
			}
			cur := ino
			for steps := 0; !roots[cur]; steps++ {
				p := nodes[cur]
				if p == nil || steps > len(nodes) {
					return fmt.Errorf("directory %d does not reach a share root", ino)
				}
				cur = p.parent
			}
		}
		for ino := range orphans {
			if nodes[ino] == nil {
				return fmt.Errorf("orphan key of missing inode %d", ino)
			}
		}
		for ino := range xattrs {
			if nodes[ino] == nil {
				return fmt.Errorf("xattr of missing inode %d", ino)
			}
		}
		var got usage
		if err := tx.Scan([]byte(usagePrefix), nil, func(_, v []byte) (bool, error) {
			u, err := decodeUsage(v)
			got.inodes += u.inodes
			got.bytes += u.bytes
			return err == nil, err
		}); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("usage counters %+v, inodes give %+v", got, want)
		}
		return nil
	})
}

func binaryIno(k []byte) uint64 {
	var v uint64
	for _, b := range k[prefixLen : prefixLen+8] {
		v = v<<8 | uint64(b)
	}
	return v
}

// TestKeysUnderPrefix checks that the package writes nothing outside "fs/".
func TestKeysUnderPrefix(t *testing.T) {
	e := newEnv(t, openMem(t))
	d := e.dir(e.root.Ino, "d")
	f := e.file(d.Ino, "f")
	e.ok(e.s.SetXattr(ctx, f.Ino, "user.a", []byte("x"), 0))
	e.ok2(e.s.SetContent(ctx, f.Ino, 5, Content{Segments: segs(2)}, 1))
	e.ok2(e.s.Unlink(ctx, d.Ino, "f"))
	e.ok(e.db.View(ctx, func(tx kv.Txn) error {
		return tx.Scan(nil, nil, func(k, _ []byte) (bool, error) {
			if !bytes.HasPrefix(k, []byte(keyPrefix)) {
				t.Errorf("key %q outside %q", k, keyPrefix)
			}
			return true, nil
		})
	}))
}
