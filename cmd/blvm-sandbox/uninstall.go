package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/manager"
)

func newUninstallCommand(stdout io.Writer) *cobra.Command {
	var nodeConfig string
	var purge bool
	cmd := &cobra.Command{
		Use:   "uninstall --node-config FILE [--purge] NAME",
		Short: "Remove an installed module; its data stays unless --purge",
		Long: `uninstall removes [paths] modules_dir/<name>. The module must not be loaded
(unload it first). Its data dir, and the disk image that holds its quota,
stay for a reinstall unless --purge is given. The version high-water mark
always stays, so an uninstall never allows a downgrade.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := operatorConfig("uninstall", nodeConfig, "")
			if err != nil {
				return err
			}
			removed, err := manager.Uninstall(args[0], cfg, manager.UninstallOptions{Purge: purge})
			for _, p := range removed {
				fmt.Fprintln(stdout, "removed", p)
			}
			if err != nil {
				return refused(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&nodeConfig, "node-config", "", "operator node config (required)")
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the module's data and its disk image")
	return cmd
}
