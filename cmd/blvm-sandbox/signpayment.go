package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/registry/market"
	"github.com/blvm/blvm-sandbox/verify"
)

func newSignPaymentCommand(stdout, stderr io.Writer) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "sign-payment --key FILE MODULE_DIR",
		Short: "Sign a paid module's payment terms as its author (before the maintainers sign)",
		Long: `sign-payment sets [payment] payment_signature in MODULE_DIR/module.toml to
the author's signature over the payment terms (module, version, price and
both payment codes; docs/signing.md), by --key, which must hold the key of
author_payment_code. The maintainers' signatures cover payment_signature,
so any made before are dropped and named: the maintainers sign after.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSignPayment(stdout, stderr, key, args[0])
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the author's private key file (the key of author_payment_code), as `keys generate` writes it")
	return cmd
}

func runSignPayment(stdout, stderr io.Writer, key, dir string) error {
	if key == "" {
		return badInput(errors.New("sign-payment: --key FILE is required"))
	}
	priv, err := verify.ReadKeyFile(key)
	if err != nil {
		return badInput(err)
	}
	path := filepath.Join(dir, manifest.FileName)
	src, err := safefile.ReadFile(dir, manifest.FileName, safefile.MaxTOML)
	if err != nil {
		return badInput(fmt.Errorf("sign-payment: %w", err))
	}
	signed, err := market.SignTermsSource(path, src, priv)
	if err != nil {
		return badInput(fmt.Errorf("sign-payment: %w; %s left unchanged", err, path))
	}
	for _, d := range signed.Dropped {
		fmt.Fprintf(stderr, "dropped %s's signature: the maintainers sign after the author\n", termesc.String(d))
	}
	if err := writeFileAtomic(path, signed.Source); err != nil {
		return err
	}
	m := signed.Manifest
	split := manifest.SplitPayment(m.Payment.PriceSats)
	fmt.Fprintf(stdout, "signed the payment terms of %s %s: %d sats (author %d, marketplace %d, node %d); now the maintainers sign\n",
		m.Name, m.Version, m.Payment.PriceSats, split.Author, split.Marketplace, split.Node)
	return nil
}
