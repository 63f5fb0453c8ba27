package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/runtime"
)

type doctorFlags struct {
	config string
	shim   string
	pid    int
	json   bool
}

func newDoctorCommand(stdout io.Writer) *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host for running modules: cgroups, namespaces, Landlock, seccomp, quotas",
		Long: `doctor prints the host matrix, one row per fact with a verdict: ok, warn
(works with less than the design asks) or fail (the daemon refuses to run,
or a promised limit would not hold). It exits 1 when any row fails.

The cgroup delegation row checks this process's cgroup as if it were the
daemon; --pid checks a running daemon's (systemctl show -p MainPID blvm-sandbox).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDoctor(stdout, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "operator node config (default: the built-in defaults)")
	fl.StringVar(&f.shim, "shim", "", "the static Landlock shim (default: beside this binary, else in "+runtime.ShimLibexec+" from it)")
	fl.IntVar(&f.pid, "pid", 0, "check the cgroup of this daemon pid (default: this process)")
	fl.BoolVar(&f.json, "json", false, "print JSON")
	return cmd
}

// doctorReport is doctor's JSON output.
type doctorReport struct {
	Verdict runtime.Verdict `json:"verdict"`
	Checks  []runtime.Check `json:"checks"`
}

func runDoctor(stdout io.Writer, f *doctorFlags) error {
	cfg := nodeconfig.Default()
	if f.config != "" {
		var err error
		if cfg, err = nodeconfig.Parse(f.config); err != nil {
			return badInput(err)
		}
	}
	checks := runtime.Doctor(runtime.DoctorOptions{
		Root: cfg.Paths.Root, MinLandlockABI: cfg.Sandbox.MinLandlockABI, Shim: f.shim, Pid: f.pid,
	})
	worst := runtime.Worst(checks)
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doctorReport{Verdict: worst, Checks: checks}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Value, strings.ToUpper(string(c.Verdict)), c.Detail)
		}
		tw.Flush()
	}
	if worst == runtime.VerdictFail {
		return &exitError{code: exitRefused, err: fmt.Errorf("doctor: this host fails %d check(s)", countFails(checks))}
	}
	return nil
}

func countFails(checks []runtime.Check) int {
	n := 0
	for _, c := range checks {
		if c.Verdict == runtime.VerdictFail {
			n++
		}
	}
	return n
}
