package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	xbpf "golang.org/x/net/bpf"

	"github.com/blvm/blvm-sandbox/audit"
	"github.com/blvm/blvm-sandbox/audit/bpf"
	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime"
	"github.com/blvm/blvm-sandbox/verify"
)

type explainFlags struct {
	nodeConfig    string
	format        string
	threshold     float64
	landlockABI   int
	arch          string
	cgroupVersion int
	storage       string
	diff          bool
	verify        bool
	record        bool
}

func newExplainCommand(stdout io.Writer) *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain [flags] MODULE_DIR|MODULE_TOML\n  blvm-sandbox explain --diff OLD NEW",
		Short: "Show every rule a module would get, and why, before it runs",
		Long: `explain compiles a module's policy without running anything and prints one
row per control (value, verdict, reason, source), the capability -> rule tree,
the hub ACL, what verification will require and what this kernel degrades.

A capability the operator's ceiling or denies would refuse is compiled
anyway, so the whole policy the module asks for is shown, and marked
"would be refused" with what would allow it.

Exit codes: 0 fine; 1 the load would be refused by the operator's ceiling
or denies, the exposure score is above --threshold, --diff found a wider
policy (a capability crossing the ceiling included), or --verify found a
filter that does not say what the policy says; 2 input that cannot be read
or parsed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.diff {
				if len(args) != 2 {
					return badInput(fmt.Errorf("explain --diff needs OLD and NEW, got %d arguments", len(args)))
				}
				return runDiff(stdout, &f, cmd, args[0], args[1])
			}
			if len(args) != 1 {
				return badInput(fmt.Errorf("explain needs one MODULE_DIR or MODULE_TOML, got %d arguments", len(args)))
			}
			if f.verify {
				return runFilterVerify(stdout, &f, cmd, args[0])
			}
			if f.record {
				return runExplainRecord(stdout, &f, cmd, args[0])
			}
			return runExplain(stdout, &f, cmd, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeConfig, "node-config", "", "operator node config (TOML); built-in defaults when empty")
	fl.StringVar(&f.format, "format", "text", "output: text, json, oci or bpf")
	fl.Float64Var(&f.threshold, "threshold", -1, "exit 1 when the exposure score is above this (0.0-10.0)")
	fl.IntVar(&f.landlockABI, "landlock-abi", -1, "Landlock ABI to compile for (default: this kernel's)")
	fl.StringVar(&f.arch, "arch", "", "architecture to compile for (default: this machine's)")
	fl.IntVar(&f.cgroupVersion, "cgroup-version", 0, "cgroup version to compile for, 1 or 2 (default: this host's)")
	fl.StringVar(&f.storage, "storage-backend", "", "disk quota backend to compile for: project, image or none (default: what this host would use)")
	fl.BoolVar(&f.diff, "diff", false, "compare the policies of OLD and NEW")
	fl.BoolVar(&f.record, "record", false, "show the seccomp rows blvm-sandbox record relaxes, normal against record mode (text or json)")
	fl.BoolVar(&f.verify, "verify", false, "load the seccomp filters the runtime would load (in a throwaway child, as root) and check every syscall number and argument boundary against the policy; exit 1 on any mismatch")
	return cmd
}

// compiled is one module's manifest and policy, ready to render.
type compiled struct {
	manifest *manifest.Manifest
	config   *nodeconfig.Config
	policy   *policy.Policy
	refusals manifest.Problems // problems only the verify step enforces, then the operator's
	// operator lists the capabilities compiled in although the operator's
	// ceiling or denies refuse them.
	operator []capabilities.Refusal
	// notExec is why the entry point could not run in the container, or nil.
	notExec error
}

// operatorRefused is the exit-1 answer for a policy the operator's
// settings would refuse, or nil.
func (c *compiled) operatorRefused() error {
	if c.notExec != nil {
		return errors.Join(refused(c.notExec), c.capabilitiesRefused())
	}
	return c.capabilitiesRefused()
}

func (c *compiled) capabilitiesRefused() error {
	if len(c.operator) == 0 {
		return nil
	}
	why := make([]string, len(c.operator))
	for i, r := range c.operator {
		why[i] = r.Capability.Name + ": " + r.Why
	}
	return refused(fmt.Errorf("%s %s would be refused: %s", c.manifest.Name, c.manifest.Version, strings.Join(why, "; ")))
}

// escapedOutput wraps out for format, so that nothing a manifest or config
// wrote reaches the terminal raw; done writes what is held back.
func escapedOutput(out io.Writer, format string) (w io.Writer, done func() error) {
	e := termesc.NewWriter(out)
	if format == "json" || format == "oci" {
		e = termesc.NewJSONWriter(out)
	}
	return e, e.Flush
}

func runExplain(out io.Writer, f *explainFlags, cmd *cobra.Command, target string) error {
	c, err := compileTarget(f, cmd, target)
	if err != nil {
		return err
	}
	out, done := escapedOutput(out, f.format)
	defer done()
	switch f.format {
	case "text", "json":
		r := policy.NewReport(c.policy, c.manifest, c.config, c.refusals)
		for _, o := range c.operator {
			if r.Refused == nil {
				r.Refused = map[string]string{}
			}
			r.Refused[o.Capability.Name] = fmt.Sprintf("%s (allow with %s)", o.Why, o.Allow)
		}
		if f.format == "json" {
			err = r.WriteJSON(out)
		} else {
			err = r.WriteText(out)
		}
		if err != nil {
			return err
		}
		if f.threshold >= 0 && r.Score > f.threshold {
			return errors.Join(c.operatorRefused(), refused(fmt.Errorf("exposure score %.2f is above the threshold %.2f", r.Score, f.threshold)))
		}
		return c.operatorRefused()
	case "oci":
		spec, err := c.policy.OCISpec(policy.DefaultHostPaths(c.config.Paths.Root, c.policy))
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(spec); err != nil {
			return err
		}
		return c.operatorRefused()
	case "bpf":
		if err := writeFilters(out, c.policy); err != nil {
			return err
		}
		return c.operatorRefused()
	default:
		return badInput(fmt.Errorf("--format: unknown format %q (text, json, oci or bpf)", f.format))
	}
}

func runDiff(out io.Writer, f *explainFlags, cmd *cobra.Command, oldPath, newPath string) error {
	oldC, err := compileTarget(f, cmd, oldPath)
	if err != nil {
		return err
	}
	newC, err := compileTarget(f, cmd, newPath)
	if err != nil {
		return err
	}
	d := diffReport{Delta: policy.Diff(oldC.policy, newC.policy), CrossesCeiling: crossings(oldC, newC)}
	out, done := escapedOutput(out, f.format)
	defer done()
	if f.format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(d)
	} else {
		err = d.WriteText(out)
	}
	if err != nil {
		return err
	}
	if len(d.Wider) > 0 || len(d.CrossesCeiling) > 0 {
		return refused(fmt.Errorf("the new policy is wider than the old (%d changes, %d refused by the operator)", len(d.Wider), len(d.CrossesCeiling)))
	}
	return nil
}

// diffReport is the policy delta plus what the operator's settings say of
// it: a capability the new version asks for that the ceiling or a deny
// refuses, and the old version did not, is a widening the load would stop.
type diffReport struct {
	policy.Delta
	CrossesCeiling []string `json:"crosses_ceiling,omitempty"`
}

func (d diffReport) WriteText(w io.Writer) error {
	if err := d.Delta.WriteText(w); err != nil {
		return err
	}
	if len(d.CrossesCeiling) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe new policy crosses the operator's ceiling (%d capabilities would be refused):\n", len(d.CrossesCeiling))
	for _, c := range d.CrossesCeiling {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// crossings lists the capabilities the operator refuses in newC but not in
// oldC.
func crossings(oldC, newC *compiled) []string {
	before := map[string]bool{}
	for _, r := range oldC.operator {
		before[r.Capability.Name] = true
	}
	var out []string
	for _, r := range newC.operator {
		if !before[r.Capability.Name] {
			out = append(out, fmt.Sprintf("capability %s would be refused: %s (allow with %s)", r.Capability.Name, r.Why, r.Allow))
		}
	}
	return out
}

// compileTarget parses the node config and the manifest, resolves the
// capabilities and compiles the policy. Any problem outside the fields the
// verify step owns is bad input.
func compileTarget(f *explainFlags, cmd *cobra.Command, target string) (*compiled, error) {
	cfg := nodeconfig.Default()
	if f.nodeConfig != "" {
		var err error
		if cfg, err = nodeconfig.Parse(f.nodeConfig); err != nil {
			return nil, badInput(err)
		}
	}
	path := target
	if st, err := os.Stat(target); err == nil && st.IsDir() {
		path = filepath.Join(target, manifest.FileName)
	}
	m, err := manifest.Parse(path)
	var refusals manifest.Problems
	if err != nil {
		problems, ok := err.(manifest.Problems)
		if !ok || m == nil {
			return nil, badInput(err)
		}
		// Fields only the verify step enforces do not stop explain: the
		// report shows the policy and says the load would be refused.
		var fatal manifest.Problems
		refusals, fatal = problems.Split("binary", "config", "signatures")
		if len(fatal) > 0 {
			return nil, badInput(fatal)
		}
	}
	// The same check the load makes: a typo in [modules.<name>] is named.
	for _, w := range loader.SchemaWarnings(m, cfg, cfg.ModuleSettings(m.Name).Config) {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", termesc.String(w))
	}
	cat, err := capabilities.Default()
	if err != nil {
		return nil, err
	}
	// Compiled as requested: the operator's refusals are marked, not fatal.
	set, operator, err := cat.ResolveAsRequested(m, cfg)
	if err != nil {
		return nil, badInput(err)
	}
	for _, r := range operator {
		p := r.Problem
		p.Message = fmt.Sprintf("capability %q would be refused: %s (allow with %s)", r.Capability.Name, r.Why, r.Allow)
		refusals = append(refusals, p)
	}
	host, err := hostFacts(f, cmd, cfg.Paths.Root)
	if err != nil {
		return nil, err
	}
	// The binary, when the dir has one, is read as the load would: one that
	// cannot run in the container is a refusal (exit 1), shown with its fix.
	var notExec error
	if path != target {
		_, notExec = verify.CheckEntryPoint(target, m.EntryPoint, host.Arch)
		var ne *verify.NotExecutableError
		if errors.As(notExec, &ne) {
			refusals = append(refusals, manifest.Problem{File: manifest.FileName, Line: m.Lines["entry_point"], Field: "entry_point", Message: fmt.Sprintf("%q %s: %s", ne.EntryPoint, ne.Problem, ne.Fix)})
		} else if notExec != nil {
			return nil, notExec
		}
	}
	p, err := policy.Compile(m, set, cfg, host)
	if err != nil {
		return nil, err
	}
	return &compiled{manifest: m, config: cfg, policy: p, refusals: refusals, operator: operator, notExec: notExec}, nil
}

// hostFacts detects this machine's facts, then applies any flag overrides,
// so explain also works offline for another machine.
func hostFacts(f *explainFlags, cmd *cobra.Command, root string) (policy.Host, error) {
	h, err := runtime.DetectHost("/sys/fs/cgroup", root)
	offline := f.arch != "" && f.landlockABI >= 0 && f.cgroupVersion != 0
	if err != nil && !offline {
		return h, fmt.Errorf("detect host facts (pass --arch, --landlock-abi and --cgroup-version to skip): %w", err)
	}
	if f.arch != "" {
		h.Arch = f.arch
	}
	if cmd.Flags().Changed("landlock-abi") {
		if f.landlockABI < 0 {
			return h, badInput(fmt.Errorf("--landlock-abi: %d is negative", f.landlockABI))
		}
		h.LandlockABI = f.landlockABI
	}
	if f.cgroupVersion != 0 {
		if f.cgroupVersion != 1 && f.cgroupVersion != 2 {
			return h, badInput(fmt.Errorf("--cgroup-version: %d is not 1 or 2", f.cgroupVersion))
		}
		h.CgroupVersion = f.cgroupVersion
	}
	switch f.storage {
	case "":
	case "none":
		h.StorageBackend = policy.StorageNone
	case policy.StorageProject, policy.StorageImage:
		h.StorageBackend = f.storage
	default:
		return h, badInput(fmt.Errorf("--storage-backend: %q is not project, image or none", f.storage))
	}
	return h, nil
}

// loadFilters loads the filters the runtime would load for p, in a
// throwaway child, and reads them back in load order.
func loadFilters(p *policy.Policy) (bpf.Stack, error) {
	cfg, err := p.SeccompConfig()
	if err != nil {
		return nil, err
	}
	l, err := kernelfilter.Load(cfg)
	if err != nil {
		return nil, err
	}
	var s bpf.Stack
	for i, insns := range l.Programs {
		prog, err := bpf.New(l.Names[i], insns)
		if err != nil {
			return nil, err
		}
		s = append(s, prog)
	}
	return s, nil
}

// writeFilters lists every filter the module will run under, in load
// order, instruction by instruction, then libseccomp's readable listing of
// the first one.
func writeFilters(out io.Writer, p *policy.Policy) error {
	s, err := loadFilters(p)
	if err != nil {
		return err
	}
	var b strings.Builder
	for i, f := range s {
		fmt.Fprintf(&b, "# filter %d of %d, loaded by %s: %d instructions\n", i+1, len(s), f.Name, len(f.Insns))
		for j, in := range f.Insns {
			fmt.Fprintf(&b, "%4d: %-40s # %#04x %3d %3d 0x%08x\n", j, xbpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}.Disassemble(), in.Code, in.Jt, in.Jf, in.K)
		}
		b.WriteString("\n")
	}
	b.WriteString("# filter 1 as libseccomp's pseudo filter code (the same rules, unoptimised)\n")
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	return p.BPF(out)
}

// runFilterVerify checks the filters the runtime would load against the policy.
func runFilterVerify(out io.Writer, f *explainFlags, cmd *cobra.Command, target string) error {
	c, err := compileTarget(f, cmd, target)
	if err != nil {
		return err
	}
	s, err := loadFilters(c.policy)
	if err != nil {
		return err
	}
	r, err := audit.Verify(c.policy, s)
	if err != nil {
		return err
	}
	out, done := escapedOutput(out, "text")
	defer done()
	fmt.Fprintf(out, "%s %s: seccomp filters checked against the policy\n", c.policy.Module.Name, c.policy.Module.Version)
	if err := r.WriteText(out, 50); err != nil {
		return err
	}
	if len(r.Mismatches) > 0 {
		return refused(fmt.Errorf("%d cases where the loaded filters do not do what the policy says", len(r.Mismatches)))
	}
	return nil
}
