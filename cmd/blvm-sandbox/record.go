package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/record"
	"github.com/blvm/blvm-sandbox/runtime"
)

type recordFlags struct {
	run      runFlags
	duration time.Duration
	write    string
	format   string
}

// recordSampleEvery is how often the run's resources are read.
const recordSampleEvery = 50 * time.Millisecond

func newRecordCommand(stdout, stderr io.Writer) *cobra.Command {
	var f recordFlags
	cmd := &cobra.Command{
		Use:   "record --node-config FILE [--duration D] [--write FILE] MODULE_DIR",
		Short: "Run a module once with observers and suggest the manifest it needs (development only)",
		Long: `record runs the module as run does (verified, in its container with its
namespaces, Landlock, cgroups and hub socket) for --duration, with two
observers: the hub logs every method and event type the module called or asked
for, granted or denied, and a seccomp agent sees every syscall the normal
filter would not simply allow. A syscall outside the allowlist, which the
normal filter answers with ENOSYS, is logged and let run; one a rule refuses
(the deny list, an argument test) is logged and answered as that rule does.
Resources (peak memory and pids, CPU time, /data and /tmp use) are sampled.

The report maps what was seen to capabilities and suggests module.toml in
those terms, and limits with headroom. Nothing is changed: --write FILE writes
the suggestion to FILE, which must not exist. A relaxed filter is for
development: record prints a banner, never shares a root with a daemon, and
the runtime starts a record-mode policy only with its recorder listening.
"explain --record" shows the rows that change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return recordModule(stdout, stderr, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.run.nodeConfig, "node-config", "", "operator node config (required)")
	fl.StringVar(&f.run.root, "root", "", "runtime root (default: [paths] root)")
	fl.StringVar(&f.run.shim, "shim", "", "the static Landlock shim (default: as for run)")
	fl.DurationVar(&f.duration, "duration", 30*time.Second, "stop the module after this long (it may exit before)")
	fl.BoolVar(&f.run.allowDowngrade, "allow-downgrade", false, "accept a version below the recorded high-water mark")
	fl.StringVar(&f.write, "write", "", "also write the suggestion, as TOML, to this new file (never the manifest)")
	fl.StringVar(&f.format, "format", "text", "report on stdout: text or json")
	return cmd
}

func recordModule(stdout, stderr io.Writer, f *recordFlags, dir string) error {
	if f.duration <= 0 {
		return badInput(fmt.Errorf("record: --duration: %s is not positive", f.duration))
	}
	if f.format != "text" && f.format != "json" {
		return badInput(fmt.Errorf("record: --format: unknown format %q (text or json)", f.format))
	}
	if f.write != "" {
		if err := checkSuggestionPath(f.write, dir); err != nil {
			return badInput(err)
		}
	}
	m, err := manifest.Parse(filepath.Join(dir, manifest.FileName))
	if err != nil {
		return badInput(err)
	}
	fmt.Fprintf(stderr, "*** blvm-sandbox record: DEVELOPMENT MODE for %s. Its seccomp filter is relaxed: syscalls outside its allowlist run\n"+
		"*** (and are logged) instead of failing with ENOSYS. Everything else is as under run. Never run a module like this for real.\n", termesc.String(m.Name))
	cat, err := capabilities.Default()
	if err != nil {
		return err
	}
	var (
		hubLog   = record.NewHubLog(m.Name)
		sysLog   = record.NewSyscallLog()
		normal   *policy.Policy
		opCfg    *nodeconfig.Config
		agent    *record.Agent
		sampler  *record.Sampler
		started  time.Time
		rep      record.Report
		reported bool
	)
	f.run.timeout = f.duration
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer func() {
		if agent != nil {
			agent.Close()
		}
	}()
	watch := &runWatch{
		hub: hubLog,
		policy: func(p *policy.Policy, cfg *nodeconfig.Config, root string) (*policy.Policy, error) {
			dec, err := record.NewDecider(p.Seccomp)
			if err != nil {
				return nil, err
			}
			rp, err := policy.Record(p, record.Loadable(p.Seccomp.Arch, dec.Native()))
			if err != nil {
				return nil, err
			}
			name := p.Module.Name
			agent, err = record.Listen(runtime.Layout{Root: root}.RecordAgent(name), runtime.ContainerID(name),
				path.Join(policy.ModuleDir, p.Module.EntryPoint), policy.ShimPath, dec, sysLog)
			if err != nil {
				return nil, err
			}
			go agent.Serve(ctx)
			normal, opCfg = p, cfg
			return rp, nil
		},
		started: func(sup *runtime.Supervisor, name string) {
			started = time.Now()
			var dataBase uint64
			if u, err := sup.Disk(name); err == nil {
				dataBase = u.BytesUsed
			}
			sampler = record.StartSampler(ctx, recordSampleEvery, func() (record.Sample, error) {
				return sampleModule(sup, name, dataBase)
			})
		},
		ended: func(exit runtime.ExitReason) {
			res := sampler.Stop()
			dur := time.Since(started)
			// Every process under the filter is gone: the agent sees the
			// hang-up and has logged all it will.
			waitAgent(agent, stderr)
			name := normal.Module.Name
			disk, _ := opCfg.EffectiveDisk(name)
			rep = record.Build(record.Run{
				Module: name, Version: normal.Module.Version, Declared: granted(normal), Policy: normal,
				Limits: opCfg.EffectiveLimits(name), DiskBytes: disk,
				Methods: hubLog.Methods(), Events: hubLog.Events(), Syscalls: sysLog.List(),
				Resources: res, Duration: dur, Exit: exit.String(),
			}, record.NewGrants(cat, opCfg.Provided))
			if n := hubLog.Unlisted(); n > 0 {
				fmt.Fprintf(stderr, "warning: %d hub decisions on names past the first %d of their kind are not in the report\n", n, record.MaxHubNames)
			}
			reported = true
		},
	}
	err = runModule(stdout, stderr, &f.run, dir, watch)
	var me moduleExit
	if err != nil && !errors.As(err, &me) {
		return err
	}
	if !reported {
		return fmt.Errorf("record: %s: the run ended without a report", m.Name)
	}
	out, done := escapedOutput(stdout, f.format)
	if f.format == "json" {
		err = rep.WriteJSON(out)
	} else {
		err = rep.WriteText(out)
	}
	if err := errors.Join(err, done()); err != nil {
		return err
	}
	if f.write != "" {
		var b bytes.Buffer
		if err := rep.WriteSuggestion(&b); err != nil {
			return err
		}
		if err := atomicfile.WriteNew(f.write, &b, 0o644); err != nil {
			return fmt.Errorf("record: --write %s: %w", f.write, err)
		}
		fmt.Fprintf(stderr, "suggestion written to %s (module.toml unchanged)\n", f.write)
	}
	return nil
}

// granted lists the verified policy's capabilities: what the module
// declared, since a load with any capability refused never runs.
func granted(p *policy.Policy) []string {
	out := make([]string, len(p.Capabilities))
	for i, c := range p.Capabilities {
		out[i] = c.Name
	}
	return out
}

// checkSuggestionPath refuses a --write target that is the manifest or
// already exists: record never changes a file it did not create.
func checkSuggestionPath(path, dir string) error {
	target, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("record: --write %s: %w", path, err)
	}
	mf, err := filepath.Abs(filepath.Join(dir, manifest.FileName))
	if err != nil {
		return fmt.Errorf("record: --write %s: %w", path, err)
	}
	if target == mf {
		return fmt.Errorf("record: --write %s: that is the module's manifest; record never changes it", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("record: --write %s: the file exists; record writes only a new file", path)
	}
	return nil
}

// waitAgent waits a moment for the agent to see the filter's hang-up, so
// that the last notifications are logged before the report is built.
func waitAgent(a *record.Agent, stderr io.Writer) {
	done := make(chan error, 1)
	go func() { done <- a.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintln(stderr, "warning: seccomp agent:", err)
		}
	case <-time.After(2 * time.Second):
		// A process of the module outlived it; Close ends the agent.
	}
}

// sampleModule reads the module's cgroup figures, its /data use above the
// start, and its /tmp use (a tmpfs in its mount namespace, read through its
// pid's root).
func sampleModule(sup *runtime.Supervisor, name string, dataBase uint64) (record.Sample, error) {
	st, err := sup.Stats(name)
	if err != nil {
		return record.Sample{}, err
	}
	s := record.Sample{MemoryBytes: st.MemoryBytes, MemoryPeak: st.MemoryMaxBytes, Pids: st.Pids, CPUNanos: st.CPUNanos}
	if u, err := sup.Disk(name); err == nil && u.BytesUsed > dataBase {
		s.DataBytes = u.BytesUsed - dataBase
	}
	if status, ok := sup.Status(name); ok && status.Pid > 0 {
		var fs unix.Statfs_t
		if err := unix.Statfs(filepath.Join("/proc", strconv.Itoa(status.Pid), "root", policy.TmpDir), &fs); err == nil {
			s.TmpBytes = (fs.Blocks - fs.Bfree) * uint64(fs.Bsize)
		}
	}
	return s, nil
}

// runExplainRecord shows the rows of the module's seccomp filter that record
// mode changes: what the normal filter does, and what the record one does.
func runExplainRecord(out io.Writer, f *explainFlags, cmd *cobra.Command, target string) error {
	c, err := compileTarget(f, cmd, target)
	if err != nil {
		return err
	}
	dec, err := record.NewDecider(c.policy.Seccomp)
	if err != nil {
		return err
	}
	rp, err := policy.Record(c.policy, record.Loadable(c.policy.Seccomp.Arch, dec.Native()))
	if err != nil {
		return err
	}
	changes := policy.RecordChanges(c.policy, rp)
	out, done := escapedOutput(out, f.format)
	defer done()
	switch f.format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Module  string                `json:"module"`
			Version string                `json:"version"`
			Default string                `json:"default"`
			Changes []policy.RecordChange `json:"changes"`
		}{c.policy.Module.Name, c.policy.Module.Version, rp.Seccomp.Default.Reason, changes})
	case "text":
		return writeRecordChanges(out, c.policy, rp, changes)
	}
	return badInput(fmt.Errorf("--format: explain --record shows text or json, not %q", f.format))
}

func writeRecordChanges(w io.Writer, normal, rec *policy.Policy, changes []policy.RecordChange) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s under blvm-sandbox record (development only): %d seccomp rows change; nothing else does.\n",
		normal.Module.Name, normal.Module.Version, len(changes))
	fmt.Fprintf(&b, "Default: %s\n\n", rec.Seccomp.Default.Reason)
	var relaxed, answered []policy.RecordChange
	for _, c := range changes {
		if hasRule(normal, c.Syscall) {
			answered = append(answered, c)
		} else {
			relaxed = append(relaxed, c)
		}
	}
	fmt.Fprintf(&b, "SENT TO THE RECORDER, WHICH ANSWERS AS THE NORMAL FILTER DOES AND LOGS REFUSALS (%d)\n", len(answered))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  SYSCALL\tNORMAL FILTER\n")
	for _, c := range answered {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Syscall, c.Normal)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nRELAXED: OUTSIDE THE ALLOWLIST, LOGGED AND LET RUN; THE NORMAL FILTER ANSWERS %s (%d)\n", normal.Seccomp.DefaultErrno, len(relaxed))
	names := make([]string, len(relaxed))
	for i, c := range relaxed {
		names[i] = c.Syscall
	}
	b.WriteString(wrapWords(names, 76, "  "))
	_, err := io.WriteString(w, b.String())
	return err
}

func hasRule(p *policy.Policy, syscall string) bool {
	for _, r := range p.Seccomp.Rules {
		if r.Syscall == syscall {
			return true
		}
	}
	return false
}

// wrapWords lays words out in lines of at most width characters.
func wrapWords(words []string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, w := range words {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	if len(line) > len(indent) {
		b.WriteString(line + "\n")
	}
	return b.String()
}
