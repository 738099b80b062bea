package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"dsh/control"
)

// state prints a request's state as people read it.
func state(s string) string { return strings.ReplaceAll(s, "_", " ") }

func newQuarantineCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "quarantine", Short: "Uploads the malware gate stopped (operator; release needs a second person)"}
	c.AddCommand(&cobra.Command{
		Use: "list", Short: "List quarantined uploads", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			qs, err := g.client().ListQuarantine(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(qs))
			for _, q := range qs {
				rows = append(rows, []string{q.ID, q.User, q.Name, fmt.Sprint(q.Size), when(q.Held), q.Verdict, dash(strings.Join(q.Release, ","))})
			}
			table("ID\tUSER\tNAME\tSIZE\tHELD\tVERDICT\tRELEASE ASKED BY", rows)
			return nil
		},
	}, &cobra.Command{
		Use: "release ID", Short: "Ask for a quarantined upload's release; a second, different person's request releases it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.client().ReleaseQuarantine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if r.Released != nil {
				fmt.Printf("released %s: %s is in %s's Arrivals as %s (%d bytes); expires %s\n", r.File.ID, r.File.Name, r.File.User, r.Released.Name, r.Released.Size, when(r.Released.Expires))
				return nil
			}
			fmt.Printf("release of %s requested (%d of %d); a second, different person must ask too\n", r.File.ID, len(r.File.Release), r.Needed)
			return nil
		},
	}, &cobra.Command{
		Use: "delete ID", Short: "Delete a quarantined upload for good (operator)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().DeleteQuarantine(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("deleted %s\n", args[0])
			return nil
		},
	})
	return c
}

func newEgressCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "egress", Short: "Requests to release files from a share, their review and download"}
	var reason string
	var draft bool
	req := &cobra.Command{
		Use: "request SHARE PATH... --reason TEXT", Short: "Ask to release files of a share (frozen and scanned now)", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usagef("egress request needs --reason")
			}
			v, err := g.client().CreateEgress(cmd.Context(), control.EgressCreateRequest{Share: args[0], Paths: args[1:], Reason: reason, Draft: draft})
			if err != nil {
				return err
			}
			fmt.Printf("request %s: %s\n", v.ID, state(v.State))
			printFiles(v)
			if v.State != "draft" {
				fmt.Printf("needs %d approvals from the reviewers of project %s\n", v.K, v.Project)
			}
			return nil
		},
	}
	req.Flags().StringVar(&reason, "reason", "", "why these files should leave the haven")
	req.Flags().BoolVar(&draft, "draft", false, "keep it as a draft (submit later with dsh egress submit ID)")
	action := func(name, short string, needReason bool) *cobra.Command {
		var why string
		a := &cobra.Command{
			Use: name + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if needReason && strings.TrimSpace(why) == "" {
					return usagef("egress %s needs --reason", name)
				}
				v, err := g.client().EgressAction(cmd.Context(), name, control.EgressAction{ID: args[0], Reason: why})
				if err != nil {
					return err
				}
				fmt.Printf("request %s: %s", v.ID, state(v.State))
				switch v.State {
				case "in_review", "approved":
					fmt.Printf(" (%d of %d approvals)", len(v.Approvals), v.K)
				}
				if v.State == "approved" {
					fmt.Printf("; %s may download it until %s", v.Requester, when(v.Expires))
				}
				fmt.Println()
				return nil
			},
		}
		if needReason {
			a.Flags().StringVar(&why, "reason", "", "why")
		}
		return a
	}
	list := &cobra.Command{
		Use: "list", Short: "Your requests and those you review", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, err := g.client().ListEgress(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(rs))
			for _, r := range rs {
				rows = append(rows, []string{r.ID, r.Project, r.Share, r.Requester, state(r.State),
					fmt.Sprintf("%d/%d", len(r.Approvals), r.K), fmt.Sprint(len(r.Files)), when(r.Created)})
			}
			table("ID\tPROJECT\tSHARE\tREQUESTER\tSTATE\tAPPROVALS\tFILES\tCREATED", rows)
			return nil
		},
	}
	show := &cobra.Command{
		Use: "show ID", Short: "A request: files, hashes, scan verdicts, reason, approvals, history, and the project's earlier requests", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.client().ShowEgress(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			r := s.Request
			fmt.Printf("request   %s\nproject   %s (reviewers: %s)\nshare     %s\nrequester %s\nstate     %s\nreason    %s\n",
				r.ID, r.Project, strings.Join(s.Reviewers, ", "), r.Share, r.Requester, state(r.State), r.Reason)
			if r.Manifest != "" {
				fmt.Printf("manifest  sha256 %s\n", r.Manifest)
			}
			if r.K > 0 {
				var who []string
				for _, a := range r.Approvals {
					who = append(who, a.User)
				}
				fmt.Printf("approvals %d of %d %s\n", len(r.Approvals), r.K, strings.Join(who, ", "))
			}
			if !r.Expires.IsZero() {
				fmt.Printf("deadline  %s\n", when(r.Expires))
			}
			fmt.Println("files:")
			printFiles(r)
			fmt.Println("history:")
			for _, e := range r.History {
				line := fmt.Sprintf("  %s  %-16s %-10s %s", when(e.At), e.Action, state(e.State), e.By)
				if e.Why != "" {
					line += ": " + e.Why
				}
				fmt.Println(line)
			}
			if !s.Reviewer && len(s.Earlier) == 0 {
				return nil // the project's other requests are for its reviewers
			}
			fmt.Println("earlier requests of the project:")
			if len(s.Earlier) == 0 {
				fmt.Println("  none")
			}
			for _, e := range s.Earlier {
				fmt.Printf("  %s  %s  %s  by %s\n", e.ID, when(e.Submitted), state(e.State), e.Requester)
				for _, f := range e.Files {
					fmt.Printf("      %s  %d B  sha256 %s\n", f.Path, f.Size, f.SHA256)
				}
			}
			return nil
		},
	}
	view := &cobra.Command{
		Use: "view ID N", Short: "Write file N of a request to standard output (reviewers and the requester; read-only review view)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return usagef("N must be the number of a file of the request (1, 2, ...)")
			}
			st, err := g.client().ViewEgress(cmd.Context(), args[0], n)
			if err != nil {
				return err
			}
			defer st.Body.Close()
			h := sha256.New()
			if _, err := io.Copy(io.MultiWriter(os.Stdout, h), st.Body); err != nil {
				return fmt.Errorf("view cut short: %w", err)
			}
			if hex.EncodeToString(h.Sum(nil)) != st.SHA256 {
				return errors.New("the bytes shown do not match the request's hash")
			}
			return nil
		},
	}
	var out string
	var only int
	download := &cobra.Command{
		Use: "download ID [--out DIR] [--file N]", Short: "Download the approved files of your request (checked against their hashes)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.client().ShowEgress(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for i := range s.Request.Files {
				if only != 0 && only != i+1 {
					continue
				}
				if err := downloadOne(cmd, g, args[0], i+1, out); err != nil {
					return err
				}
			}
			return nil
		},
	}
	download.Flags().StringVar(&out, "out", ".", "folder to write the files into (never over an existing file)")
	download.Flags().IntVar(&only, "file", 0, "only file N of the request")
	var k int
	var add, remove []string
	policy := &cobra.Command{
		Use: "policy PROJECT [--approvals K] [--add-reviewer ID]... [--remove-reviewer ID]...", Short: "A project's review rule: k approvals from its reviewers (set by its IAO)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p control.EgressPolicyView
			var err error
			if k != 0 || len(add) > 0 || len(remove) > 0 {
				p, err = g.client().SetEgressPolicy(cmd.Context(), control.EgressPolicyRequest{Project: args[0], K: k, Add: add, Remove: remove})
			} else {
				p, err = g.client().EgressPolicy(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			fmt.Printf("project %s: %d approvals from %s (never the requester)\n", p.Project, p.K, strings.Join(p.Reviewers, ", "))
			return nil
		},
	}
	policy.Flags().IntVar(&k, "approvals", 0, "approvals a request needs (2 to 9)")
	policy.Flags().StringSliceVar(&add, "add-reviewer", nil, "name a reviewer besides the IAO and IAAs")
	policy.Flags().StringSliceVar(&remove, "remove-reviewer", nil, "remove a named reviewer")
	c.AddCommand(req, action("submit", "Submit a draft (its files are frozen and scanned now)", false),
		list, show, view,
		action("approve", "Approve a request (a reviewer of its project, never its requester)", false),
		action("reject", "Reject a request, with a reason", true),
		action("revoke", "Withdraw an approval before anything was downloaded, with a reason", true),
		action("cancel", "Withdraw your own request before it is approved", false),
		download, policy)
	return c
}

func printFiles(v control.EgressView) {
	for i, f := range v.Files {
		line := fmt.Sprintf("  %d  %s", i+1, f.Path)
		if f.SHA256 != "" {
			line += fmt.Sprintf("  %d B  sha256 %s  %s", f.Size, f.SHA256, dash(f.Verdict))
		}
		fmt.Println(line)
	}
}

// downloadOne writes file n of request id into dir: to a temporary name, checked against
// the request's hash, then renamed without replacing anything.
func downloadOne(cmd *cobra.Command, g *globals, id string, n int, dir string) error {
	st, err := g.client().DownloadEgress(cmd.Context(), id, n)
	if err != nil {
		return err
	}
	defer st.Body.Close()
	name := filepath.Base(st.Name)
	if name == "." || name == "/" || name == "" {
		return fmt.Errorf("the daemon named the file %q", st.Name)
	}
	tmp, err := os.CreateTemp(dir, ".dsh-download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	got, err := io.Copy(io.MultiWriter(tmp, h), st.Body)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download of file %d of %s failed, nothing kept: %w", n, id, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if got != st.Size || sum != st.SHA256 {
		return fmt.Errorf("download of file %d of %s: %d bytes with sha256 %s, expected %d bytes with %s; nothing kept", n, id, got, sum, st.Size, st.SHA256)
	}
	dst := filepath.Join(dir, name)
	if err := os.Link(tmp.Name(), dst); err != nil {
		return fmt.Errorf("keep %s: %w", dst, err)
	}
	fmt.Printf("downloaded %s (%d bytes, sha256 %s, as approved)\n", dst, got, sum)
	return nil
}
