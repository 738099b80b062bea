// Package clamdtest runs a real clamd for tests and the demo: its own configuration, its
// own socket, and a tiny signature database made at run time whose one signature matches
// the test sample (Sample). The official database cannot be downloaded where dsh is built,
// and a small one keeps clamd's start well under a second.
//
// The sample string is assembled at run time and never stored whole in the repository, so
// that no file of dsh's own is ever flagged by a scanner that loaded this database.
// clamd's temporary files (it spools every INSTREAM there before scanning) go to a folder
// on tmpfs, which Start checks: they hold plaintext and must never reach a disk.
package clamdtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"dsh/scan"
)

// SignatureName is the name clamd reports for the sample (it adds ".UNOFFICIAL").
const SignatureName = "Dsh.Test.Airlock"

// Found is the full name clamd reports when it finds the sample.
const Found = SignatureName + ".UNOFFICIAL"

// Sample returns the bytes the test signature matches. Put them anywhere in a file and
// clamd with this database reports Found.
func Sample() []byte {
	parts := []string{"dsh", "airlock", "test", "sample", "not", "a", "virus"}
	return []byte(strings.ToUpper(strings.Join(parts, "-")) + ":" + strings.Repeat("7", 3))
}

// Options tune Start.
type Options struct {
	// StreamMaxLength is clamd's INSTREAM limit in bytes; 0 means 64 MiB.
	StreamMaxLength int64
	// MaxFileSize is clamd's MaxFileSize (and a quarter of its MaxScanSize); 0 means
	// StreamMaxLength.
	MaxFileSize int64
	// TmpfsParent is where clamd's temporary folder is made; it must be on tmpfs. Empty
	// means /dev/shm.
	TmpfsParent string
}

// Clamd is a running clamd.
type Clamd struct {
	// Dir holds the configuration, the database, the socket and the log.
	Dir string
	// Socket is the Unix socket clamd listens on.
	Socket string
	// TempDir is clamd's TemporaryDirectory, on tmpfs.
	TempDir string
	cmd     *exec.Cmd
	done    chan error
}

// WriteDatabase writes the test signature database (one .ndb signature) into dir.
func WriteDatabase(dir string) error {
	line := fmt.Sprintf("%s:0:*:%s\n", SignatureName, hex.EncodeToString(Sample()))
	return os.WriteFile(filepath.Join(dir, "dsh-test.ndb"), []byte(line), 0o644)
}

// tmpfsMagic is TMPFS_MAGIC from linux/magic.h.
const tmpfsMagic = 0x01021994

// OnTmpfs reports whether path is on a tmpfs (memory, never a disk).
func OnTmpfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return st.Type == tmpfsMagic, nil
}

// Config is the clamd.conf Start writes, for dir (database, socket) and tmp (temporary
// files). README shows the same settings for a production clamd.
func Config(dir, tmp string, streamMax, fileMax int64) string {
	return strings.Join([]string{
		"Foreground yes",
		"LocalSocket " + filepath.Join(dir, "clamd.sock"),
		"LocalSocketMode 660",
		"DatabaseDirectory " + filepath.Join(dir, "db"),
		"TemporaryDirectory " + tmp,
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"LogTime yes",
		fmt.Sprintf("StreamMaxLength %d", streamMax),
		fmt.Sprintf("MaxFileSize %d", fileMax),
		// MaxScanSize counts everything scanned, the file and what clamd finds inside it:
		// well above MaxFileSize, so that a file under the limits is not held for it.
		fmt.Sprintf("MaxScanSize %d", min(4*fileMax, 4000<<20)),
		"AlertExceedsMax yes",
		"AlertEncrypted yes",
		"SelfCheck 0",
		"",
	}, "\n")
}

// Start writes a configuration and the database into dir (which must exist) and starts
// clamd in the foreground, returning once it answers PING.
func Start(ctx context.Context, dir string, opts Options) (*Clamd, error) {
	bin, err := exec.LookPath("clamd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/clamd", "/sbin/clamd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("clamd is not installed (Debian: apt-get install clamav-daemon): %w", err)
	}
	if opts.StreamMaxLength <= 0 {
		opts.StreamMaxLength = 64 << 20
	}
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = opts.StreamMaxLength
	}
	if opts.TmpfsParent == "" {
		opts.TmpfsParent = "/dev/shm"
	}
	if ok, err := OnTmpfs(opts.TmpfsParent); err != nil || !ok {
		return nil, fmt.Errorf("clamd's temporary files would hold plaintext: %s must be a tmpfs (%v)", opts.TmpfsParent, err)
	}
	tmp, err := os.MkdirTemp(opts.TmpfsParent, "dsh-clamd-")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o755); err != nil {
		return nil, err
	}
	if err := WriteDatabase(filepath.Join(dir, "db")); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(conf, []byte(Config(dir, tmp, opts.StreamMaxLength, opts.MaxFileSize)), 0o644); err != nil {
		return nil, err
	}
	c := &Clamd{Dir: dir, Socket: filepath.Join(dir, "clamd.sock"), TempDir: tmp, done: make(chan error, 1)}
	os.Remove(c.Socket)
	var out bytes.Buffer
	c.cmd = exec.Command(bin, "-c", conf)
	c.cmd.Stdout, c.cmd.Stderr = &out, &out
	// clamd must not outlive the test or demo that started it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("start clamd: %w", err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	client := scan.NewClamd(c.Socket, scan.ClamdOptions{Wait: 100 * time.Millisecond, Idle: 5 * time.Second})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-c.done:
			c.done <- err
			os.RemoveAll(tmp)
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.log"))
			return nil, fmt.Errorf("clamd exited at start (%v): %s %s", err, out.String(), log)
		default:
		}
		if err := client.Ping(ctx); err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.Stop()
			return nil, errors.New("clamd did not answer PING within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends clamd and removes its temporary folder. Calling it again does nothing.
func (c *Clamd) Stop() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		c.done <- <-c.done
	}
	c.cmd = nil
	os.RemoveAll(c.TempDir)
	os.Remove(c.Socket)
}

// Log returns what clamd logged so far.
func (c *Clamd) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "clamd.log"))
	return string(b)
}
