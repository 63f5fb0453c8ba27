package main

import (
	"encoding/hex"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/verify"
)

func newKeysCommand(stdout io.Writer) *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Manage maintainer signing keys"}
	var out string
	gen := &cobra.Command{
		Use:   "generate --out FILE",
		Short: "Write a new secp256k1 private key (mode 0600); print its public key last",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return badInput(fmt.Errorf("keys generate: --out FILE is required"))
			}
			k, err := verify.GenerateKey()
			if err != nil {
				return err
			}
			if err := verify.WriteKeyFile(out, k); err != nil {
				return badInput(err)
			}
			fmt.Fprintf(stdout, "wrote private key to %s (mode 0600); pin this public key in [trust]:\n", out)
			fmt.Fprintln(stdout, hex.EncodeToString(k.PubKey().SerializeCompressed()))
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "", "file to create; never overwritten")
	keys.AddCommand(gen)
	return keys
}
