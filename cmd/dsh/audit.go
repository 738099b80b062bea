package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"dsh/audit"
	"dsh/control"
	"dsh/daemon"
	"dsh/store"
	"dsh/vault"
)

// offline names a store to read directly instead of asking the daemon.
type offline struct {
	data, passFile string
}

func (o *offline) flags(c *cobra.Command) {
	c.Flags().StringVar(&o.data, "data", "", "read the store in this folder directly, without the daemon")
	c.Flags().StringVar(&o.passFile, "unseal-passphrase-file", "", "with --data: the unseal passphrase file")
}

// auditKey opens the store's audit key for offline use, or returns ok=false to go online.
func (o *offline) open() (dir string, ok bool, err error) {
	if o.data == "" {
		if o.passFile != "" {
			return "", false, usagef("--unseal-passphrase-file goes with --data")
		}
		return "", false, nil
	}
	if o.passFile == "" {
		return "", false, usagef("--data needs --unseal-passphrase-file")
	}
	abs, err := filepath.Abs(o.data)
	return abs, true, err
}

func newAuditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "Check and read the audit log (operator)"}
	var vo, so offline
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the hash chain; name the first broken record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, off, err := vo.open()
			if err != nil {
				return err
			}
			var res control.AuditVerifyResponse
			if off {
				key, err := offlineKey(dir, vo.passFile)
				if err != nil {
					return err
				}
				r, verr := audit.Verify(filepath.Join(dir, store.AuditDir), &key)
				key.Wipe()
				res = daemon.VerifyView(r, verr)
			} else if res, err = g.client().AuditVerify(cmd.Context()); err != nil {
				return err
			}
			if res.Warning != "" {
				fmt.Printf("warning: %s\n", res.Warning)
			}
			if !res.OK {
				return fmt.Errorf("audit chain broken after %d good records: %s", res.Records, res.Problem)
			}
			fmt.Printf("audit chain ok: %d records\n", res.Records)
			return nil
		},
	}
	vo.flags(verify)
	var since string
	show := &cobra.Command{
		Use:   "show [--since T]",
		Short: "Print audit records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var t time.Time
			if since != "" {
				var err error
				if t, err = parseSince(since); err != nil {
					return err
				}
			}
			dir, off, err := so.open()
			if err != nil {
				return err
			}
			var recs []control.AuditRecord
			if off {
				key, err := offlineKey(dir, so.passFile)
				if err != nil {
					return err
				}
				err = audit.Read(filepath.Join(dir, store.AuditDir), &key, t, func(r audit.Record) error {
					recs = append(recs, daemon.RecordView(r))
					return nil
				})
				key.Wipe()
				if err != nil {
					return err
				}
			} else if recs, err = g.client().AuditShow(cmd.Context(), t); err != nil {
				return err
			}
			for _, r := range recs {
				printRecord(r)
			}
			return nil
		},
	}
	show.Flags().StringVar(&since, "since", "", "only records at or after this time (RFC 3339, or a duration such as 1h)")
	so.flags(show)
	c.AddCommand(verify, show)
	return c
}

func offlineKey(dir, passFile string) (vault.Key, error) {
	pass, err := readSecretFile(passFile)
	if err != nil {
		return vault.Key{}, err
	}
	defer clear(pass)
	return store.AuditKey(dir, pass)
}

func parseSince(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("--since takes an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (1h)")
	}
	return t, nil
}

func printRecord(r control.AuditRecord) {
	user := r.User
	if user == "" {
		user = "-"
	}
	fmt.Printf("%6d %s uid=%d user=%s %s %q %s", r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.UID, user, r.Action, r.Object, r.Result)
	if r.Detail != "" {
		fmt.Printf(" (%s)", r.Detail)
	}
	fmt.Println()
}
