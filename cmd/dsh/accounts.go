package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"dsh/control"
)

// table prints rows aligned in columns on stdout.
func table(header string, rows [][]string) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newUserCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Accounts: create, disable, enable, list (operator)"}
	var uid int
	var email string
	var shares []string
	create := &cobra.Command{
		Use:   "create ID --uid N --email E [--share SHARE]...",
		Short: "Create an account, optionally adding it to shares (read-write)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if uid <= 0 || email == "" {
				return usagef("user create needs --uid (a positive number) and --email")
			}
			res, err := g.client().CreateUser(cmd.Context(), control.UserCreateRequest{ID: args[0], UID: uid, Email: email, Shares: shares})
			if err != nil {
				return err
			}
			fmt.Printf("created user %s (uid %d, %s)\n", res.User.ID, res.User.UID, res.User.Email)
			for _, s := range res.Shares {
				fmt.Printf("added %s to share %s (read-write)\n", res.User.ID, s)
			}
			printEnrolment(res.Enrolment)
			return nil
		},
	}
	create.Flags().IntVar(&uid, "uid", 0, "the user's Linux uid on the desktops")
	create.Flags().StringVar(&email, "email", "", "the user's e-mail address")
	create.Flags().StringArrayVar(&shares, "share", nil, "add the user to this share at once (repeatable)")
	setter := func(use, short string, enabled bool, done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := g.client().SetUserEnabled(cmd.Context(), args[0], enabled); err != nil {
					return err
				}
				fmt.Printf("user %s %s\n", args[0], done)
				return nil
			},
		}
	}
	list := &cobra.Command{
		Use: "list", Short: "List accounts with their status", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			users, err := g.client().ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(users))
			for _, u := range users {
				rows = append(rows, []string{u.ID, fmt.Sprint(u.UID), u.Email, u.Status, u.Created.UTC().Format(time.DateOnly)})
			}
			table("ID\tUID\tEMAIL\tSTATUS\tCREATED", rows)
			return nil
		},
	}
	enrolCode := &cobra.Command{
		Use: "enrolment-code ID", Short: "Issue a new one-time enrolment code (first enrolment or re-enrolment)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.client().EnrolmentCode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printEnrolment(e)
			return nil
		},
	}
	c.AddCommand(create, enrolCode, setter("disable", "Disable an account: it keeps its memberships but is denied everything", false, "disabled"),
		setter("enable", "Enable a disabled account", true, "enabled"), list)
	return c
}

func newProjectCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "project", Short: "Projects: create and list (operator); nominate IAAs (IAO)"}
	var iao string
	create := &cobra.Command{
		Use: "create NAME --iao ID", Short: "Create a project and name its IAO", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if iao == "" {
				return usagef("project create needs --iao")
			}
			p, err := g.client().CreateProject(cmd.Context(), control.ProjectCreateRequest{Name: args[0], IAO: iao})
			if err != nil {
				return err
			}
			fmt.Printf("created project %s (IAO %s)\n", p.Name, p.IAO)
			return nil
		},
	}
	create.Flags().StringVar(&iao, "iao", "", "user ID of the project's Information Asset Owner")
	list := &cobra.Command{
		Use: "list", Short: "List projects", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ps, err := g.client().ListProjects(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(ps))
			for _, p := range ps {
				rows = append(rows, []string{p.Name, p.IAO, dash(strings.Join(p.IAAs, ","))})
			}
			table("PROJECT\tIAO\tIAAS", rows)
			return nil
		},
	}
	iaa := &cobra.Command{
		Use: "iaa add|remove NAME ID", Short: "Nominate or remove an IAA of your project (IAO)",
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			verb, project, user := args[0], args[1], args[2]
			if verb != "add" && verb != "remove" {
				return usagef("project iaa takes add or remove, not %q", verb)
			}
			if err := g.client().SetIAA(cmd.Context(), control.IAARequest{Project: project, User: user}, verb == "add"); err != nil {
				return err
			}
			if verb == "add" {
				fmt.Printf("%s is now an IAA of project %s\n", user, project)
			} else {
				fmt.Printf("%s is no longer an IAA of project %s\n", user, project)
			}
			return nil
		},
	}
	c.AddCommand(create, list, iaa)
	return c
}

func newShareCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "share", Short: "Shares: create, add, remove, members (IAO/IAA); list (anyone)"}
	var project string
	create := &cobra.Command{
		Use: "create NAME --project P", Short: "Create a share against a project you manage", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if project == "" {
				return usagef("share create needs --project")
			}
			s, err := g.client().CreateShare(cmd.Context(), control.ShareCreateRequest{Name: args[0], Project: project})
			if err != nil {
				return err
			}
			fmt.Printf("created share %s in project %s\n", s.Name, s.Project)
			return nil
		},
	}
	create.Flags().StringVar(&project, "project", "", "the project the share belongs to")
	var readOnly bool
	add := &cobra.Command{
		Use: "add NAME USER [--read-only]", Short: "Add a member (read-write unless --read-only)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().AddMember(cmd.Context(), control.MemberRequest{Share: args[0], User: args[1], ReadOnly: readOnly}); err != nil {
				return err
			}
			mode := "read-write"
			if readOnly {
				mode = "read-only"
			}
			fmt.Printf("added %s to share %s (%s)\n", args[1], args[0], mode)
			return nil
		},
	}
	add.Flags().BoolVar(&readOnly, "read-only", false, "the member may read but not change anything")
	remove := &cobra.Command{
		Use: "remove NAME USER", Short: "Remove a member", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().RemoveMember(cmd.Context(), control.MemberRequest{Share: args[0], User: args[1]}); err != nil {
				return err
			}
			fmt.Printf("removed %s from share %s\n", args[1], args[0])
			return nil
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List the shares you belong to or manage", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			shares, err := g.client().ListShares(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(shares))
			for _, s := range shares {
				access := modeName(s.Mode)
				if s.Manager {
					access = strings.TrimPrefix(access+",manager", ",")
				}
				rows = append(rows, []string{s.Share, s.Project, dash(access)})
			}
			table("SHARE\tPROJECT\tACCESS", rows)
			return nil
		},
	}
	members := &cobra.Command{
		Use: "members NAME", Short: "List a share's members", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := g.client().ShareMembers(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(res.Members))
			for _, m := range res.Members {
				mode := modeName(m.Mode)
				rows = append(rows, []string{m.User, mode, m.Status})
			}
			table("USER\tACCESS\tSTATUS", rows)
			return nil
		},
	}
	c.AddCommand(create, add, remove, list, members)
	return c
}

// printEnrolment shows an enrolment code on a line of its own, for the operator to hand
// to the user out of band.
func printEnrolment(e control.EnrolmentCode) {
	fmt.Printf("enrolment code: %s\n", e.Code)
	fmt.Printf("valid once, until %s: the user runs dsh enroll --code CODE --questions-file F\n", when(e.Expires))
	if e.MailedTo != "" {
		fmt.Printf("the code is also on its way to %s\n", e.MailedTo)
	}
}

// modeName spells out a membership mode as the command line shows it.
func modeName(m string) string {
	switch m {
	case "rw":
		return "read-write"
	case "ro":
		return "read-only"
	}
	return m
}
