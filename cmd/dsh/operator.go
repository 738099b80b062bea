package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
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
