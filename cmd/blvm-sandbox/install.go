package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/manager"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/runtime"
)

func newInstallCommand(stdout, stderr io.Writer) *cobra.Command {
	var nodeConfig string
	var allowDowngrade bool
	var reg registryFlags
	cmd := &cobra.Command{
		Use:   "install --node-config FILE MODULE_DIR | NAME[@CONSTRAINT]...",
		Short: "Verify a module, then copy it into the modules dir",
		Long: `install runs every check a load runs (signatures against the pinned keys,
the hash, the config pin, capabilities, versions), then writes the module.toml
and config.toml it verified and the sealed binary into [paths]
modules_dir/<name>. A running daemon picks it
up with 'blvm-sandbox load NAME'.

Exit codes: 0 installed; 1 refused (signatures, hash, config pin,
capabilities, versions, a downgrade); 2 bad input: MODULE_DIR or its
module.toml missing, a module.toml or node config that is not valid.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if isRegistryName(args[0]) {
				reg.nodeConfig, reg.downgrade = nodeConfig, allowDowngrade
				socket, _ := cmd.Flags().GetString("admin-socket")
				return installFromRegistry(args, &reg, stdout, stderr, socket)
			}
			if len(args) != 1 {
				return badInput(fmt.Errorf("install: one MODULE_DIR at a time"))
			}
			cfg, _, err := operatorConfig("install", nodeConfig, "")
			if err != nil {
				return err
			}
			if err := checkModuleDir(args[0]); err != nil {
				return badInput(fmt.Errorf("install: %w", err))
			}
			host, err := runtime.DetectHost("/sys/fs/cgroup", cfg.Paths.Root)
			if err != nil {
				return fmt.Errorf("install: host: %w", err)
			}
			prep, dst, err := manager.Install(args[0], cfg, host, allowDowngrade)
			if err != nil {
				return refused(fmt.Errorf("install: %w", err))
			}
			for _, w := range prep.Warnings {
				fmt.Fprintln(stderr, "warning:", w)
			}
			fmt.Fprintf(stdout, "installed %s %s into %s (capabilities: %s)\n", prep.Manifest.Name, prep.Manifest.Version, dst, orNone(prep.Capabilities.Names()))
			return nil
		},
	}
	cmd.Flags().StringVar(&nodeConfig, "node-config", "", "operator node config (required)")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "replace an installed higher version")
	reg.add(cmd, true) // NAME[@CONSTRAINT]: from [registry] (docs/registry.md)
	return cmd
}

// checkModuleDir tells bad input (exit 2) from a refusal (exit 1) before
// the checks run: dir must be a directory whose module.toml parses, with
// no problem in a field other than those only verification judges
// (binary, config, signatures), as explain tells them apart.
func checkModuleDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("module dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("module dir %s: not a directory", dir)
	}
	m, err := manifest.Parse(filepath.Join(dir, manifest.FileName))
	if err == nil {
		return nil
	}
	problems, ok := err.(manifest.Problems)
	if !ok || m == nil {
		return err
	}
	if _, fatal := problems.Split("binary", "config", "signatures"); len(fatal) > 0 {
		return fatal
	}
	return nil
}
