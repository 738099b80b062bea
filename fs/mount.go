package fs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxWrite is the largest FUSE request: big writes and reads mean fewer round trips.
const maxWrite = 1 << 20

// Mount mounts the tree on dir (allow_other: every uid reaches it and the daemon decides).
// A stale mount left there by a daemon that crashed is removed first.
func (g *Group) Mount(dir string) error {
	if err := CleanStale(dir); err != nil {
		return err
	}
	g.mountedAt = time.Now()
	zero := time.Duration(0)
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:        true,
			FsName:            "dsh",
			Name:              "dsh-" + string(g.label),
			MaxWrite:          maxWrite,
			MaxReadAhead:      maxWrite,
			DirectMount:       os.Geteuid() == 0,
			ExtraCapabilities: fuse.CAP_DIRECT_IO_ALLOW_MMAP,
			MaxBackground:     64,
			// Attributes are never cached (each uid sees itself as owner), so what
			// READDIRPLUS adds to a listing is names the kernel mostly holds already (they
			// are cached for long in the Group tree); its per-entry lookups in the daemon
			// cost more than they save: ls -l of 10,000 files 0.86 s -> 0.73 s here. A
			// listing whose names are not cached (after a restart) pays one lookup each.
			DisableReadDirPlus: true,
			// Every read is answered from the daemon's memory (decrypted), never from a file
			// descriptor, so go-fuse's splice path can never be taken; left on, it still
			// writes each reply's header into a pipe and drains it again, four system calls
			// per read for nothing.
			DisableSplice: true,
		},
		// Entry and attribute timeouts are set on each answer; these are the defaults for
		// answers that do not set them, and for negative lookups.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		RootStableAttr:  &gofs.StableAttr{Ino: rootIno},
	}
	srv, err := gofs.Mount(dir, &rootNode{g: g}, opts)
	if err != nil {
		return fmt.Errorf("mount the %s tree on %s: %w", g.label, dir, err)
	}
	g.server, g.dir = srv, dir
	return nil
}

// Unmount unmounts the tree, lazily if a process still has it busy, and waits for the
// FUSE server to stop.
func (g *Group) Unmount() error {
	if g.server == nil {
		return nil
	}
	var err error
	for i := 0; i < 20; i++ {
		if err = g.server.Unmount(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		// A shell sitting in the mount keeps it busy; detach it so the daemon can stop.
		if derr := syscall.Unmount(g.dir, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", g.dir, err, derr)
		}
	}
	g.server.Wait()
	g.server = nil
	return nil
}

// CleanStale removes a FUSE mount on dir left by a daemon that died without unmounting
// (its mount point answers ENOTCONN), and checks dir is a usable directory.
func CleanStale(dir string) error {
	_, err := os.Stat(dir)
	if errors.Is(err, syscall.ENOTCONN) || (err == nil && isFuseMount(dir)) {
		if uerr := syscall.Unmount(dir, syscall.MNT_DETACH); uerr != nil {
			return fmt.Errorf("remove stale mount on %s: %w", dir, uerr)
		}
		_, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	return nil
}

// isFuseMount reports whether dir is the mount point of a dsh FUSE mount.
func isFuseMount(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Fields: id parent major:minor root mountpoint options ... - fstype source ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != dir {
			continue
		}
		for i, fl := range fields {
			if fl == "-" && i+2 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") && fields[i+2] == "dsh" {
				return true
			}
		}
	}
	return false
}
