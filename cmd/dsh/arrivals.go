package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newUploadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "upload FILE...",
		Short: "Upload files into your own Arrivals folder (needs a session)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tty := term.IsTerminal(int(os.Stderr.Fd()))
			for _, path := range args {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				st, err := f.Stat()
				if err != nil || !st.Mode().IsRegular() {
					f.Close()
					return usagef("%s is not a regular file", path)
				}
				name := filepath.Base(path)
				var body io.Reader = f
				var bar *progressbar.ProgressBar
				if tty {
					bar = progressbar.DefaultBytes(st.Size(), name)
					body = io.TeeReader(f, bar)
				} else {
					fmt.Printf("uploading %s (%d bytes)\n", name, st.Size())
				}
				start := time.Now()
				a, err := g.client().Upload(cmd.Context(), name, body, st.Size())
				f.Close()
				if bar != nil {
					bar.Finish()
				}
				if err != nil {
					return fmt.Errorf("upload %s: %w", path, err)
				}
				secs := time.Since(start).Seconds()
				fmt.Printf("uploaded %s as %s (%d bytes, %.1f MB/s); expires %s\n", path, a.Name, a.Size, float64(a.Size)/1e6/max(secs, 1e-6), when(a.Expires))
			}
			return nil
		},
	}
}

func newArrivalsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "arrivals", Short: "Your Arrivals folder"}
	list := &cobra.Command{
		Use: "list", Short: "List your arrivals with when each arrived and expires", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			as, err := g.client().ListArrivals(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(as))
			for _, a := range as {
				rows = append(rows, []string{a.Name, fmt.Sprint(a.Size), when(a.Arrived), when(a.Expires)})
			}
			table("NAME\tSIZE\tARRIVED\tEXPIRES", rows)
			return nil
		},
	}
	c.AddCommand(list)
	return c
}
