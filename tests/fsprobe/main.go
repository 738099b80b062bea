// Command fsprobe makes single system calls for the end-to-end tests, run as a test uid:
// the things a shell cannot do precisely (hold a file open across a revocation, rename with
// flags, extended attributes). It prints "ok ..." or "err ERRNO" per step.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func result(err error, okMsg string) {
	if err != nil {
		var en syscall.Errno
		if errors.As(err, &en) {
			fmt.Printf("err %s\n", unix.ErrnoName(en))
			return
		}
		fmt.Printf("err %v\n", err)
		return
	}
	// One answer is one line: the caller reads line by line, and file content may hold
	// newlines or control bytes that would split an answer in two.
	fmt.Printf("ok %s\n", strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '.'
		}
		return r
	}, okMsg))
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: fsprobe hold PATH [rw] | rename2 OLD NEW noreplace|exchange | setxattr PATH NAME VALUE | getxattr PATH NAME | listxattr PATH")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "shortupload":
		shortUpload(os.Args[2], os.Args[3])
	case "openloop":
		openLoop(os.Args[2], os.Args[3])
	case "hold":
		hold(os.Args[2], len(os.Args) > 3 && os.Args[3] == "rw")
	case "mmap":
		mapped(os.Args[2])
	case "isolate":
		isolate(os.Args[2], os.Args[3:])
	case "fill":
		fill(os.Args[2], os.Args[3], os.Args[4])
	case "unixsock":
		unixSocket(os.Args[2])
	case "rename2":
		var flags uint
		switch os.Args[4] {
		case "noreplace":
			flags = unix.RENAME_NOREPLACE
		case "exchange":
			flags = unix.RENAME_EXCHANGE
		}
		result(unix.Renameat2(unix.AT_FDCWD, os.Args[2], unix.AT_FDCWD, os.Args[3], flags), "")
	case "setxattr":
		result(unix.Setxattr(os.Args[2], os.Args[3], []byte(os.Args[4]), 0), "")
	case "removexattr":
		result(unix.Removexattr(os.Args[2], os.Args[3]), "")
	case "getxattr":
		buf := make([]byte, 4096)
		n, err := unix.Getxattr(os.Args[2], os.Args[3], buf)
		if err != nil {
			result(err, "")
			return
		}
		result(nil, string(buf[:n]))
	case "listxattr":
		buf := make([]byte, 4096)
		n, err := unix.Listxattr(os.Args[2], buf)
		if err != nil {
			result(err, "")
			return
		}
		result(nil, strings.ReplaceAll(strings.TrimRight(string(buf[:n]), "\x00"), "\x00", ","))
	default:
		fmt.Fprintln(os.Stderr, "unknown command")
		os.Exit(2)
	}
}

// hold opens path and then, for each line on stdin ("read" or "write"), reads or writes at
// offset 0 through the same descriptor, printing the result, until stdin ends.
func hold(path string, rw bool) {
	flags := os.O_RDONLY
	if rw {
		flags = os.O_RDWR
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		result(err, "")
		return
	}
	defer f.Close()
	result(nil, "open")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "read":
			buf := make([]byte, 64)
			n, err := f.ReadAt(buf, 0)
			if n > 0 {
				err = nil
			}
			result(err, strings.TrimSpace(string(buf[:n])))
		case "write":
			_, err := f.WriteAt([]byte("W"), 0)
			result(err, "")
		}
	}
}

// openLoop opens and closes path n times and prints the mean time per open, for the
// measurement of what an access decision and its audit record cost.
func openLoop(path, count string) {
	n, err := strconv.Atoi(count)
	if err != nil || n <= 0 {
		fmt.Println("err bad count")
		return
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Open(path, unix.O_RDONLY, 0)
		if err != nil {
			result(err, "")
			return
		}
		unix.Close(fd)
	}
	result(nil, fmt.Sprintf("%.1f us/open", float64(time.Since(start).Microseconds())/float64(n)))
}

// shortUpload sends an upload whose body stops half-way through its declared length, as a
// client that dies mid-transfer does, and prints the daemon's answer (if any).
func shortUpload(socket, name string) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		result(err, "")
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/arrivals/upload?name=%s HTTP/1.1\r\nHost: dsh\r\nContent-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n", name)
	c.Write(make([]byte, 100000))
	c.(*net.UnixConn).CloseWrite()
	b, _ := io.ReadAll(c)
	line, _, _ := strings.Cut(string(b), "\r\n")
	result(nil, line)
}

// mapped opens path read-write, maps its first page MAP_SHARED and then, for each line on
// stdin, acts on the mapping: "put OFF TEXT" stores TEXT at OFF in the mapping, "msync"
// syncs it, "close" closes the descriptor (the mapping stays), "unmap" unmaps it. It
// prints one result line per request.
func mapped(path string) {
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		result(err, "")
		return
	}
	mem, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		result(err, "")
		return
	}
	result(nil, "mapped")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		switch f[0] {
		case "put":
			off, _ := strconv.Atoi(f[1])
			copy(mem[off:], f[2])
			result(nil, "")
		case "msync":
			result(unix.Msync(mem, unix.MS_SYNC), "")
		case "close":
			result(unix.Close(fd), "")
		case "unmap":
			result(unix.Munmap(mem), "")
		}
	}
}

// unixSocket binds a unix socket at path, connects to it and passes a message through,
// as tmux, ssh-agent or a Jupyter kernel does with a socket in its working folder.
func unixSocket(path string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		result(err, "")
		return
	}
	// The name stays after the listener closes, for the test to look at.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		result(err, "")
		return
	}
	c.Write([]byte("through the socket"))
	c.Close()
	select {
	case s := <-got:
		result(nil, s)
	case <-time.After(10 * time.Second):
		fmt.Println("err timeout")
	}
}

// fill opens n files in dir, writes size bytes to each in 1 MiB writes without closing any,
// prints the result, and holds them open until stdin ends: a writer that never flushes.
func fill(dir, count, size string) {
	n, _ := strconv.Atoi(count)
	sz, _ := strconv.ParseInt(size, 10, 64)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	var files []*os.File
	for i := 0; i < n; i++ {
		f, err := os.Create(fmt.Sprintf("%s/fill-%d", dir, i))
		if err != nil {
			result(err, "")
			return
		}
		files = append(files, f)
		for off := int64(0); off < sz; off += int64(len(buf)) {
			if _, err := f.Write(buf); err != nil {
				result(err, "")
				return
			}
		}
	}
	result(nil, "filled")
	io.Copy(io.Discard, os.Stdin)
	for _, f := range files {
		f.Close()
	}
}
