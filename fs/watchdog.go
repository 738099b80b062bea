package fs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// A daemon that dies without unmounting (a panic, a fatal signal, SIGKILL, the OOM killer)
// leaves its trees mounted but dead: every process that touches them gets "Transport
// endpoint is not connected" until someone unmounts. The watchdog is a small process of
// its own, started by `dsh serve` before it mounts anything, that the daemon tells of each
// tree it mounts, over a pipe. When the pipe closes without the daemon's word that it
// unmounted the trees itself (which is what the death of the daemon, whatever its cause,
// does to the pipe), the watchdog unmounts each tree that is still the dead mount it was
// told of, and exits. A tree that a new daemon has mounted in the meantime answers, and is
// left alone.

// Watchdog is the daemon's end of the watchdog process.
type Watchdog struct {
	w   *os.File
	cmd *exec.Cmd
}

// StartWatchdog starts exe with args (the daemon's own binary, with the subcommand that
// calls RunWatchdog), giving it the reading end of the pipe as file descriptor 3. It runs
// in its own process group, so that a terminal's Ctrl-C reaches only the daemon.
func StartWatchdog(exe string, args ...string) (*Watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start the mount watchdog: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start the mount watchdog: %w", err)
	}
	r.Close()
	// The watchdog must outlive the daemon: nothing waits for it but Release.
	return &Watchdog{w: w, cmd: cmd}, nil
}

// Watch tells the watchdog of a tree just mounted on dir.
func (wd *Watchdog) Watch(dir string) error {
	if _, err := fmt.Fprintf(wd.w, "watch %s\n", strconv.Quote(dir)); err != nil {
		return fmt.Errorf("tell the mount watchdog of %s: %w", dir, err)
	}
	return nil
}

// Release tells the watchdog that the daemon unmounted its trees itself, and waits for it
// to exit.
func (wd *Watchdog) Release() {
	_, _ = io.WriteString(wd.w, "done\n")
	wd.w.Close()
	_ = wd.cmd.Wait()
}

// RunWatchdog is the watchdog process: it reads the daemon's messages from in until
// "done" (the daemon unmounted its trees) or the end of in (the daemon died), and then
// unmounts every watched tree that is still a dead mount.
func RunWatchdog(in io.Reader, log *slog.Logger) {
	var dirs []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		if line == "done" {
			return
		}
		if q, ok := strings.CutPrefix(line, "watch "); ok {
			if dir, err := strconv.Unquote(q); err == nil {
				dirs = append(dirs, dir)
			}
		}
	}
	for _, dir := range dirs {
		if unmountDead(dir) {
			log.Warn("the daemon died without unmounting a tree; the watchdog unmounted it", "dir", dir)
		}
	}
}

// unmountDead unmounts dir if it is a FUSE mount whose server is gone: it answers
// ENOTCONN. A live mount (a new daemon's) answers, and stays.
func unmountDead(dir string) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); !errors.Is(err, syscall.ENOTCONN) {
		return false
	}
	return syscall.Unmount(dir, syscall.MNT_DETACH) == nil
}
