package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	var since, until string
	var q control.AuditQuery
	var asJSON bool
	show := &cobra.Command{
		Use:   "show [--since T] [--until T] [--user ID] [--action A] [--limit N] [--json]",
		Short: "Print audit records as they are read (--json: JSON lines, for a SIEM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if since != "" {
				if q.Since, err = parseTime("--since", since); err != nil {
					return err
				}
			}
			if until != "" {
				if q.Until, err = parseTime("--until", until); err != nil {
					return err
				}
			}
			if q.Limit < 0 {
				return usagef("--limit must not be negative")
			}
			dir, off, err := so.open()
			if err != nil {
				return err
			}
			out := bufio.NewWriterSize(os.Stdout, 64<<10)
			defer out.Flush()
			emit := recordPrinter(out, asJSON)
			if !off {
				return g.client().AuditShow(cmd.Context(), q, emit)
			}
			key, err := offlineKey(dir, so.passFile)
			if err != nil {
				return err
			}
			rd, err := audit.NewReader(filepath.Join(dir, store.AuditDir), &key)
			key.Wipe()
			if err != nil {
				return err
			}
			defer rd.Close()
			aq := audit.Query{Since: q.Since, Until: q.Until, User: q.User, Action: q.Action, Limit: q.Limit}
			return rd.Scan(cmd.Context(), aq, func(r audit.Record) error { return emit(daemon.RecordView(r)) })
		},
	}
	show.Flags().StringVar(&since, "since", "", "only records at or after this time (RFC 3339, or a duration such as 1h: that long ago)")
	show.Flags().StringVar(&until, "until", "", "only records before this time (RFC 3339, or a duration)")
	show.Flags().StringVar(&q.User, "user", "", "only records of this user ID")
	show.Flags().StringVar(&q.Action, "action", "", "only records of this action (fs.open), or of actions with a prefix (fs.*)")
	show.Flags().IntVar(&q.Limit, "limit", 0, "at most this many records (0: all)")
	show.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line (seq, time, uid, user, action, object, result, detail)")
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

func parseTime(flag, s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usagef("%s takes an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (1h)", flag)
	}
	return t, nil
}

// recordPrinter returns the function that prints each record to w: one line of text
// (formatRecord) or one JSON object per line.
func recordPrinter(w io.Writer, asJSON bool) func(control.AuditRecord) error {
	if asJSON {
		enc := json.NewEncoder(w)
		return func(r control.AuditRecord) error { return enc.Encode(r) }
	}
	return func(r control.AuditRecord) error {
		_, err := io.WriteString(w, formatRecord(r)+"\n")
		return err
	}
}

// formatRecord renders one record on one line for an operator. A record's strings hold
// whatever the caller gave, a file name with a newline and a whole forged record after
// it included, so every string that is not made only of plain characters is printed
// Go-quoted (escapes for control characters, line and paragraph separators, format
// characters and bytes that are not UTF-8): no stored byte can start a line of its own or
// pass for another field.
func formatRecord(r control.AuditRecord) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6d %s uid=%d user=%s %s %s %s", r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.UID,
		word(r.User, "-"), word(r.Action, `""`), strconv.Quote(r.Object), word(r.Result, `""`))
	if r.Detail != "" {
		b.WriteString(" (")
		if plain(r.Detail, " ;,'=/") {
			b.WriteString(r.Detail)
		} else {
			b.WriteString(strconv.Quote(r.Detail))
		}
		b.WriteString(")")
	}
	return b.String()
}

// word prints s as it is when it is a plain word, Go-quoted otherwise, and empty as
// empty says.
func word(s, empty string) string {
	if s == "" {
		return empty
	}
	if plain(s, "") {
		return s
	}
	return strconv.Quote(s)
}

// plain reports whether s holds only ASCII letters, digits, ".:_@+-" and the characters
// of extra.
func plain(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(".:_@+-", c) >= 0, strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}
