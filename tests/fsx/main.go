// Command fsx exercises one file with random operations and checks every byte against an
// in-memory model, after the idea of xfstests' fsx: reads, writes, truncations, reads and
// writes through shared mappings, fallocate (grow, keep size, punch hole, zero range),
// copy_file_range within the file, fsync, and closing and reopening it. It is seeded; on
// the first difference it prints the seed, the operation number and the last operations,
// and exits 1.
//
// Usage: fsx [-seed N] [-ops N] [-max BYTES] FILE
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type fsx struct {
	path  string
	fd    int
	model []byte
	r     *rand.Rand
	max   int64
	log   []string // the last operations, for the report
	seed  uint64
	op    int
	page  int64
}

func main() {
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	ops := flag.Int("ops", 10000, "operations")
	maxSize := flag.Int64("max", 18<<20, "largest file size (crossing dsh's 16 MiB segments)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: fsx [-seed N] [-ops N] [-max BYTES] FILE")
		os.Exit(2)
	}
	x := &fsx{path: flag.Arg(0), r: rand.New(rand.NewPCG(*seed, 0x5eed)), max: *maxSize, seed: *seed, page: int64(os.Getpagesize())}
	fmt.Printf("fsx: seed %d, %d operations on %s\n", *seed, *ops, x.path)
	if err := x.open(unix.O_CREAT | unix.O_TRUNC); err != nil {
		x.fail("open: %v", err)
	}
	counts := map[string]int{}
	spent := map[string]time.Duration{}
	start := time.Now()
	for x.op = 1; x.op <= *ops; x.op++ {
		t0 := time.Now()
		name := x.step()
		counts[name]++
		spent[name] += time.Since(t0)
	}
	x.verifyAll("final")
	unix.Close(x.fd)
	var parts []string
	for _, n := range []string{"read", "write", "truncate", "mapread", "mapwrite", "falloc", "punch", "zero", "copy", "fsync", "reopen", "verify"} {
		parts = append(parts, fmt.Sprintf("%s=%d/%s", n, counts[n], spent[n].Round(time.Millisecond)))
	}
	fmt.Printf("fsx: ok, %d operations in %s, final size %d (%s)\n", *ops, time.Since(start).Round(time.Millisecond), len(x.model), strings.Join(parts, " "))
}

func (x *fsx) open(extra int) error {
	fd, err := unix.Open(x.path, unix.O_RDWR|extra, 0o644)
	if err != nil {
		return err
	}
	x.fd = fd
	return nil
}

func (x *fsx) note(format string, args ...any) {
	s := fmt.Sprintf("%d: ", x.op) + fmt.Sprintf(format, args...)
	x.log = append(x.log, s)
	if len(x.log) > 20 {
		x.log = x.log[1:]
	}
}

func (x *fsx) fail(format string, args ...any) {
	fmt.Printf("fsx: FAILED at operation %d (seed %d): %s\n", x.op, x.seed, fmt.Sprintf(format, args...))
	fmt.Println("fsx: last operations:")
	for _, l := range x.log {
		fmt.Println("  " + l)
	}
	os.Exit(1)
}

func (x *fsx) size() int64 { return int64(len(x.model)) }

// offset picks a place near the interesting spots: 0, chunk and segment boundaries, the end.
func (x *fsx) offset() int64 {
	switch x.r.IntN(6) {
	case 0:
		return x.r.Int64N(x.size() + 1)
	case 1:
		return max(0, x.size()-x.r.Int64N(70000))
	case 2:
		return min(x.max-1, 16<<20-x.r.Int64N(70000)+x.r.Int64N(140000))
	case 3:
		return x.r.Int64N(x.max/64+1) * 65536
	default:
		return x.r.Int64N(min(x.size()+65536, x.max))
	}
}

func (x *fsx) length() int64 {
	if x.r.IntN(4) == 0 {
		return x.r.Int64N(300000) + 1
	}
	return x.r.Int64N(70000) + 1
}

// data returns n bytes of new content: a pattern of the operation number with no zero
// byte, so that a hole or a lost write never reads back as what was written.
func (x *fsx) data(n int64) []byte {
	p := make([]byte, n)
	seed := x.r.Uint64() | 0x0101010101010101
	for i := range p {
		b := byte(seed >> (8 * (i % 8)))
		if b == 0 {
			b = 1
		}
		p[i] = b + byte(i/8)
		if p[i] == 0 {
			p[i] = 0x5a
		}
	}
	return p
}

func (x *fsx) grow(end int64) {
	if end > x.size() {
		x.model = append(x.model, make([]byte, end-x.size())...)
	}
}

func (x *fsx) step() string {
	switch k := x.r.IntN(100); {
	case k < 22:
		x.read()
		return "read"
	case k < 44:
		x.write()
		return "write"
	case k < 50:
		x.truncate()
		return "truncate"
	case k < 58:
		x.mapRead()
		return "mapread"
	case k < 66:
		x.mapWrite()
		return "mapwrite"
	case k < 70:
		x.fallocate(0)
		return "falloc"
	case k < 75:
		x.fallocate(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
		return "punch"
	case k < 79:
		x.fallocate(unix.FALLOC_FL_ZERO_RANGE)
		return "zero"
	case k < 86:
		x.copyRange()
		return "copy"
	case k < 91:
		x.note("fsync")
		if err := unix.Fsync(x.fd); err != nil {
			x.fail("fsync: %v", err)
		}
		return "fsync"
	case k < 93:
		x.note("close and reopen")
		if err := unix.Close(x.fd); err != nil {
			x.fail("close: %v", err)
		}
		if err := x.open(0); err != nil {
			x.fail("reopen: %v", err)
		}
		x.verifyWindow("after reopen")
		return "reopen"
	default:
		// The whole file now and then; a window of it otherwise, so that a long run
		// spends its time on operations rather than on reading 18 MiB again and again.
		if x.op%5000 < 7 {
			x.verifyAll("check")
		} else {
			x.verifyWindow("check")
		}
		return "verify"
	}
}

func (x *fsx) read() {
	off, n := x.offset(), x.length()
	x.note("read %d at %d (size %d)", n, off, x.size())
	buf := make([]byte, n)
	got, err := unix.Pread(x.fd, buf, off)
	if err != nil {
		x.fail("pread %d at %d: %v", n, off, err)
	}
	want := x.model[min(off, x.size()):min(off+n, x.size())]
	x.compare("pread", off, buf[:got], want)
}

func (x *fsx) write() {
	off, n := x.offset(), x.length()
	n = min(n, x.max-off)
	if n <= 0 {
		return
	}
	p := x.data(n)
	x.note("write %d at %d (size %d)", n, off, x.size())
	if w, err := unix.Pwrite(x.fd, p, off); err != nil || int64(w) != n {
		x.fail("pwrite %d at %d: %d, %v", n, off, w, err)
	}
	x.grow(off + n)
	copy(x.model[off:], p)
}

func (x *fsx) truncate() {
	size := x.r.Int64N(x.max)
	if x.r.IntN(3) == 0 {
		size = x.r.Int64N(x.size() + 1)
	}
	x.note("truncate to %d (size %d)", size, x.size())
	if err := unix.Ftruncate(x.fd, size); err != nil {
		x.fail("ftruncate %d: %v", size, err)
	}
	if size < x.size() {
		x.model = x.model[:size]
	} else {
		x.grow(size)
	}
}

// mapRange returns a mapping of [off, off+n) of the file, page aligned, and where off is in it.
func (x *fsx) mapRange(off, n int64, prot int) ([]byte, int64) {
	start := off - off%x.page
	m, err := unix.Mmap(x.fd, start, int(off+n-start), prot, unix.MAP_SHARED)
	if err != nil {
		x.fail("mmap %d at %d: %v", off+n-start, start, err)
	}
	return m, off - start
}

func (x *fsx) mapRead() {
	if x.size() == 0 {
		return
	}
	off := x.r.Int64N(x.size())
	n := min(x.length(), x.size()-off)
	x.note("mapread %d at %d (size %d)", n, off, x.size())
	m, in := x.mapRange(off, n, unix.PROT_READ)
	got := bytes.Clone(m[in : in+n])
	if err := unix.Munmap(m); err != nil {
		x.fail("munmap: %v", err)
	}
	x.compare("mapped read", off, got, x.model[off:off+n])
}

func (x *fsx) mapWrite() {
	off, n := x.offset(), x.length()
	n = min(n, x.max-off)
	if n <= 0 {
		return
	}
	x.note("mapwrite %d at %d (size %d)", n, off, x.size())
	if off+n > x.size() {
		// A mapping cannot grow a file: extend it first, as fsx does.
		if err := unix.Ftruncate(x.fd, off+n); err != nil {
			x.fail("ftruncate before mapwrite: %v", err)
		}
		x.grow(off + n)
	}
	p := x.data(n)
	m, in := x.mapRange(off, n, unix.PROT_READ|unix.PROT_WRITE)
	copy(m[in:], p)
	if x.r.IntN(2) == 0 {
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			x.fail("msync: %v", err)
		}
	}
	if err := unix.Munmap(m); err != nil {
		x.fail("munmap: %v", err)
	}
	copy(x.model[off:], p)
}

func (x *fsx) fallocate(mode uint32) {
	off, n := x.offset(), x.length()
	n = min(n, x.max-off)
	if n <= 0 {
		return
	}
	keep := mode&unix.FALLOC_FL_KEEP_SIZE != 0
	if mode == unix.FALLOC_FL_ZERO_RANGE && x.r.IntN(2) == 0 {
		mode |= unix.FALLOC_FL_KEEP_SIZE
		keep = true
	}
	if mode == 0 && x.r.IntN(2) == 0 {
		mode, keep = unix.FALLOC_FL_KEEP_SIZE, true
	}
	x.note("fallocate mode %#x %d at %d (size %d)", mode, n, off, x.size())
	if err := unix.Fallocate(x.fd, mode, off, n); err != nil {
		x.fail("fallocate mode %#x %d at %d: %v", mode, n, off, err)
	}
	if !keep {
		x.grow(off + n)
	}
	if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
		clear(x.model[min(off, x.size()):min(off+n, x.size())])
	}
}

func (x *fsx) copyRange() {
	if x.size() < 2 {
		return
	}
	src := x.r.Int64N(x.size())
	n := min(x.length(), x.size()-src)
	dst := x.offset()
	n = min(n, x.max-dst)
	// The ranges of a copy within one file must not overlap.
	if n <= 0 || (dst < src+n && src < dst+n) {
		return
	}
	x.note("copy_file_range %d from %d to %d (size %d)", n, src, dst, x.size())
	so, do := src, dst
	for done := int64(0); done < n; {
		c, err := unix.CopyFileRange(x.fd, &so, x.fd, &do, int(n-done), 0)
		if err != nil {
			x.fail("copy_file_range %d from %d to %d: %v", n, src, dst, err)
		}
		if c == 0 {
			x.fail("copy_file_range copied nothing at %d", done)
		}
		done += int64(c)
	}
	data := bytes.Clone(x.model[src : src+n])
	x.grow(dst + n)
	copy(x.model[dst:], data)
}

// verifyWindow checks the size and a random MiB of the file.
func (x *fsx) verifyWindow(what string) {
	var st unix.Stat_t
	if err := unix.Fstat(x.fd, &st); err != nil {
		x.fail("%s: fstat: %v", what, err)
	}
	if st.Size != x.size() {
		x.fail("%s: size %d, model %d", what, st.Size, x.size())
	}
	off := x.r.Int64N(x.size() + 1)
	buf := make([]byte, 1<<20)
	n, err := unix.Pread(x.fd, buf, off)
	if err != nil {
		x.fail("%s: pread at %d: %v", what, off, err)
	}
	x.compare(what, off, buf[:n], x.model[off:min(off+int64(len(buf)), x.size())])
}

func (x *fsx) verifyAll(what string) {
	var st unix.Stat_t
	if err := unix.Fstat(x.fd, &st); err != nil {
		x.fail("%s: fstat: %v", what, err)
	}
	if st.Size != x.size() {
		x.fail("%s: size %d, model %d", what, st.Size, x.size())
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < x.size(); off += int64(len(buf)) {
		n, err := unix.Pread(x.fd, buf, off)
		if err != nil && !errors.Is(err, unix.EINTR) {
			x.fail("%s: pread at %d: %v", what, off, err)
		}
		x.compare(what, off, buf[:n], x.model[off:min(off+int64(len(buf)), x.size())])
	}
}

func (x *fsx) compare(what string, off int64, got, want []byte) {
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		x.fail("%s at %d: %d bytes, want %d", what, off, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			x.fail("%s at %d: first difference at file offset %d: got %#x, want %#x", what, off, off+int64(i), got[i], want[i])
		}
	}
}
