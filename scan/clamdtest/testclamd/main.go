// Command testclamd runs a clamd of its own with the tests' one-signature database, for
// `make demo`: it writes the configuration and database into --dir, starts clamd in the
// foreground (temporary files on tmpfs), writes the test sample to --sample when asked,
// prints the socket's path and waits for SIGINT or SIGTERM to stop clamd.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dsh/scan/clamdtest"
)

func main() {
	dir := flag.String("dir", "", "folder for clamd's configuration, database, socket and log")
	sample := flag.String("sample", "", "also write a file holding the test sample here")
	max := flag.Int64("stream-max", 64<<20, "clamd's StreamMaxLength in bytes")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "testclamd: --dir is required")
		os.Exit(1)
	}
	if *sample != "" {
		body := append([]byte("Minutes of the steering group\n(this file carries the airlock's test signature)\n"), clamdtest.Sample()...)
		if err := os.WriteFile(*sample, append(body, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testclamd:", err)
			os.Exit(1)
		}
	}
	c, err := clamdtest.Start(context.Background(), *dir, clamdtest.Options{StreamMaxLength: *max})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testclamd:", err)
		os.Exit(1)
	}
	fmt.Println(c.Socket)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	c.Stop()
}
