package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/registry/market"
	"github.com/blvm/blvm-sandbox/verify"
)

type verifyFlags struct {
	nodeConfig     string
	root           string
	allowDowngrade bool
}

func newVerifyCommand(stdout io.Writer) *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify --node-config FILE MODULE_DIR",
		Short: "Check a module against the operator's pinned keys; print one line per check",
		Long: `verify runs every check a load runs: the manifest, each signature and
whether it counts, the threshold, the capabilities against the operator's
ceiling, version compatibility with the node, rollback, the shipped
config.toml against [config], and the binary's hash (sealing it into the
store). The binary in MODULE_DIR is re-hashed even when the store already
holds its entry, so the report says what is on disk. It exits 0 when all
pass, 1 otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(stdout, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeConfig, "node-config", "", "operator node config holding [trust] (required)")
	fl.StringVar(&f.root, "root", "", "runtime root for the store and high-water marks (default: [paths] root)")
	fl.BoolVar(&f.allowDowngrade, "allow-downgrade", false, "accept a version below the recorded high-water mark")
	return cmd
}

func runVerify(out io.Writer, f *verifyFlags, dir string) error {
	cfg, root, err := operatorConfig("verify", f.nodeConfig, f.root)
	if err != nil {
		return err
	}
	// Names and details quote the manifest and config: escape them.
	esc := termesc.NewWriter(out)
	defer esc.Flush()
	out = esc
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	line := func(ok bool, check, detail string) {
		mark := "ok"
		if !ok {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, check, detail)
	}
	path := filepath.Join(dir, manifest.FileName)
	m, err := manifest.Parse(path)
	if err != nil {
		for _, l := range strings.Split(err.Error(), "\n") {
			line(false, "manifest", l)
		}
		tw.Flush()
		return refused(fmt.Errorf("verify: manifest: %w", err))
	}
	line(true, "manifest", fmt.Sprintf("%s %s (%s)", m.Name, m.Version, path))

	failed := 0
	cat, err := capabilities.Default()
	if err != nil {
		return err
	}
	if set, err := cat.Resolve(m, cfg); err != nil {
		for _, l := range strings.Split(err.Error(), "\n") {
			line(false, "capabilities", l)
		}
		failed++
	} else {
		line(true, "capabilities", fmt.Sprintf("granted %s (ceiling %s)", orNone(set.Names()), cfg.Capabilities.MaxTier))
	}
	if m.Payment != nil && m.Payment.Required {
		if err := market.CheckPaymentSignature(m); err != nil {
			line(false, "payment", err.Error())
			failed++
		} else {
			line(true, "payment", fmt.Sprintf("payment_signature by the key of author_payment_code over %s %s at %d sats", m.Name, m.Version, m.Payment.PriceSats))
		}
	}
	// As at load, a key the schema does not name is a warning, not a FAIL.
	for _, w := range loader.SchemaWarnings(m, cfg, cfg.ModuleSettings(m.Name).Config) {
		fmt.Fprintf(tw, "warn\tconfig\t%s\n", w)
	}

	res, err := verify.Verify(dir, m, cfg, verify.Options{Root: root, Now: time.Now(), AllowDowngrade: f.allowDowngrade, CheckSource: true})
	if res != nil {
		// A signature that does not count is reported but refuses nothing
		// on its own: the threshold line decides.
		for _, c := range res.Checks {
			line(c.OK, c.Name, c.Detail)
		}
	}
	tw.Flush()
	if err != nil {
		return refused(fmt.Errorf("verify: %s %s refused: %w", m.Name, m.Version, err))
	}
	if failed > 0 {
		return refused(fmt.Errorf("verify: %s %s refused: %d check(s) failed", m.Name, m.Version, failed))
	}
	fmt.Fprintf(out, "verified %s %s: store entry %s\n", m.Name, m.Version, res.StorePath)
	return nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, ", ")
}
