package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"github.com/spf13/cobra"

	"dsh/control"
)

// readQuestions reads a --questions-file: three lines "question<TAB>answer". The answers
// are secrets, so the file's bytes are wiped once the request is built.
func readQuestions(path string) ([3]control.SecurityQuestion, error) {
	var qs [3]control.SecurityQuestion
	b, err := os.ReadFile(path)
	if err != nil {
		return qs, fmt.Errorf("read questions file: %w", err)
	}
	defer clear(b)
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		q, a, ok := strings.Cut(line, "\t")
		if !ok || strings.TrimSpace(q) == "" || a == "" {
			return qs, usagef("questions file %s: line %d is not \"question<TAB>answer\"", path, n+1)
		}
		if n == 3 {
			return qs, usagef("questions file %s: more than three questions", path)
		}
		qs[n] = control.SecurityQuestion{Question: q, Answer: a}
		n++
	}
	if n != 3 {
		return qs, usagef("questions file %s: needs three lines \"question<TAB>answer\", found %d", path, n)
	}
	return qs, nil
}

// readNew reads a new secret; on a terminal it is asked for twice, since a typo that
// cannot be seen would otherwise lock the user out of their own account.
func readNew(r *secretReader, what string) (string, error) {
	b, err := r.read(what)
	if err != nil {
		return "", err
	}
	defer clear(b)
	if r.tty {
		again, err := r.read("repeat " + what)
		if err != nil {
			return "", err
		}
		defer clear(again)
		if !bytes.Equal(b, again) {
			return "", usagef("the two entries of the %s differ", what)
		}
	}
	return string(b), nil
}

// readOne reads one secret as a string for a request body.
func readOne(r *secretReader, what string) (string, error) {
	b, err := r.read(what)
	if err != nil {
		return "", err
	}
	defer clear(b)
	return string(b), nil
}

// showToken prints a new token's otpauth URL on a line of its own and the same as a QR
// code, for an authenticator app to scan.
func showToken(t control.TokenCreated) error {
	fmt.Printf("soft token %s: add it to your authenticator app (scan the code or enter the URL)\n", t.ID)
	fmt.Println(t.URL)
	q, err := qrcode.New(t.URL, qrcode.Medium)
	if err != nil {
		return fmt.Errorf("draw QR code: %w", err)
	}
	fmt.Print(q.ToSmallString(false))
	return nil
}

func when(t time.Time) string { return t.Local().Format("2006-01-02 15:04 MST") }

func newEnrolCmd(g *globals) *cobra.Command {
	var code, qfile, tokenCode string
	c := &cobra.Command{
		Use:   "enroll --code ENROLMENT_CODE --questions-file F [--token-code N]",
		Short: "Set your password, security questions and first soft token (< new password, new PIN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code == "" || qfile == "" {
				return usagef("enroll needs --code and --questions-file")
			}
			qs, err := readQuestions(qfile)
			if err != nil {
				return err
			}
			r := newSecretReader()
			req := control.EnrolRequest{Code: code, Questions: qs, TokenCode: tokenCode}
			if req.Password, err = readNew(r, "new password"); err != nil {
				return err
			}
			if req.PIN, err = readNew(r, "new 4-digit PIN"); err != nil {
				return err
			}
			res, err := g.client().Enrol(cmd.Context(), req)
			if err != nil {
				return err
			}
			if res.URL == "" {
				fmt.Printf("enrolled: password, security questions and the PIN of hardware token %s set\n", res.ID)
				return nil
			}
			fmt.Println("enrolled: password, security questions and first soft token set")
			return showToken(res)
		},
	}
	c.Flags().StringVar(&code, "code", "", "the one-time enrolment code from the operator")
	c.Flags().StringVar(&qfile, "questions-file", "", "file of three lines question<TAB>answer")
	c.Flags().StringVar(&tokenCode, "token-code", "", "a code of the hardware token assigned to you: the PIN goes to it, no soft token is made")
	return c
}

func newLoginCmd(g *globals) *cobra.Command {
	var user, code, emergency string
	c := &cobra.Command{
		Use:   "login [--user ID] (--code NNNNNN | --emergency-code NNNNNNNN)",
		Short: "Start a session with password, PIN and token code (or an ICE code) on stdin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (code == "") == (emergency == "") {
				return usagef("login needs exactly one of --code and --emergency-code")
			}
			r := newSecretReader()
			req := control.LoginRequest{User: user, Code: code, EmergencyCode: emergency}
			var err error
			if req.Password, err = readOne(r, "password"); err != nil {
				return err
			}
			if code != "" {
				if req.PIN, err = readOne(r, "PIN"); err != nil {
					return err
				}
			}
			v, err := g.client().Login(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Printf("logged in as %s until %s\n", v.User, when(v.Expires))
			printShares(v)
			return nil
		},
	}
	c.Flags().StringVar(&user, "user", "", "your user ID (must be the user of your uid)")
	c.Flags().StringVar(&code, "code", "", "the code of your token (6 digits; 8 on some hardware tokens)")
	c.Flags().StringVar(&emergency, "emergency-code", "", "an 8-digit ICE emergency code")
	return c
}

func printShares(v control.SessionView) {
	if len(v.Shares) == 0 {
		fmt.Println("shares: none")
		return
	}
	rows := make([][]string, 0, len(v.Shares))
	for _, s := range v.Shares {
		rows = append(rows, []string{s.Share, s.Project, modeName(s.Mode)})
	}
	table("SHARE\tPROJECT\tACCESS", rows)
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "logout", Short: "End your sessions (this uid's dsh login and portal sign-ins) and wipe their keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().Logout(cmd.Context()); err != nil {
				return err
			}
			fmt.Println("logged out")
			return nil
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Show your session, its shares and when it ends", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.client().Session(cmd.Context())
			if err != nil {
				return err
			}
			if !v.Active {
				fmt.Printf("not logged in (uid %d)\n", v.UID)
				return nil
			}
			left := time.Until(v.Expires).Round(time.Second)
			if left > time.Minute {
				left = left.Round(time.Minute)
			}
			fmt.Printf("logged in as %s (uid %d) until %s (%s left)\n", v.User, v.UID, when(v.Expires), left)
			rows := make([][]string, 0, len(v.Sessions))
			for _, s := range v.Sessions {
				rows = append(rows, []string{s.Channel, s.Method, when(s.Started), when(s.Expires)})
			}
			if len(rows) > 0 {
				table("SESSION\tMETHOD\tSTARTED\tENDS", rows)
			}
			printShares(v)
			return nil
		},
	}
}

func newTokenCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Your tokens (list, create, revoke, set-pin, resync, claim) and the operator's hardware pool (import, pool, assign, unassign, send)"}
	list := &cobra.Command{
		Use: "list", Short: "List your soft tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			toks, err := g.client().ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(toks))
			for _, t := range toks {
				last := "never"
				if !t.LastUsed.IsZero() {
					last = when(t.LastUsed)
				}
				rows = append(rows, []string{t.ID, tokenKind(t), when(t.Created), last})
			}
			table("ID\tKIND\tCREATED\tLAST USED", rows)
			return nil
		},
	}
	create := &cobra.Command{
		Use: "create", Short: "Create a soft token (< PIN of the new token)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pin, err := readNew(newSecretReader(), "PIN of the new token")
			if err != nil {
				return err
			}
			t, err := g.client().CreateToken(cmd.Context(), pin)
			if err != nil {
				return err
			}
			return showToken(t)
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token: its codes stop working at once (the operator: any hardware token, by serial)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("token %s revoked\n", args[0])
			return nil
		},
	}
	setPIN := &cobra.Command{
		Use: "set-pin ID", Short: "Give a soft token a new PIN (< new PIN)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pin, err := readNew(newSecretReader(), "new PIN")
			if err != nil {
				return err
			}
			if err := g.client().SetPIN(cmd.Context(), args[0], pin); err != nil {
				return err
			}
			fmt.Printf("token %s has a new PIN\n", args[0])
			return nil
		},
	}
	c.AddCommand(list, create, revoke, setPIN)
	addHardwareCmds(c, g)
	return c
}

func newICECmd(g *globals) *cobra.Command {
	var user, qfile string
	c := &cobra.Command{
		Use:   "ice --user ID --questions-file F",
		Short: "Get an 8-digit ICE emergency code with your password and security answers (< password)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" || qfile == "" {
				return usagef("ice needs --user and --questions-file")
			}
			qs, err := readQuestions(qfile)
			if err != nil {
				return err
			}
			req := control.ICERequest{User: user}
			for i, q := range qs {
				req.Answers[i] = q.Answer
			}
			if req.Password, err = readOne(newSecretReader(), "password"); err != nil {
				return err
			}
			res, err := g.client().RequestICE(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Printf("emergency code: %s\n", res.Code)
			fmt.Printf("valid once, until %s: dsh login --emergency-code CODE\n", when(res.Expires))
			return nil
		},
	}
	c.Flags().StringVar(&user, "user", "", "your user ID")
	c.Flags().StringVar(&qfile, "questions-file", "", "file of three lines question<TAB>answer, in the order set at enrolment")
	return c
}

func newPasswdCmd(g *globals) *cobra.Command {
	var code string
	c := &cobra.Command{
		Use:   "passwd --code NNNNNN",
		Short: "Change your password (< current password, PIN, new password)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code == "" {
				return usagef("passwd needs --code (a code of your soft token)")
			}
			r := newSecretReader()
			req := control.PasswdRequest{Code: code}
			var err error
			if req.Current, err = readOne(r, "current password"); err != nil {
				return err
			}
			if req.PIN, err = readOne(r, "PIN"); err != nil {
				return err
			}
			if req.New, err = readNew(r, "new password"); err != nil {
				return err
			}
			if err := g.client().ChangePassword(cmd.Context(), req); err != nil {
				return err
			}
			fmt.Println("password changed")
			return nil
		},
	}
	c.Flags().StringVar(&code, "code", "", "the 6-digit code of your soft token")
	return c
}

func newQuestionsCmd(g *globals) *cobra.Command {
	var code, file string
	c := &cobra.Command{
		Use:   "questions --code NNNNNN --questions-file F",
		Short: "Replace your three security questions (< password, PIN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code == "" || file == "" {
				return usagef("questions needs --code (a code of your soft token) and --questions-file")
			}
			qs, err := readQuestions(file)
			if err != nil {
				return err
			}
			r := newSecretReader()
			req := control.QuestionsRequest{Code: code, Questions: qs}
			if req.Password, err = readOne(r, "password"); err != nil {
				return err
			}
			if req.PIN, err = readOne(r, "PIN"); err != nil {
				return err
			}
			if err := g.client().SetQuestions(cmd.Context(), req); err != nil {
				return err
			}
			fmt.Println("security questions replaced")
			return nil
		},
	}
	c.Flags().StringVar(&code, "code", "", "the 6-digit code of your soft token")
	c.Flags().StringVar(&file, "questions-file", "", "three lines \"question<TAB>answer\"")
	return c
}
