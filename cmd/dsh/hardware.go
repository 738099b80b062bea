package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"dsh/control"
)

// addHardwareCmds adds the hardware-token and e-mail-token subcommands to `dsh token`.
func addHardwareCmds(tok *cobra.Command, g *globals) {
	var format, keyFile string
	imp := &cobra.Command{
		Use:   "import FILE [--format pskc|csv] [--key-file F]",
		Short: "Import hardware tokens from a vendor's seed file into the pool (operator)",
		Long: "Import hardware OATH tokens from a vendor's seed file: PSKC (RFC 6030), plain or encrypted with a\n" +
			"pre-shared AES key (given in hex on the first line of --key-file, never as a flag), or a CSV of\n" +
			"serial, seed (hex or base32) and optionally type, digits, step and counter. Serials the pool\n" +
			"knows already are skipped.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read seed file: %w", err)
			}
			defer clear(data)
			var key []byte
			if keyFile != "" {
				k, err := readSecretFile(keyFile)
				if err != nil {
					return err
				}
				defer clear(k)
				key = make([]byte, hex.DecodedLen(len(k)))
				defer clear(key)
				if _, err := hex.Decode(key, []byte(strings.TrimSpace(string(k)))); err != nil {
					return usagef("--key-file: the key must be hex (32, 48 or 64 hex digits)")
				}
			}
			res, err := g.client().ImportTokens(cmd.Context(), format, filepath.Base(args[0]), data, key)
			if err != nil {
				return err
			}
			fmt.Printf("imported %d hardware tokens into the pool", len(res.Imported))
			if len(res.Skipped) > 0 {
				fmt.Printf("; %d already known, skipped: %s", len(res.Skipped), strings.Join(res.Skipped, " "))
			}
			fmt.Println()
			return nil
		},
	}
	imp.Flags().StringVar(&format, "format", "", "pskc or csv (default: guessed from the file)")
	imp.Flags().StringVar(&keyFile, "key-file", "", "file whose first line is the pre-shared key of an encrypted PSKC file, in hex")

	pool := &cobra.Command{
		Use: "pool", Short: "List the hardware tokens of the pool, free, assigned and revoked (operator)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			hs, err := g.client().ListHardware(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(hs))
			for _, h := range hs {
				state := h.State
				if h.State == "assigned" && !h.PINSet {
					state += " (no PIN yet)"
				}
				last := "never"
				if !h.LastUsed.IsZero() {
					last = when(h.LastUsed)
				}
				rows = append(rows, []string{h.Serial, hardwareKind(h.Kind, h.Digits, h.Period, h.Algorithm), state, dash(h.User), last})
			}
			table("SERIAL\tTYPE\tSTATE\tUSER\tLAST USED", rows)
			return nil
		},
	}
	var user string
	assign := &cobra.Command{
		Use: "assign SERIAL --user ID", Short: "Give a hardware token of the pool to a user, who then sets its PIN (operator)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usagef("assign needs --user")
			}
			if err := g.client().AssignHardware(cmd.Context(), args[0], user); err != nil {
				return err
			}
			fmt.Printf("hardware token %s assigned to %s; it works once they set its PIN (dsh token set-pin %s)\n", args[0], user, args[0])
			return nil
		},
	}
	assign.Flags().StringVar(&user, "user", "", "the user who receives the token")
	unassign := &cobra.Command{
		Use: "unassign SERIAL", Short: "Take a hardware token in working order back into the pool (operator)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().UnassignHardware(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("hardware token %s is back in the pool\n", args[0])
			return nil
		},
	}
	var code1, code2 string
	resync := &cobra.Command{
		Use:   "resync ID --code1 N --code2 N",
		Short: "Resynchronise a hardware token from two consecutive codes (yours, or any as the operator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if code1 == "" || code2 == "" {
				return usagef("resync needs --code1 and --code2: two codes the token shows one after the other")
			}
			if err := g.client().ResyncToken(cmd.Context(), control.ResyncRequest{ID: args[0], Code1: code1, Code2: code2}); err != nil {
				return err
			}
			fmt.Printf("token %s resynchronised\n", args[0])
			return nil
		},
	}
	resync.Flags().StringVar(&code1, "code1", "", "a code of the token")
	resync.Flags().StringVar(&code2, "code2", "", "the code the token shows next")
	send := &cobra.Command{
		Use: "send USER", Short: "E-mail a user a one-time link to a new soft token (operator)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.client().SendTokenLink(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Printf("a one-time link to a new soft token is queued for %s <%s>, valid until %s\n", s.User, s.To, when(s.Expires))
			return nil
		},
	}
	var linkCode, claimUser string
	claim := &cobra.Command{
		Use:   "claim --code CODE",
		Short: "Make the soft token of an e-mailed link (< password, PIN of the new token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if linkCode == "" {
				return usagef("claim needs --code (the code in the e-mailed link)")
			}
			r := newSecretReader()
			req := control.ClaimRequest{User: claimUser, Code: linkCode}
			var err error
			if req.Password, err = readOne(r, "password"); err != nil {
				return err
			}
			if req.PIN, err = readNew(r, "PIN of the new token"); err != nil {
				return err
			}
			t, err := g.client().ClaimTokenLink(cmd.Context(), req)
			if err != nil {
				return err
			}
			return showToken(t)
		},
	}
	claim.Flags().StringVar(&linkCode, "code", "", "the code of the e-mailed link")
	claim.Flags().StringVar(&claimUser, "user", "", "your user ID (must be the user of your uid)")
	tok.AddCommand(imp, pool, assign, unassign, resync, send, claim)
}

// hardwareKind describes how a token makes codes.
func hardwareKind(kind string, digits, period int, algo string) string {
	d := strings.ToUpper(kind) + " " + strconv.Itoa(digits) + " digits"
	if kind == "totp" && period > 0 {
		d += ", " + strconv.Itoa(period) + " s"
	}
	if algo != "" && algo != "SHA1" {
		d += ", " + algo
	}
	return d
}

// tokenKind describes a token of the user for dsh token list: "totp" for a soft token, as
// before hardware tokens; "hotp, hardware, 8 digits" and the like for a device.
func tokenKind(t control.TokenView) string {
	if !t.Hardware {
		return t.Kind
	}
	d := t.Kind + ", hardware, " + strconv.Itoa(t.Digits) + " digits"
	if t.Kind == "totp" && t.Period > 0 {
		d += ", " + strconv.Itoa(t.Period) + " s"
	}
	if !t.PINSet {
		d += " (no PIN yet)"
	}
	return d
}
