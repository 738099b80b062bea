package meta

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// The benchmarks run on both backends. Badger syncs every commit to disk, so its Create
// figure is mostly the cost of fsync on the machine running it.

func BenchmarkLookup(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := New(be.open(b), Options{})
			root, err := s.ShareRoot(ctx, "s", 0o770)
			if err != nil {
				b.Fatal(err)
			}
			const n = 1000
			for i := range n {
				if _, err := s.Create(ctx, root.Ino, fmt.Sprintf("file%04d", i), KindFile, 0o644, "", newContent(b)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := s.Lookup(ctx, root.Ino, fmt.Sprintf("file%04d", i%n)); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

func BenchmarkGetAttr(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := New(be.open(b), Options{})
			root, err := s.ShareRoot(ctx, "s", 0o770)
			if err != nil {
				b.Fatal(err)
			}
			f, err := s.Create(ctx, root.Ino, "f", KindFile, 0o644, "", newContent(b))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.SetContent(ctx, f.Ino, 1<<30, Content{Segments: segs(64)}, 1); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.GetAttr(ctx, f.Ino); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkCreate(b *testing.B) {
	for _, be := range backends {
		for _, shape := range []string{"onedir", "manydirs"} {
			b.Run(be.name+"/"+shape, func(b *testing.B) {
				s := New(be.open(b), Options{})
				root, err := s.ShareRoot(ctx, "s", 0o770)
				if err != nil {
					b.Fatal(err)
				}
				dirs := []Ino{root.Ino}
				if shape == "manydirs" {
					dirs = nil
					for i := range 16 {
						d, err := s.Create(ctx, root.Ino, fmt.Sprintf("d%d", i), KindDir, 0o755, "", Content{})
						if err != nil {
							b.Fatal(err)
						}
						dirs = append(dirs, d.Ino)
					}
				}
				c := newContent(b)
				var seq, g atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					dir := dirs[int(g.Add(1))%len(dirs)]
					for pb.Next() {
						name := fmt.Sprintf("f%d", seq.Add(1))
						if _, err := s.Create(ctx, dir, name, KindFile, 0o644, "", c); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
