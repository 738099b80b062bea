package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"dsh/control"
	"dsh/smb"
)

func newSMBCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "smb", Short: "Samba in front of dsh: Q: and S: as Windows drives"}
	c.AddCommand(newSMBConfigCmd(g), newSMBCheckCmd(g), newSMBPasswordCmd(g))
	return c
}

func newSMBConfigCmd(g *globals) *cobra.Command {
	var cfg smb.Config
	var out string
	c := &cobra.Command{
		Use:   "config --group DIR --arrivals DIR [--listen ADDR] [--port N] [--state DIR] [--out FILE]",
		Short: "Write the smb.conf that serves the dsh mounts (operator)",
		Long: "Writes (or prints) the smb.conf for Samba in front of dsh: the S and Q shares over the\n" +
			"daemon's mounts, the settings a FUSE backend needs, and the check Samba runs on every\n" +
			"tree connect, which refuses a user without a live dsh session.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			for _, p := range []*string{&cfg.GroupDir, &cfg.ArrivalsDir, &cfg.StateDir} {
				if *p != "" {
					if *p, err = filepath.Abs(*p); err != nil {
						return err
					}
				}
			}
			if cfg.Dsh == "" {
				if cfg.Dsh, err = os.Executable(); err != nil {
					return fmt.Errorf("find the dsh binary: %w; name it with --dsh", err)
				}
			}
			if cfg.Socket, err = filepath.Abs(g.socket); err != nil {
				return err
			}
			text, err := cfg.Render()
			if err != nil {
				return usageError{err}
			}
			if cfg.StateDir != "" {
				if err := smb.MakeStateDirs(cfg.StateDir); err != nil {
					return err
				}
			}
			if out == "" {
				fmt.Print(text)
				return nil
			}
			if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
				return err
			}
			fmt.Printf("wrote %s\n", out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.GroupDir, "group", "", "where dsh serve mounts the Group (S:) tree")
	f.StringVar(&cfg.ArrivalsDir, "arrivals", "", "where dsh serve mounts the Arrivals (Q:) tree")
	f.StringVar(&cfg.Listen, "listen", "", "the one address smbd listens on (default: every interface)")
	f.IntVar(&cfg.Port, "port", 445, "TCP port of smbd")
	f.StringVar(&cfg.StateDir, "state", "", "a folder for all of this Samba's state (default: Samba's own folders)")
	f.StringVar(&cfg.Dsh, "dsh", "", "the dsh binary Samba runs on each tree connect (default: this one)")
	f.StringVar(&cfg.Encrypt, "encrypt", "required", "SMB3 encryption: required, desired or off")
	f.StringVar(&out, "out", "", "write the file here instead of printing it")
	return c
}

func newSMBCheckCmd(g *globals) *cobra.Command {
	var req control.SMBCheckRequest
	c := &cobra.Command{
		Use:   "check --user %u --share %S --client %I",
		Short: "Samba's tree-connect check: does this account hold a live dsh session? (root)",
		Long: "Run by Samba as root on every tree connect (root preexec, with root preexec close = yes):\n" +
			"exits 0 when the account's uid holds a live dsh session, 2 when it does not. The daemon\n" +
			"audits both.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Account == "" || req.Share == "" {
				return usagef("smb check needs --user and --share")
			}
			u, err := user.Lookup(req.Account)
			if err != nil {
				return fmt.Errorf("account %s: no such Unix account on this host", req.Account)
			}
			if req.UID, err = strconv.Atoi(u.Uid); err != nil {
				return fmt.Errorf("account %s: uid %q is not a number", req.Account, u.Uid)
			}
			got, err := g.client().SMBCheck(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Printf("allowed: %s (uid %d) holds a dsh session until %s\n", got.User, req.UID, when(got.Expires))
			return nil
		},
	}
	c.Flags().StringVar(&req.Account, "user", "", "the Unix account smbd connected (%u)")
	c.Flags().StringVar(&req.Share, "share", "", "the share (%S)")
	c.Flags().StringVar(&req.Client, "client", "", "the client's address (%I)")
	return c
}

func newSMBPasswordCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "password",
		Short: "Get a new random SMB password for the Windows drives (needs a session)",
		Long: "Sets a new random password for your account in Samba and shows it once. It replaces the\n" +
			"one before. It opens nothing by itself: every drive connection also needs a live dsh\n" +
			"session (dsh login or the portal).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			got, err := g.client().SMBPassword(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Printf("account: %s\n", got.Account)
			fmt.Printf("password: %s\n", got.Password)
			fmt.Println(strings.Join([]string{
				"Use them to connect \\\\<storage host>\\S and \\\\<storage host>\\Q; this password is shown once.",
				"Each connection also needs a live dsh session: log in first (dsh login or the portal).",
			}, "\n"))
			return nil
		},
	}
}
