// Command dshbench is `make bench`: the same workloads on the plain disk, on go-fuse's
// loopback (the ceiling of a Go FUSE daemon here), on gocryptfs and on a dsh share, the
// targets interleaved, each figure the median of several runs, printed as one table with
// the ratios dsh/ceiling and dsh/gocryptfs, and written as Markdown.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pquerna/otp/totp"
)

// config is what the flags set.
type config struct {
	quick                bool
	runs                 int
	writeSize, randSize  int64
	randReads, files     int
	randWrites, syncs    int
	opens                int
	uploadSize           int64
	uid                  int
	out, work, bin, ceil string
	keep                 bool
	// smb adds the rows through Samba: smbSize bytes written and read, smbFiles files put.
	smb, smbOnly bool
	smbSize      int64
	smbFiles     int
}

// row is one line of the table. higher says whether a bigger figure is better.
type row struct {
	name, unit string
	higher     bool
	vals       map[string][]float64
}

var targets = []string{"plain", "fuse-ceiling", "gocryptfs", "dsh"}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := worker(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	flag.BoolVar(&c.quick, "quick", os.Getenv("BENCH_QUICK") == "1", "tiny sizes: checks the harness, measures nothing")
	flag.IntVar(&c.runs, "runs", 3, "runs per figure (the median is shown)")
	flag.Int64Var(&c.writeSize, "write-size", 2<<30, "bytes of the sequential write and read")
	flag.Int64Var(&c.randSize, "rand-size", 512<<20, "size of the file for random reads")
	flag.IntVar(&c.randReads, "rand-reads", 20000, "random 4 KiB reads per run")
	flag.IntVar(&c.randWrites, "rand-writes", 1000, "random 4 KiB writes, each fsync'd, per run")
	flag.IntVar(&c.syncs, "sync-files", 2000, "files created, written 4 KiB, fsync'd and closed, per run")
	flag.IntVar(&c.files, "files", 10000, "files created, then stat'ed")
	flag.IntVar(&c.opens, "opens", 100000, "open+close of one file")
	flag.Int64Var(&c.uploadSize, "upload-size", 1<<30, "bytes of the upload row")
	flag.IntVar(&c.uid, "uid", 2900, "the uid that runs the workloads (the dsh member)")
	flag.StringVar(&c.out, "out", "bench/out/results.md", "where to write the Markdown table")
	flag.StringVar(&c.work, "work", "/var/tmp", "folder on the disk under test")
	flag.StringVar(&c.bin, "dsh", "bin/dsh", "the dsh binary")
	flag.StringVar(&c.ceil, "ceiling", "bin/ceiling", "the loopback (ceiling) binary")
	flag.BoolVar(&c.keep, "keep", false, "keep the work folder")
	flag.BoolVar(&c.smb, "smb", true, "also measure through Samba (smbd and smbclient)")
	flag.BoolVar(&c.smbOnly, "smb-only", false, "measure only the SMB rows")
	flag.Int64Var(&c.smbSize, "smb-size", 1<<30, "bytes of the SMB sequential write and read")
	flag.IntVar(&c.smbFiles, "smb-files", 2000, "small files put through SMB")
	flag.Parse()
	if c.quick {
		c.runs, c.writeSize, c.randSize, c.randReads, c.files, c.opens, c.uploadSize = 1, 8<<20, 4<<20, 200, 100, 500, 8<<20
		c.smbSize, c.smbFiles = 8<<20, 50
		c.randWrites, c.syncs = 50, 50
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "dshbench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: it mounts filesystems and acts as a test uid")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(c.work, "dsh-bench-")
	if err != nil {
		return err
	}
	os.Chmod(work, 0o755)
	if !c.keep {
		defer os.RemoveAll(work)
	}
	// The binaries run as the test uid too: copy them where it can reach them.
	for _, b := range []*string{&c.bin, &c.ceil, &self} {
		dst := filepath.Join(work, filepath.Base(*b))
		if err := copyFile(*b, dst); err != nil {
			return err
		}
		*b = dst
	}
	fmt.Printf("machine: %s, %d cores, kernel %s\n", cpuModel(), runtime.NumCPU(), kernel())
	t := &testbed{c: c, work: work, self: self}
	defer t.teardown()
	if err := t.setup(); err != nil {
		return err
	}
	rows := []*row{
		{name: "1. sequential write (1 MiB writes, fsync)", unit: "MB/s", higher: true},
		{name: "2. sequential read, cold", unit: "MB/s", higher: true},
		{name: "3. random 4 KiB reads", unit: "IOPS", higher: true},
		{name: "4. create+write 4 KiB+close", unit: "files/s", higher: true},
		{name: "5a. stat each file", unit: "ops/s", higher: true},
		{name: "5b. ls -l of the folder", unit: "s", higher: false},
		{name: "6. open+close", unit: "µs/open", higher: false},
		{name: "7. upload (dsh upload vs cp)", unit: "MB/s", higher: true},
		{name: "8a. dsh peak RSS during 1", unit: "MiB", higher: false},
		{name: "8b. dsh peak RSS during 7", unit: "MiB", higher: false},
		{name: "9a. random 4 KiB write+fsync, 512 MiB file", unit: "IOPS", higher: true},
		{name: "9b. bytes written to disk per write in 9a", unit: "KiB", higher: false},
		{name: "10. create+write 4 KiB+fsync+close", unit: "files/s", higher: true},
	}
	for _, r := range rows {
		r.vals = map[string][]float64{}
	}
	add := func(i int, target string, v float64) { rows[i].vals[target] = append(rows[i].vals[target], v) }
	runs := c.runs
	if c.smbOnly {
		runs, c.smb = 0, true
	}
	for run := 0; run < runs; run++ {
		for _, tg := range targets {
			dir := t.dirs[tg]
			fmt.Printf("run %d/%d: %s\n", run+1, c.runs, tg)
			if tg == "dsh" {
				t.resetPeak()
			}
			v, err := t.work1(dir, "seqwrite", c.writeSize)
			if err != nil {
				return fmt.Errorf("%s: %w", tg, err)
			}
			add(0, tg, v)
			if tg == "dsh" {
				add(8, tg, t.peakMiB())
			}
			t.dropCaches()
			if v, err = t.work1(dir, "seqread", 0); err != nil {
				return fmt.Errorf("%s: %w", tg, err)
			}
			add(1, tg, v)
			if run == 0 {
				if _, err := t.work1(dir, "prepare", c.randSize); err != nil {
					return fmt.Errorf("%s: %w", tg, err)
				}
			}
			t.dropCaches()
			for i, w := range []struct {
				name string
				n    int64
			}{{"randread", int64(c.randReads)}, {"create", int64(c.files)}, {"stat", int64(c.files)}, {"ls", 0}, {"open", int64(c.opens)}} {
				if v, err = t.work1(dir, w.name, w.n); err != nil {
					return fmt.Errorf("%s %s: %w", tg, w.name, err)
				}
				add(2+i, tg, v)
			}
			// Small durable writes: random 4 KiB write+fsync in the 512 MiB file, with the
			// bytes the target's process made the kernel write (the daemon's; the worker's
			// own on the plain disk), and files made durable one by one.
			before := t.writeBytes(tg)
			out, err := t.workFigs(dir, "randwrite", int64(c.randWrites))
			if err != nil {
				return fmt.Errorf("%s randwrite: %w", tg, err)
			}
			add(10, tg, out[0])
			written := t.writeBytes(tg) - before
			if tg == "plain" {
				written = out[1]
			}
			add(11, tg, written/float64(c.randWrites)/1024)
			if v, err = t.work1(dir, "createsync", int64(c.syncs)); err != nil {
				return fmt.Errorf("%s createsync: %w", tg, err)
			}
			add(12, tg, v)
			os.Remove(filepath.Join(dir, "seq.bin"))
		}
		// Upload: dsh upload into Arrivals against cp onto the plain disk.
		v, err := t.cpPlain()
		if err != nil {
			return err
		}
		add(7, "plain", v)
		t.resetPeak()
		if v, err = t.upload(); err != nil {
			return err
		}
		add(7, "dsh", v)
		add(9, "dsh", t.peakMiB())
	}
	var smbRows []*row
	if c.smb {
		if smbRows, err = t.smbRows(); err != nil {
			return err
		}
	}
	return report(c, rows, smbRows)
}

// smbRows measures the SMB rows, Samba over a plain folder and over dsh interleaved.
func (t *testbed) smbRows() ([]*row, error) {
	b, err := t.setupSMB()
	if b != nil {
		defer b.teardown()
	}
	if err != nil {
		return nil, fmt.Errorf("smb: %w", err)
	}
	rows := []*row{
		{name: "S1. SMB sequential write (smbclient put)", unit: "MB/s", higher: true},
		{name: "S2. SMB sequential read, cold (smbclient get)", unit: "MB/s", higher: true},
		{name: "S3. SMB create+close of 4 KiB files (smbclient mput)", unit: "files/s", higher: true},
	}
	for _, r := range rows {
		r.vals = map[string][]float64{}
	}
	for run := 0; run < t.c.runs; run++ {
		for _, tg := range smbTargets {
			fmt.Printf("run %d/%d: %s\n", run+1, t.c.runs, tg)
			w, r, f, err := b.run(tg, run)
			if err != nil {
				return nil, err
			}
			for i, v := range []float64{w, r, f} {
				rows[i].vals[tg] = append(rows[i].vals[tg], v)
			}
		}
	}
	return rows, nil
}

// work1 runs one workload as the test uid and returns its figure.
func (t *testbed) work1(dir, w string, n int64) (float64, error) {
	figs, err := t.workFigs(dir, w, n)
	if err != nil {
		return 0, err
	}
	return figs[0], nil
}

// workFigs runs one workload as the test uid and returns its figures.
func (t *testbed) workFigs(dir, w string, n int64) ([]float64, error) {
	cmd := exec.Command(t.self, "worker", w, dir, strconv.FormatInt(n, 10))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(t.c.uid), Gid: uint32(t.c.uid)}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", w, err, strings.TrimSpace(errb.String()))
	}
	var figs []float64
	for _, f := range strings.Fields(out.String()) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: figure %q: %w", w, f, err)
		}
		figs = append(figs, v)
	}
	if len(figs) == 0 {
		return nil, fmt.Errorf("%s: no figure", w)
	}
	return figs, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// ratio is dsh's speed relative to other: above 1 means dsh is faster (or smaller).
func ratio(r *row, other string) string {
	d, o := median(r.vals["dsh"]), median(r.vals[other])
	if d == 0 || o == 0 {
		return "–"
	}
	if r.higher {
		return fmt.Sprintf("%.2f", d/o)
	}
	return fmt.Sprintf("%.2f", o/d)
}

func report(c config, rows, smbRows []*row) error {
	var b strings.Builder
	if c.smbOnly {
		fmt.Fprintf(&b, "Machine: %s, %d cores, kernel %s.\n\n%s", cpuModel(), runtime.NumCPU(), kernel(), smbReport(c, smbRows))
		fmt.Print("\n" + b.String())
		return os.WriteFile(c.out, []byte(b.String()), 0o644)
	}
	fmt.Fprintf(&b, "Machine: %s, %d cores, kernel %s. Medians of %d runs, targets interleaved. Ratios are dsh's speed relative to the other target (above 1: dsh faster; for time and memory rows, other/dsh).\n\n", cpuModel(), runtime.NumCPU(), kernel(), c.runs)
	fmt.Fprintf(&b, "| workload | unit | plain | fuse-ceiling | gocryptfs | dsh | dsh/ceiling | dsh/gocryptfs |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |", r.name, r.unit)
		for _, tg := range targets {
			if len(r.vals[tg]) == 0 {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&b, " %s |", fmtNum(median(r.vals[tg])))
		}
		fmt.Fprintf(&b, " %s | %s |\n", ratio(r, "fuse-ceiling"), ratio(r, "gocryptfs"))
	}
	// Each run of dsh, in order: the file of rows 3, 6 and 9 gathers patches from row 9a's
	// writes, so later runs read and open a file that earlier runs wrote into at random.
	if c.runs > 1 {
		b.WriteString("\ndsh, each run in order:")
		for _, r := range rows {
			if len(r.vals["dsh"]) == 0 {
				continue
			}
			var vs []string
			for _, v := range r.vals["dsh"] {
				vs = append(vs, fmtNum(v))
			}
			fmt.Fprintf(&b, " %s: %s;", strings.SplitN(r.name, ".", 2)[0], strings.Join(vs, ", "))
		}
		b.WriteString("\n")
	}
	if len(smbRows) > 0 {
		b.WriteString("\n" + smbReport(c, smbRows))
	}
	fmt.Print("\n" + b.String())
	if err := os.MkdirAll(filepath.Dir(c.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.out, []byte(b.String()), 0o644)
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "unknown"
	}
	var s []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

var secretRe = regexp.MustCompile(`secret=([A-Z2-7]+)`)

// code returns the current TOTP code of secret, for logging the member in.
func code(secret string) (string, error) { return totp.GenerateCode(secret, time.Now()) }
