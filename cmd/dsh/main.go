// Command dsh is the one binary of dsh: `dsh serve` runs the daemon, `dsh init` creates a
// store, and every other subcommand is a thin client of the daemon's control socket. The
// command line never takes a secret as a flag: argv is visible to every user of the host.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"dsh/control"
	"dsh/internal/version"
)

// Exit codes. Scripts can tell a mistake in the command line from a refusal by the daemon.
const (
	exitOK    = 0 // the command did what it was asked
	exitUsage = 1 // the command line was wrong: unknown flag, missing argument, bad value
	exitError = 2 // the daemon or the store refused or failed; the message says why
)

// usageError marks a mistake in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globals are the flags every subcommand accepts.
type globals struct {
	socket string
}

func (g *globals) client() *control.Client { return control.NewClient(g.socket) }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "dsh: %s\n", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "dsh",
		Short:         "dsh: the storage and access layer of a Data Safe Haven",
		Version:       version.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	def := control.DefaultSocket
	if env := os.Getenv("DSH_SOCKET"); env != "" {
		def = env
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", def, "control socket of the daemon (env DSH_SOCKET)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newInitCmd(),
		newServeCmd(g),
		newWatchdogCmd(),
		newOperatorCmd(g),
		newAuditCmd(g),
		newUserCmd(g),
		newProjectCmd(g),
		newShareCmd(g),
		newEnrolCmd(g),
		newLoginCmd(g),
		newLogoutCmd(g),
		newStatusCmd(g),
		newTokenCmd(g),
		newICECmd(g),
		newPasswdCmd(g),
		newQuestionsCmd(g),
		newUploadCmd(g),
		newArrivalsCmd(g),
		newSMBCmd(g),
		newQuarantineCmd(g),
		newEgressCmd(g),
		newMailCmd(g),
	)
	markUsage(root)
	return root
}

// markUsage turns cobra's argument-count errors into usage errors, for every subcommand.
func markUsage(c *cobra.Command) {
	if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	} else if c.HasSubCommands() {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, args []string) error {
			return usagef("%s needs a subcommand; see %s --help", cmd.CommandPath(), cmd.CommandPath())
		}
	}
	for _, sub := range c.Commands() {
		markUsage(sub)
	}
}

// oneLine keeps an error to one line, as the CLI promises.
func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
