// Command blvm-sandbox is the operator's and auditor's entry point: it
// explains, verifies and runs node modules. This package only wires the
// library packages together; no decision is made here.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// Exit codes shared by every subcommand.
const (
	exitOK       = 0
	exitRefused  = 1 // the check ran and said no (threshold, wider diff, failed verification)
	exitBadInput = 2 // the input could not be read or is invalid
)

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func badInput(err error) error { return &exitError{code: exitBadInput, err: err} }
func refused(err error) error  { return &exitError{code: exitRefused, err: err} }

func main() {
	// explain --verify and --format bpf re-execute this binary to load the
	// runtime's filters in a throwaway child: that child stops here.
	kernelfilter.ChildMain()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI with args and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var me moduleExit
	if errors.As(err, &me) {
		return me.code // the module's own status; its reason is already printed
	}
	// Errors quote manifests, configs and the daemon's answers.
	fmt.Fprintf(stderr, "%s\n", termesc.Text([]byte(err.Error())))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitBadInput // cobra's own usage errors
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "blvm-sandbox",
		Short:         "Verify, confine and run Bitcoin node modules",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newExplainCommand(stdout))
	root.AddCommand(newInspectCommand(stdout))
	root.AddCommand(newKeysCommand(stdout))
	root.AddCommand(newSignCommand(stdout, stderr))
	root.AddCommand(newSignPaymentCommand(stdout, stderr))
	root.AddCommand(newNewCommand(stdout))
	root.AddCommand(newVerifyCommand(stdout))
	root.AddCommand(newRunCommand(stdout, stderr))
	root.AddCommand(newRecordCommand(stdout, stderr))
	root.AddCommand(newBundleCommand(stdout, stderr))
	root.AddCommand(newUpCommand(stdout, stderr))
	root.AddCommand(newInstallCommand(stdout, stderr))
	root.AddCommand(newUninstallCommand(stdout))
	root.AddCommand(newReloadCommand(stdout, stderr))
	root.AddCommand(newDoctorCommand(stdout))
	addOperatorCommands(root, stdout, stderr)
	addRegistryCommands(root, stdout, stderr)
	root.AddCommand(newVersionCommand(stdout))
	setVersionFlag(root)
	addCompletions(root)
	return root
}

// operatorConfig parses the node config a command requires (trust comes
// from the operator's pinned keys, never from the module) and returns the
// runtime root: rootFlag when set, else the config's [paths] root.
func operatorConfig(command, path, rootFlag string) (*nodeconfig.Config, string, error) {
	if path == "" {
		return nil, "", badInput(fmt.Errorf("%s: --node-config FILE is required: trust comes from the operator's pinned keys", command))
	}
	cfg, err := nodeconfig.Parse(path)
	if err != nil {
		return nil, "", badInput(err)
	}
	if rootFlag != "" {
		return cfg, rootFlag, nil
	}
	return cfg, cfg.Paths.Root, nil
}
