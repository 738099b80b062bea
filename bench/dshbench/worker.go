package main

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// worker runs one workload in dir as the calling uid and prints its figure. The parent
// runs it under the test uid, so every target is used the same way, by a non-root user.
func worker(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("worker WORKLOAD DIR [N]")
	}
	w, dir := args[0], args[1]
	n := int64(0)
	if len(args) > 2 {
		v, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return err
		}
		n = v
	}
	var fig float64
	var err error
	switch w {
	case "seqwrite":
		fig, err = seqWrite(filepath.Join(dir, "seq.bin"), n)
	case "prepare":
		_, err = seqWrite(filepath.Join(dir, "rand.bin"), n)
	case "seqread":
		fig, err = seqRead(filepath.Join(dir, "seq.bin"))
	case "randread":
		fig, err = randRead(filepath.Join(dir, "rand.bin"), int(n))
	case "create":
		fig, err = createFiles(dir, int(n))
	case "stat":
		fig, err = statFiles(dir, int(n))
	case "ls":
		fig, err = lsLong(dir)
	case "open":
		fig, err = openClose(filepath.Join(dir, "rand.bin"), int(n))
	case "randwrite":
		var own float64
		fig, own, err = randWrite(filepath.Join(dir, "rand.bin"), int(n))
		if err == nil {
			fmt.Println(fig, own)
			return nil
		}
	case "createsync":
		fig, err = createSyncFiles(dir, int(n))
	default:
		return fmt.Errorf("unknown workload %q", w)
	}
	if err != nil {
		return err
	}
	fmt.Println(fig)
	return nil
}

// seqWrite writes size bytes in 1 MiB writes, fsyncs, and returns MB/s.
func seqWrite(path string, size int64) (float64, error) {
	buf := make([]byte, 1<<20)
	crand.Read(buf)
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	for done := int64(0); done < size; done += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), size-done)]); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return float64(size) / 1e6 / time.Since(start).Seconds(), nil
}

// seqRead reads a file in 1 MiB reads and returns MB/s.
func seqRead(path string) (float64, error) {
	buf := make([]byte, 1<<20)
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	for {
		n, err := f.Read(buf)
		total += int64(n)
		if err != nil {
			break
		}
	}
	return float64(total) / 1e6 / time.Since(start).Seconds(), nil
}

// randRead makes n aligned 4 KiB reads at random offsets and returns IOPS.
func randRead(path string, n int) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	blocks := st.Size() / 4096
	buf := make([]byte, 4096)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := f.ReadAt(buf, rand.Int64N(blocks)*4096); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// createFiles creates, writes 4 KiB to and closes n files in dir/files; files per second.
func createFiles(dir string, n int) (float64, error) {
	return makeFiles(filepath.Join(dir, "files"), n, false)
}

// makeFiles creates n files in d (made anew), each written 4 KiB, fsync'd if sync, and
// closed; files per second.
func makeFiles(d string, n int, sync bool) (float64, error) {
	os.RemoveAll(d)
	if err := os.Mkdir(d, 0o755); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	start := time.Now()
	for i := 0; i < n; i++ {
		f, err := os.Create(filepath.Join(d, "f"+strconv.Itoa(i)))
		if err != nil {
			return 0, err
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return 0, err
		}
		if sync {
			if err := f.Sync(); err != nil {
				f.Close()
				return 0, err
			}
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// statFiles stats each of the n files made by createFiles; stats per second.
func statFiles(dir string, n int) (float64, error) {
	d := filepath.Join(dir, "files")
	var st syscall.Stat_t
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := syscall.Stat(filepath.Join(d, "f"+strconv.Itoa(i)), &st); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// lsLong runs one `ls -l` of the files folder and returns its seconds.
func lsLong(dir string) (float64, error) {
	start := time.Now()
	cmd := exec.Command("ls", "-l", filepath.Join(dir, "files"))
	if err := cmd.Run(); err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}

// openClose opens and closes path n times and returns µs per open.
func openClose(path string, n int) (float64, error) {
	start := time.Now()
	for i := 0; i < n; i++ {
		fd, err := syscall.Open(path, syscall.O_RDONLY, 0)
		if err != nil {
			return 0, err
		}
		syscall.Close(fd)
	}
	return float64(time.Since(start).Microseconds()) / float64(n), nil
}

// randWrite makes n aligned 4 KiB writes at random offsets, each followed by an fsync, and
// returns IOPS and the bytes this process made the kernel write (what a plain disk costs).
func randWrite(path string, n int) (float64, float64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	blocks := st.Size() / 4096
	buf := make([]byte, 4096)
	if _, err := crand.Read(buf); err != nil {
		return 0, 0, err
	}
	before := selfWriteBytes()
	start := time.Now()
	for i := 0; i < n; i++ {
		buf[0] = byte(i)
		if _, err := f.WriteAt(buf, rand.Int64N(blocks)*4096); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
	}
	iops := float64(n) / time.Since(start).Seconds()
	return iops, float64(selfWriteBytes() - before), nil
}

// createSyncFiles creates n files in dir/synced, each written 4 KiB, fsync'd and closed:
// durable on every target. Files per second.
func createSyncFiles(dir string, n int) (float64, error) {
	d := filepath.Join(dir, "synced")
	v, err := makeFiles(d, n, true)
	os.RemoveAll(d)
	return v, err
}

// selfWriteBytes is this process's write_bytes from /proc/self/io.
func selfWriteBytes() int64 { return procWriteBytes("self") }
