package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"dsh/daemon"
	"dsh/mail"
)

// mailOpts are dsh serve's flags for the SMTP relay. The relay's password is read from a
// file, never a flag: argv is visible to every user of the host.
type mailOpts struct {
	relay, from, user, passFile, tlsMode, caFile, portalURL string
}

func addMailFlags(c *cobra.Command) *mailOpts {
	m := &mailOpts{}
	f := c.Flags()
	f.StringVar(&m.relay, "smtp-relay", "", "send e-mail (notices, enrolment codes, token links) through this SMTP relay, HOST[:PORT]")
	f.StringVar(&m.from, "smtp-from", "", "the sender address of dsh's e-mail, e.g. \"DSH <dsh@haven.example.ac.uk>\"")
	f.StringVar(&m.user, "smtp-user", "", "user name for the relay (SMTP AUTH)")
	f.StringVar(&m.passFile, "smtp-password-file", "", "file whose first line is the relay password")
	f.StringVar(&m.tlsMode, "smtp-tls", "starttls", "starttls (port 587), tls (port 465) or none (a relay on this host only)")
	f.StringVar(&m.caFile, "smtp-ca-file", "", "PEM certificates to trust for the relay (default: the system's)")
	f.StringVar(&m.portalURL, "portal-url", "", "the portal's address as users reach it, for links in e-mail (default: the address the portal listens on)")
	return m
}

// config turns the flags into the daemon's MailConfig; nil without --smtp-relay.
func (m *mailOpts) config() (*daemon.MailConfig, error) {
	if m.relay == "" {
		if m.from != "" || m.user != "" || m.passFile != "" || m.caFile != "" {
			return nil, usagef("the --smtp-* flags need --smtp-relay")
		}
		return nil, nil
	}
	if m.from == "" {
		return nil, usagef("--smtp-relay needs --smtp-from")
	}
	r := mail.Relay{Addr: m.relay, TLS: mail.TLSMode(m.tlsMode), Username: m.user, From: m.from}
	if m.passFile != "" {
		if m.user == "" {
			return nil, usagef("--smtp-password-file needs --smtp-user")
		}
		p, err := readSecretFile(m.passFile)
		if err != nil {
			return nil, err
		}
		r.Password = p
	}
	if m.caFile != "" {
		pem, err := os.ReadFile(m.caFile)
		if err != nil {
			return nil, fmt.Errorf("--smtp-ca-file: %w", err)
		}
		r.RootCAs = x509.NewCertPool()
		if !r.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usagef("--smtp-ca-file %s holds no PEM certificate", m.caFile)
		}
	}
	if _, err := mail.NewSMTP(r); err != nil {
		return nil, usageError{err}
	}
	return &daemon.MailConfig{Relay: r, PortalURL: m.portalURL}, nil
}

func newMailCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "mail", Short: "The SMTP relay and the outbox of dsh's e-mail (operator)"}
	status := &cobra.Command{
		Use: "status", Short: "Show the relay, the messages waiting and the last error", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.client().MailStatus(cmd.Context())
			if err != nil {
				return err
			}
			if !s.Configured {
				fmt.Println("mail: no relay configured (dsh serve --smtp-relay)")
				return nil
			}
			fmt.Printf("relay: %s\nwaiting: %d\n", s.Relay, s.Waiting)
			if s.Waiting > 0 {
				fmt.Printf("oldest queued: %s\nnext attempt: %s\n", when(s.Oldest), when(s.NextTry))
			}
			if s.LastError != "" {
				fmt.Printf("last error (%s): %s\n", when(s.LastErrorAt), s.LastError)
			}
			return nil
		},
	}
	var to string
	test := &cobra.Command{
		Use: "test --to ADDRESS", Short: "Queue a test message", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(to) == "" {
				return usagef("test needs --to")
			}
			if err := g.client().MailTest(cmd.Context(), to); err != nil {
				return err
			}
			fmt.Printf("a test message to %s is queued (dsh mail status shows whether it went)\n", to)
			return nil
		},
	}
	test.Flags().StringVar(&to, "to", "", "the address to send to")
	c.AddCommand(status, test)
	return c
}
