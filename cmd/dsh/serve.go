package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"dsh/content"
	"dsh/control"
	"dsh/daemon"
	dshfs "dsh/fs"
	"dsh/internal/secmem"
	"dsh/portal"
	"dsh/scan"
	"dsh/store"
	"dsh/token"
	"dsh/vault"
)

func newInitCmd() *cobra.Command {
	var data, passFile string
	c := &cobra.Command{
		Use:   "init --data DIR --unseal-passphrase-file F",
		Short: "Create a new store in an empty folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" || passFile == "" {
				return usagef("init needs --data and --unseal-passphrase-file")
			}
			pass, err := readSecretFile(passFile)
			if err != nil {
				return err
			}
			defer clear(pass)
			abs, err := filepath.Abs(data)
			if err != nil {
				return err
			}
			certFile := filepath.Join(abs, portal.CertFile)
			portalCert := func(p *store.Parts) error {
				_, certPEM, _, err := portal.StoredCert(context.Background(), p.KV, portal.DefaultHosts())
				if err != nil {
					return err
				}
				return portal.WriteCertFile(certFile, certPEM)
			}
			if err := store.Init(abs, pass, vault.DefaultKDF, logger(), portalCert); err != nil {
				return err
			}
			fmt.Printf("initialised a sealed dsh store in %s\n", abs)
			fmt.Printf("the portal's self-signed certificate (for browsers to trust): %s\n", certFile)
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "", "folder for the new store (must be new or empty)")
	c.Flags().StringVar(&passFile, "unseal-passphrase-file", "", "file whose first line is the unseal passphrase")
	return c
}

func newServeCmd(g *globals) *cobra.Command {
	var data, passFile, metricsAddr, groupDir, arrivalsDir, portalAddr, tlsCert, tlsKey, smbConf string
	var retention, uploadIdle time.Duration
	var reserve int64
	var gcInterval time.Duration
	var wd *dshfs.Watchdog
	var pprof bool
	var clamdSocket string
	var clamd scan.ClamdOptions
	var egressWindow time.Duration
	var auth token.Options
	var mailFlags *mailOpts
	c := &cobra.Command{
		Use:   "serve --data DIR [--unseal-passphrase-file F] [--metrics ADDR]",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return usagef("serve needs --data")
			}
			abs, err := filepath.Abs(data)
			if err != nil {
				return err
			}
			if auth.SessionTTL <= 0 || auth.Lockout <= 0 || auth.ICEValidity <= 0 || auth.MaxFailures <= 0 {
				return usagef("--session-ttl, --lockout-duration, --ice-validity and --lockout-threshold must be positive")
			}
			if (tlsCert == "") != (tlsKey == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			mailCfg, err := mailFlags.config()
			if err != nil {
				return err
			}
			cfg := daemon.Config{DataDir: abs, Socket: g.socket, MetricsAddr: metricsAddr, Pprof: pprof, Log: logger(), Auth: auth,
				PortalAddr: portalAddr, TLSCert: tlsCert, TLSKey: tlsKey, Mail: mailCfg}
			if groupDir != "" {
				if cfg.GroupDir, err = filepath.Abs(groupDir); err != nil {
					return err
				}
			}
			if arrivalsDir != "" {
				if cfg.ArrivalsDir, err = filepath.Abs(arrivalsDir); err != nil {
					return err
				}
			}
			if smbConf != "" {
				if cfg.SMBConf, err = filepath.Abs(smbConf); err != nil {
					return err
				}
			}
			if retention <= 0 {
				return usagef("--arrivals-retention must be positive")
			}
			cfg.ArrivalsRetention = retention
			if uploadIdle <= 0 {
				return usagef("--upload-idle-timeout must be positive")
			}
			cfg.UploadIdle = uploadIdle
			if egressWindow <= 0 || clamd.MaxSize <= 0 || clamd.Wait <= 0 {
				return usagef("--egress-window, --clamd-max-size and --clamd-wait must be positive")
			}
			cfg.ClamdSocket, cfg.Clamd, cfg.EgressWindow = clamdSocket, clamd, egressWindow
			if gcInterval < 0 {
				return usagef("--gc-interval must not be negative")
			}
			cfg.GCInterval = gcInterval
			if passFile != "" {
				if cfg.Passphrase, err = readSecretFile(passFile); err != nil {
					return err
				}
			}
			if os.Getenv("GOMEMLIMIT") == "" {
				// Without a limit Go's collector lets the heap double before it runs; the
				// daemon's budget is 256 MiB resident. Plaintext chunk buffers live outside
				// the Go heap (internal/secmem), where the limit does not see them, up to
				// the write budget; the heap gets what is left, less room for the stacks,
				// the mapped Badger log and the runtime.
				debug.SetMemoryLimit(256<<20 - content.DefaultBudget - 32<<20)
			}
			if reserve < 0 {
				return usagef("--free-space-reserve must not be negative")
			}
			cfg.FreeSpaceFloor = reserve
			if reserve == 0 {
				cfg.FreeSpaceFloor = -1
			}
			// No core dump of the daemon: keys and plaintext pass through its memory, and
			// not all of it can be secret memory (internal/secmem).
			if err := secmem.Harden(); err != nil {
				logger().Warn("the daemon could not keep itself out of core dumps", "err", err)
			}
			// A log reader that went away (dsh serve 2>&1 | head, a log shipper restarting)
			// must not kill the daemon: writes to the broken pipe fail, and the logger drops
			// the line.
			signal.Ignore(syscall.SIGPIPE)
			if cfg.GroupDir != "" || cfg.ArrivalsDir != "" {
				exe, err := os.Executable()
				if err != nil {
					clear(cfg.Passphrase)
					return err
				}
				if wd, err = dshfs.StartWatchdog(exe, "--socket", g.socket, watchdogCmd); err != nil {
					clear(cfg.Passphrase)
					return err
				}
				cfg.Watchdog = wd
			}
			d, err := daemon.New(cfg)
			if err == nil {
				// A hangup (the terminal closed) stops the daemon cleanly too, as SIGINT and
				// SIGTERM do: every way out unmounts the trees.
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
				err = d.Run(ctx)
				stop()
			} else {
				clear(cfg.Passphrase)
			}
			// Run returned, so it unmounted the trees: the watchdog may stand down. Not
			// deferred: a panic must leave it watching.
			if wd != nil {
				wd.Release()
			}
			return err
		},
	}
	c.Flags().DurationVar(&gcInterval, "gc-interval", 30*time.Second, "how often the objects of replaced and deleted files are collected")
	c.Flags().Int64Var(&reserve, "free-space-reserve", store.DefaultFreeSpaceFloor,
		"bytes of disk space kept free for the metadata and the audit log: file writes get ENOSPC below it (0: none)")
	c.Flags().StringVar(&data, "data", "", "the store's folder (made by dsh init)")
	c.Flags().StringVar(&passFile, "unseal-passphrase-file", "", "unseal at start with the passphrase in this file")
	c.Flags().StringVar(&groupDir, "group", "", "mount the Group (S:) tree of project shares here")
	c.Flags().StringVar(&arrivalsDir, "arrivals", "", "mount the Arrivals (Q:) tree here")
	c.Flags().DurationVar(&retention, "arrivals-retention", dshfs.DefaultRetention, "how long a file stays in Arrivals after it arrived")
	c.Flags().DurationVar(&uploadIdle, "upload-idle-timeout", control.DefaultStreamIdle, "cut off a dsh upload that sends nothing for this long")
	c.Flags().StringVar(&metricsAddr, "metrics", "127.0.0.1:9464", "address of the Prometheus /metrics endpoint")
	c.Flags().StringVar(&portalAddr, "portal", "127.0.0.1:8443", "address of the HTTPS portal (\"\" for none)")
	c.Flags().StringVar(&tlsCert, "tls-cert", "", "the portal's certificate (PEM); default: the store's self-signed one")
	c.Flags().StringVar(&tlsKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	c.Flags().StringVar(&smbConf, "smb-conf", "", "smb.conf of the Samba serving the trees (dsh smb config), for dsh smb password")
	c.Flags().BoolVar(&pprof, "pprof", false, "also serve /debug/pprof on the metrics address")
	c.Flags().StringVar(&clamdSocket, "clamd", "", "clamd's Unix socket: the malware gate of uploads and egress (without it both are refused)")
	c.Flags().Int64Var(&clamd.MaxSize, "clamd-max-size", scan.DefaultMaxSize, "files larger than this (bytes) are held for manual review unscanned; at most clamd's StreamMaxLength")
	c.Flags().DurationVar(&clamd.Wait, "clamd-wait", scan.DefaultWait, "how long an upload waits for an unreachable clamd before it fails")
	c.Flags().DurationVar(&egressWindow, "egress-window", 7*24*time.Hour, "how long approved files may be downloaded")
	c.Flags().DurationVar(&auth.SessionTTL, "session-ttl", token.DefaultSessionTTL, "lifetime of a login session")
	c.Flags().IntVar(&auth.MaxFailures, "lockout-threshold", token.DefaultMaxFailures, "failed logins in a row that lock an account")
	c.Flags().DurationVar(&auth.Lockout, "lockout-duration", token.DefaultLockout, "how long a locked account stays locked")
	c.Flags().DurationVar(&auth.ICEValidity, "ice-validity", token.DefaultICEValidity, "how long an ICE emergency code stays valid")
	mailFlags = addMailFlags(c)
	return c
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// watchdogCmd names the hidden subcommand that runs the mount watchdog (fs.RunWatchdog).
const watchdogCmd = "mount-watchdog"

func newWatchdogCmd() *cobra.Command {
	return &cobra.Command{
		Use:    watchdogCmd,
		Short:  "Unmount the trees of a dsh serve that died (started by dsh serve itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// It must outlive the daemon and whatever signals reach the daemon's terminal.
			signal.Ignore(syscall.SIGPIPE, syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM)
			in := os.NewFile(3, "watchdog pipe")
			if in == nil {
				return usagef("%s is started by dsh serve", watchdogCmd)
			}
			dshfs.RunWatchdog(in, logger())
			return nil
		},
	}
}
