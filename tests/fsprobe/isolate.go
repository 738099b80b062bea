package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// isolate tries, as the uid it runs as, every system call that could tell it something
// about each path (a share or names inside it that another uid is using), prints one line
// "vector<TAB>path<TAB>result" per attempt, then listens on every watch that was granted
// for the given number of seconds and prints one "event<TAB>path<TAB>what" line per event.
// A uid that may not see the share must get, for every vector, what it would get for a
// name that does not exist, and no event.
//
// Usage: fsprobe isolate SECONDS PATH...
func isolate(seconds string, paths []string) {
	secs, err := strconv.Atoi(seconds)
	if err != nil {
		fmt.Println("err bad seconds")
		return
	}
	ino, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		fmt.Println("err inotify_init", err)
		return
	}
	defer unix.Close(ino)
	fan := -1
	if os.Geteuid() == 0 {
		fan, _ = unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_NONBLOCK, unix.O_RDONLY)
	}
	watches := map[int]string{}
	line := func(vector, path string, err error, ok string) {
		res := "ok " + ok
		if err != nil {
			var en syscall.Errno
			if errors.As(err, &en) {
				res = "err " + unix.ErrnoName(en)
			} else {
				res = "err " + err.Error()
			}
		}
		fmt.Printf("%s\t%s\t%s\n", vector, path, strings.TrimSpace(res))
	}
	for _, p := range paths {
		var st unix.Stat_t
		line("stat", p, unix.Stat(p, &st), fmt.Sprintf("uid=%d size=%d", st.Uid, st.Size))
		line("lstat", p, unix.Lstat(p, &st), fmt.Sprintf("uid=%d size=%d", st.Uid, st.Size))
		for _, fl := range []struct {
			name  string
			flags int
		}{{"statx", unix.AT_STATX_SYNC_AS_STAT}, {"statx-dont-sync", unix.AT_STATX_DONT_SYNC}, {"statx-force-sync", unix.AT_STATX_FORCE_SYNC}} {
			var sx unix.Statx_t
			line(fl.name, p, unix.Statx(unix.AT_FDCWD, p, fl.flags|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_ALL, &sx), fmt.Sprintf("uid=%d size=%d", sx.Uid, sx.Size))
		}
		fd, err := unix.Open(p, unix.O_PATH, 0)
		line("open-o-path", p, err, "")
		if err == nil {
			var sx unix.Statx_t
			line("fstatx-o-path-dont-sync", p, unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_ALL, &sx), fmt.Sprintf("uid=%d size=%d", sx.Uid, sx.Size))
			unix.Close(fd)
		}
		fd, err = unix.Open(p, unix.O_RDONLY, 0)
		line("open-read", p, err, "")
		if err == nil {
			buf := make([]byte, 4096)
			n, err := unix.Getdents(fd, buf)
			line("getdents", p, err, strconv.Itoa(n))
			unix.Close(fd)
		}
		_, err = unix.Open(p+"/probe-new", unix.O_CREAT|unix.O_WRONLY, 0o600)
		line("create-inside", p, err, "")
		buf := make([]byte, 4096)
		_, err = unix.Readlink(p, buf)
		line("readlink", p, err, "")
		line("access-f", p, unix.Access(p, unix.F_OK), "")
		line("access-r", p, unix.Access(p, unix.R_OK), "")
		wd, _ := os.Getwd()
		err = unix.Chdir(p)
		line("chdir", p, err, "")
		if err == nil {
			unix.Chdir(wd)
		}
		_, err = unix.Getxattr(p, "user.probe", buf)
		line("getxattr", p, err, "")
		_, err = unix.Listxattr(p, buf)
		line("listxattr", p, err, "")
		line("setxattr", p, unix.Setxattr(p, "user.probe", []byte("x"), 0), "")
		line("chmod", p, unix.Chmod(p, 0o777), "")
		line("utimes", p, unix.UtimesNano(p, []unix.Timespec{{}, {}}), "")
		var sf unix.Statfs_t
		err = unix.Statfs(p, &sf)
		line("statfs", p, err, fmt.Sprintf("blocks=%d bfree=%d files=%d ffree=%d", sf.Blocks, sf.Bfree, sf.Files, sf.Ffree))
		_, _, err = unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
		line("name-to-handle", p, err, "")
		w, err := unix.InotifyAddWatch(ino, p, unix.IN_ALL_EVENTS)
		line("inotify", p, err, "")
		if err == nil {
			watches[w] = p
		}
		if fan >= 0 {
			line("fanotify-inode", p, unix.FanotifyMark(fan, unix.FAN_MARK_ADD, unix.FAN_OPEN|unix.FAN_MODIFY|unix.FAN_CLOSE|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, p), "")
		}
	}
	// Listen.
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	evbuf := make([]byte, 64*1024)
	for time.Now().Before(deadline) {
		n, err := unix.Read(ino, evbuf)
		if err == nil && n > 0 {
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&evbuf[off]))
				name := ""
				if ev.Len > 0 {
					name = strings.TrimRight(string(evbuf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				}
				fmt.Printf("event\t%s\tinotify mask=%#x name=%q\n", watches[int(ev.Wd)], ev.Mask, name)
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
		if fan >= 0 {
			if n, err := unix.Read(fan, evbuf); err == nil && n > 0 {
				fmt.Printf("event\t-\tfanotify %d bytes\n", n)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("done")
}
