package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"dsh/vault"
)

func newOperatorCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "operator", Short: "Operator actions: status, unseal, seal (root only)"}
	c.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show whether the store is sealed, the version and the uptime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			state := "unsealed"
			if st.Sealed {
				state = "sealed"
			}
			fmt.Printf("store:   %s\nversion: %s\nuptime:  %s\ndata:    %s\n", state, st.Version,
				(time.Duration(st.UptimeSeconds) * time.Second).String(), st.DataDir)
			return nil
		},
	}, &cobra.Command{
		Use:   "unseal",
		Short: "Unseal the store (passphrase on stdin, or prompted for)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := newSecretReader().read("unseal passphrase")
			if err != nil {
				return err
			}
			defer clear(pass)
			if err := g.client().Unseal(cmd.Context(), pass); err != nil {
				return err
			}
			fmt.Println("store unsealed")
			return nil
		},
	}, &cobra.Command{
		Use:   "rekey",
		Short: "Change the unseal passphrase (< current passphrase, new passphrase); the store must be unsealed",
		Long: fmt.Sprintf("Seal the root key under a new unseal passphrase; the old one stops working. The new one must be at least %d characters long and use at least %d different characters.",
			vault.MinPassphraseLen, vault.MinPassphraseDistinct),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sr := newSecretReader()
			old, err := sr.read("current unseal passphrase")
			if err != nil {
				return err
			}
			defer clear(old)
			next, err := sr.read("new unseal passphrase")
			if err != nil {
				return err
			}
			defer clear(next)
			if sr.tty {
				again, err := sr.read("new unseal passphrase again")
				if err != nil {
					return err
				}
				same := string(again) == string(next)
				clear(again)
				if !same {
					return usagef("the two new passphrases differ")
				}
			}
			if err := vault.CheckPassphrase(next); err != nil {
				return usagef("%v", err)
			}
			if err := g.client().Rekey(cmd.Context(), old, next); err != nil {
				return err
			}
			fmt.Println("unseal passphrase changed; the old one no longer opens the store")
			return nil
		},
	}, &cobra.Command{
		Use:   "seal",
		Short: "Seal the store: wipe every key from the daemon's memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().Seal(cmd.Context()); err != nil {
				return err
			}
			fmt.Println("store sealed")
			return nil
		},
	})
	return c
}
