package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/audit"
	"github.com/blvm/blvm-sandbox/audit/bpf"
	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
	liveproc "github.com/blvm/blvm-sandbox/audit/live"
)

func newInspectCommand(stdout io.Writer) *cobra.Command {
	var f explainFlags
	var pid int
	cmd := &cobra.Command{
		Use:   "inspect --pid PID [flags] MODULE_DIR|MODULE_TOML",
		Short: "Check a running module's confinement against its policy, from the host (root)",
		Long: `inspect compiles the module's policy as explain does, reads the seccomp
filters the kernel holds for process PID (ptrace PTRACE_SECCOMP_GET_FILTER),
checks every syscall number and argument boundary against the policy as
explain --verify does, then compares the process's credentials,
capabilities, no_new_privs, seccomp mode, namespaces, rlimits and cgroup
limits with the policy, one row per control.

Exit codes: 0 every check holds; 1 a mismatch; 2 bad input.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || pid <= 0 {
				return badInput(errors.New("inspect needs --pid PID and one MODULE_DIR or MODULE_TOML"))
			}
			c, err := compileTarget(&f, cmd, args[0])
			if err != nil {
				return err
			}
			progs, err := kernelfilter.Read(pid)
			if err != nil {
				return err
			}
			names := kernelfilter.Names(progs)
			var stack bpf.Stack
			for i, p := range progs {
				prog, err := bpf.New(names[i], p)
				if err != nil {
					return err
				}
				stack = append(stack, prog)
			}
			r, err := audit.Verify(c.policy, stack)
			if err != nil {
				return err
			}
			rows, err := liveproc.Inspect(pid, c.policy, "/proc", "/sys/fs/cgroup")
			if err != nil {
				return err
			}
			out, done := escapedOutput(stdout, "text")
			defer done()
			fmt.Fprintf(out, "%s %s, pid %d: seccomp filters checked against the policy\n", c.policy.Module.Name, c.policy.Module.Version, pid)
			if err := r.WriteText(out, 50); err != nil {
				return err
			}
			bad := len(r.Mismatches)
			fmt.Fprintf(out, "\n%-40s %-8s %-24s %s\n", "CONTROL", "VERDICT", "POLICY", "PROCESS")
			for _, row := range rows {
				verdict := "ok"
				if !row.OK {
					verdict, bad = "MISMATCH", bad+1
				}
				fmt.Fprintf(out, "%-40s %-8s %-24s %s\n", row.Control, verdict, row.Want, row.Got)
			}
			if bad > 0 {
				return refused(fmt.Errorf("pid %d: %d checks where the running module is not confined as its policy says", pid, bad))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&pid, "pid", 0, "host pid of the running module (blvm-sandbox ps shows it)")
	fl.StringVar(&f.nodeConfig, "node-config", "", "operator node config (TOML) the daemon runs with; built-in defaults when empty")
	fl.IntVar(&f.landlockABI, "landlock-abi", -1, "Landlock ABI to compile for (default: this kernel's)")
	fl.StringVar(&f.arch, "arch", "", "architecture to compile for (default: this machine's)")
	fl.IntVar(&f.cgroupVersion, "cgroup-version", 0, "cgroup version to compile for, 1 or 2 (default: this host's)")
	return cmd
}
