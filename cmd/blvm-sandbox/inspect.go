package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/audit"
	"github.com/blvm/blvm-sandbox/audit/bpf"
	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
	liveproc "github.com/blvm/blvm-sandbox/audit/live"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/policy"
)

func newInspectCommand(stdout io.Writer) *cobra.Command {
	var f explainFlags
	var pid int
	cmd := &cobra.Command{
		Use:   "inspect NAME | inspect --pid PID [flags] MODULE_DIR|MODULE_TOML",
		Short: "Check a running module's confinement against its policy, from the host (root)",
		Long: `inspect NAME asks the daemon (--admin-socket) for the policy it started the
module with and its pid. With --pid, inspect instead compiles the module's
policy as explain does. Either way it reads the seccomp
filters the kernel holds for process PID (ptrace PTRACE_SECCOMP_GET_FILTER),
checks every syscall number and argument boundary against the policy as
explain --verify does, then compares the process's credentials,
capabilities, no_new_privs, seccomp mode, namespaces, rlimits and cgroup
limits with the policy, one row per control.

Exit codes: 0 every check holds; 1 a mismatch, or (NAME) the daemon is not
there, said no, or the module is not running; 2 bad input.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return badInput(errors.New("inspect needs one NAME, or --pid PID and one MODULE_DIR or MODULE_TOML"))
			}
			if pid == 0 {
				if _, err := os.Stat(args[0]); err != nil && manifest.ValidModuleName(args[0]) {
					return inspectThroughDaemon(cmd, stdout, args[0])
				}
			}
			if pid <= 0 {
				return badInput(errors.New("inspect needs --pid PID with a MODULE_DIR or MODULE_TOML (or a bare NAME to ask the daemon)"))
			}
			c, err := compileTarget(&f, cmd, args[0])
			if err != nil {
				return err
			}
			return inspectLive(stdout, c.policy, pid)
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

// inspectThroughDaemon asks the daemon for the policy it started module
// name with and its pid, then inspects that process.
func inspectThroughDaemon(cmd *cobra.Command, stdout io.Writer, name string) error {
	o := &operator{socket: defaultAdminSocket(), stdout: stdout, stderr: cmd.ErrOrStderr()}
	if fl := cmd.Flag("admin-socket"); fl != nil {
		o.socket = fl.Value.String()
	}
	ctx, cancel := o.context()
	defer cancel()
	mp, err := o.client().ModulePolicy(ctx, name)
	if err != nil {
		return o.daemonError("inspect "+name, err)
	}
	var p policy.Policy
	if err := json.Unmarshal(mp.Policy, &p); err != nil {
		return fmt.Errorf("inspect %s: the daemon's policy: %w", name, err)
	}
	if mp.Pid == 0 {
		return refused(fmt.Errorf("inspect %s: the module is loaded but not running", name))
	}
	return inspectLive(stdout, &p, mp.Pid)
}

// inspectLive checks process pid's filters and controls against p.
func inspectLive(stdout io.Writer, p *policy.Policy, pid int) error {
	progs, err := kernelfilter.Read(pid)
	if err != nil {
		return err
	}
	names := kernelfilter.Names(progs)
	var stack bpf.Stack
	for i, prog := range progs {
		bp, err := bpf.New(names[i], prog)
		if err != nil {
			return err
		}
		stack = append(stack, bp)
	}
	r, err := audit.Verify(p, stack)
	if err != nil {
		return err
	}
	rows, err := liveproc.Inspect(pid, p, "/proc", "/sys/fs/cgroup")
	if err != nil {
		return err
	}
	out, done := escapedOutput(stdout, "text")
	defer done()
	fmt.Fprintf(out, "%s %s, pid %d: seccomp filters checked against the policy\n", p.Module.Name, p.Module.Version, pid)
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
}
