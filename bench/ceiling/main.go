// Command ceiling mounts go-fuse's loopback filesystem over a folder with FUSE passthrough
// switched off: the fastest a Go FUSE daemon can be on this machine, with no crypto and no
// checks. make bench measures dsh against it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	flag.Usage = func() { fmt.Fprintln(os.Stderr, "usage: ceiling SOURCE MOUNTPOINT") }
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	root, err := gofs.NewLoopbackRoot(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
	sec := time.Second
	srv, err := gofs.Mount(flag.Arg(1), root, &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:           true,
			FsName:               "ceiling",
			Name:                 "ceiling",
			MaxWrite:             1 << 20,
			DirectMount:          os.Geteuid() == 0,
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		},
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
	fmt.Println("mounted")
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-c
		srv.Unmount()
	}()
	srv.Wait()
}
