package meta

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testReadDir(t *testing.T, e *env) {
	root := e.root.Ino
	d := e.dir(root, "d")
	if got := e.names(d.Ino); len(got) != 0 {
		t.Fatalf("empty dir lists %v", got)
	}
	var want []Dirent
	for i := range 300 { // several batches
		name := fmt.Sprintf("n%03d", 299-i) // creation order differs from name order
		var a Attr
		if i%10 == 0 {
			a = e.dir(d.Ino, name)
		} else {
			a = e.file(d.Ino, name)
		}
		want = append(want, Dirent{Name: name, Ino: a.Ino, Kind: a.Kind})
	}
	var all []Dirent
	e.ok(e.s.ReadDir(ctx, d.Ino, 0, func(de Dirent) bool {
		all = append(all, de)
		return true
	}))
	if len(all) != len(want) {
		t.Fatalf("%d entries, want %d", len(all), len(want))
	}
	for i := range all {
		if all[i].Name != want[i].Name || all[i].Ino != want[i].Ino || all[i].Kind != want[i].Kind {
			t.Fatalf("entry %d: %+v, want %+v", i, all[i], want[i])
		}
		if i > 0 && all[i].Off <= all[i-1].Off {
			t.Fatalf("offsets not increasing at %d", i)
		}
	}
	// Continue after any entry; stop when fn says so.
	for _, k := range []int{0, 1, 127, 128, 200, 298, 299} {
		var rest []Dirent
		e.ok(e.s.ReadDir(ctx, d.Ino, all[k].Off, func(de Dirent) bool {
			rest = append(rest, de)
			return true
		}))
		if !reflect.DeepEqual(rest, all[k+1:]) && !(len(rest) == 0 && k == len(all)-1) {
			t.Fatalf("after %d: %d entries", k, len(rest))
		}
	}
	calls := 0
	e.ok(e.s.ReadDir(ctx, d.Ino, 0, func(Dirent) bool { calls++; return calls < 3 }))
	if calls != 3 {
		t.Fatalf("fn called %d times after asking to stop", calls)
	}
	e.ok(e.s.ReadDir(ctx, d.Ino, ^uint64(0), func(Dirent) bool { t.Fatal("entry past the end"); return false }))
	// Removed entries vanish; new ones come last.
	e.ok2(e.s.Unlink(ctx, d.Ino, "n298"))
	e.file(d.Ino, "new")
	got := e.names(d.Ino)
	if len(got) != 300 || got[0] != "n299" || got[1] != "n297" || got[299] != "new" {
		t.Fatalf("after changes: %v...", got[:3])
	}
	// fn may call the store.
	e.ok(e.s.ReadDir(ctx, d.Ino, 0, func(de Dirent) bool {
		_, err := e.s.GetAttr(ctx, de.Ino)
		e.ok(err)
		return true
	}))
	f := e.file(root, "f")
	e.is(e.s.ReadDir(ctx, f.Ino, 0, func(Dirent) bool { return true }), ErrNotDir)
	e.is(e.s.ReadDir(ctx, 999999, 0, func(Dirent) bool { return true }), ErrNotFound)
}

func testReadDirReplacedTarget(t *testing.T, e *env) {
	root := e.root.Ino
	d := e.dir(root, "d")
	e.file(d.Ino, "a")
	e.file(d.Ino, "b")
	e.file(d.Ino, "c")
	var first Dirent
	e.ok(e.s.ReadDir(ctx, d.Ino, 0, func(de Dirent) bool { first = de; return false }))
	// "b" exists throughout: replacing it keeps its place, so a listing that has passed it
	// does not see it again, and one that has not still sees it once.
	_, err := e.s.Rename(ctx, d.Ino, "a", d.Ino, "b", 0)
	e.ok(err)
	var rest []string
	e.ok(e.s.ReadDir(ctx, d.Ino, first.Off, func(de Dirent) bool { rest = append(rest, de.Name); return true }))
	if !reflect.DeepEqual(rest, []string{"b", "c"}) {
		t.Fatalf("after rename over b: %v", rest)
	}
	_, err = e.s.Rename(ctx, d.Ino, "c", d.Ino, "b", RenameExchange)
	e.ok(err)
	if got := e.names(d.Ino); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Fatalf("after exchange: %v", got)
	}
}

// bulkCreate makes empty files named names in dir, many per transaction: with one fsync per
// Create, filling a big directory on Badger would take most of the test's time.
func (e *env) bulkCreate(dir Ino, names []string) {
	e.t.Helper()
	const perTxn = 500
	for len(names) > 0 {
		batch := names[:min(perTxn, len(names))]
		names = names[len(batch):]
		inos := make([]Ino, len(batch))
		for i := range inos {
			var err error
			inos[i], err = e.s.allocIno(ctx)
			e.ok(err)
		}
		e.ok(e.s.update(ctx, []Ino{dir}, dir, func(o *op) error {
			p, err := o.dir(dir)
			if err != nil {
				return err
			}
			for i, name := range batch {
				n := &inode{ino: inos[i], kind: KindFile, mode: 0o644, nlink: 1, share: p.share}
				o.create(n)
				if err := o.addEntry(p, name, n); err != nil {
					return err
				}
			}
			o.touch(p)
			return nil
		}))
	}
}

// TestReadDirConcurrent lists a directory of 20,000 entries in pages of 100 while other
// goroutines remove and add entries: every entry present throughout is seen exactly once,
// and no entry is ever seen twice.
func TestReadDirConcurrent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open(t))
			const total, page = 20000, 100
			d := e.dir(e.root.Ino, "big")
			began := time.Now()
			stable := map[string]bool{}
			var volatile []string
			names := make([]string, total)
			for i := range names {
				names[i] = fmt.Sprintf("e%05d", i)
			}
			e.bulkCreate(d.Ino, names)
			for i, name := range names {
				if i%8 == 0 {
					volatile = append(volatile, name)
				} else {
					stable[name] = true
				}
			}
			t.Logf("%d entries created in %v", total, time.Since(began))
			// Removals in random order hit entries both behind and ahead of the listing.
			rand.Shuffle(len(volatile), func(i, j int) { volatile[i], volatile[j] = volatile[j], volatile[i] })
			var (
				wg             sync.WaitGroup
				stop           atomic.Bool
				removed, added atomic.Int64
			)
			// One remover and one adder, each racing with the listing.
			wg.Go(func() {
				for _, name := range volatile {
					if stop.Load() {
						return
					}
					if _, err := e.s.Unlink(ctx, d.Ino, name); err != nil {
						t.Error(err)
						return
					}
					removed.Add(1)
				}
			})
			wg.Go(func() {
				for i := 0; i < total/8 && !stop.Load(); i++ {
					if _, err := e.s.Create(ctx, d.Ino, fmt.Sprintf("new%06d", i), KindFile, 0o644, "", Content{}); err != nil {
						t.Error(err)
						return
					}
					added.Add(1)
				}
			})
			// The listing waits after each page until the others have made some changes, so
			// that changes really fall between its pages, however fast either side is.
			const churn = 10
			pace := func(pages int) {
				for removed.Load() < int64(min(pages*churn, len(volatile))) || added.Load() < int64(min(pages*churn, total/8)) {
					if t.Failed() {
						return
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
			seen := map[string]int{}
			var off uint64
			for pages := 0; ; pages++ {
				n := 0
				err := e.s.ReadDir(ctx, d.Ino, off, func(de Dirent) bool {
					seen[de.Name]++
					if seen[de.Name] > 1 {
						t.Errorf("%s seen twice", de.Name)
					}
					off = de.Off
					n++
					return n < page
				})
				e.ok(err)
				if n < page {
					break
				}
				pace(pages + 1)
				if pages > 10*total/page {
					t.Fatal("listing does not end")
				}
			}
			stop.Store(true)
			wg.Wait()
			t.Logf("listed %d names while %d entries were removed and %d added", len(seen), removed.Load(), added.Load())
			for name := range stable {
				if seen[name] != 1 {
					t.Fatalf("stable entry %s seen %d times", name, seen[name])
				}
			}
			e.check()
		})
	}
}
