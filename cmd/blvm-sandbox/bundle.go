package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/runtime"
)

type bundleFlags struct {
	nodeConfig, root, shim, socket, cgroup string
	uidBase                                uint32
}

func newBundleCommand(stdout, stderr io.Writer) *cobra.Command {
	var f bundleFlags
	cmd := &cobra.Command{
		Use:   "bundle --node-config FILE [--socket PATH] MODULE_DIR OUT_DIR",
		Short: "Verify a module and write it as an OCI bundle that runc or crun run unchanged",
		Long: `bundle verifies the module as run does, compiles the same policy the daemon
would, and writes OUT_DIR (which must not exist): config.json, rendered for
the lowest runtime-spec version that expresses the policy; rootfs/ with its
mountpoints; module and landlock-shim, copies of the verified binary and
the shim; private/config.toml, the merged config; data/, the module's data.
The module's hub socket is bound from --socket PATH (default OUT_DIR/hub.sock):
the operator serves the hub there before starting the container, owned by or
open to the module's host uid (--uid-base + 1000). Every directory above
OUT_DIR must be searchable by others.

Exit codes: 0 written; 1 the module was refused; 2 bad input.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeBundle(stdout, stderr, &f, cmd.Flags().Changed("uid-base"), args[0], args[1])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeConfig, "node-config", "", "operator node config (required)")
	fl.StringVar(&f.root, "root", "", "runtime root holding the store and rollback marks (default: [paths] root)")
	fl.StringVar(&f.shim, "shim", "", "the static Landlock shim (default: beside this binary, else in "+runtime.ShimLibexec+")")
	fl.StringVar(&f.socket, "socket", "", "host path of the hub socket to bind into the container (default: OUT_DIR/hub.sock)")
	fl.StringVar(&f.cgroup, "cgroup", "", "cgroupsPath of the container (default: /blvm-bundle/NAME)")
	fl.Uint32Var(&f.uidBase, "uid-base", 0, "host uid container uid 0 maps to (default: [sandbox] uid_base; pick one no daemon module uses)")
	return cmd
}

func writeBundle(stdout, stderr io.Writer, f *bundleFlags, uidSet bool, dir, out string) error {
	cfg, root, err := operatorConfig("bundle", f.nodeConfig, f.root)
	if err != nil {
		return err
	}
	shim, err := shimPath(f.shim)
	if err != nil {
		return badInput(err)
	}
	host, err := runtime.DetectHost("/sys/fs/cgroup", root)
	if err != nil {
		return fmt.Errorf("bundle: host: %w", err)
	}
	prep, err := loader.Prepare(dir, cfg, loader.Options{Root: root, Host: host})
	if err != nil {
		return refused(fmt.Errorf("bundle: %w", err))
	}
	for _, w := range prep.Warnings {
		fmt.Fprintln(stderr, "warning:", termesc.String(w))
	}
	ids := runtime.IDRange{Base: uint32(cfg.Sandbox.UIDBase), Count: runtime.IDsPerModule}
	if uidSet {
		ids.Base = f.uidBase
	}
	if ids.Base == 0 {
		return badInput(errors.New("bundle: --uid-base 0 would map container root to host root"))
	}
	b, err := runtime.WriteOCIBundle(out, prep.Policy, runtime.OCIFiles{
		Binary: prep.Verified.StorePath, Shim: shim, Config: prep.Config,
		Socket: f.socket, CgroupPath: f.cgroup, IDs: ids,
	})
	if err != nil {
		return badInput(fmt.Errorf("bundle: %w", err))
	}
	fmt.Fprintf(stdout, "%s %s: OCI bundle in %s (ociVersion %s)\n", prep.Manifest.Name, prep.Manifest.Version, b.Dir, b.Spec.Version)
	fmt.Fprintf(stdout, "serve the hub on %s for host uid %d, then: runc run -b %s %s\n", b.Socket, ids.HostUID(), b.Dir, prep.Manifest.Name)
	return nil
}
