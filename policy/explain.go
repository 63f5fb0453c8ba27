package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// Report is what `blvm-sandbox explain` shows: the compiled policy, its
// controls and score, and what loading the module will still require.
type Report struct {
	Policy       *Policy          `json:"policy"`
	Controls     []Control        `json:"controls"`
	Score        float64          `json:"exposure_score"`
	ScoreLabel   string           `json:"exposure_label"`
	Verification Verification     `json:"verification"`
	Payment      *PaymentSplit    `json:"payment,omitempty"`
	Dependencies []Dependency     `json:"dependencies,omitempty"`
	Refusals     []string         `json:"load_refusals,omitempty"`
	Config       *nodeconfig.Node `json:"node"`

	// Refused marks the capabilities compiled in as requested although the
	// operator's settings refuse them: name -> why, and how to allow it.
	Refused map[string]string `json:"refused_capabilities,omitempty"`
}

// Verification is what the verify step will demand of this module.
type Verification struct {
	Threshold   string   `json:"threshold"`
	PinnedKeys  []string `json:"pinned_keys"` // "name 02ab…"
	BinaryHash  string   `json:"binary_hash"`
	BinarySize  int64    `json:"binary_size"`
	SignedBy    []string `json:"signed_by"` // names the manifest claims; only pinned keys count
	ConfigError string   `json:"config_error,omitempty"`
}

// PaymentSplit is the marketplace split of a paid module's price.
type PaymentSplit struct {
	Required    bool  `json:"required"`
	PriceSats   int64 `json:"price_sats"`
	Author      int64 `json:"author_sats"`
	Marketplace int64 `json:"marketplace_sats"`
	Node        int64 `json:"node_sats"`
}

// Dependency is one declared dependency and whether it can block a load.
type Dependency struct {
	Name       string `json:"name"`
	Constraint string `json:"constraint"`
	Optional   bool   `json:"optional"`
	// NodeMismatch is set for the blvm-node pseudo-dependency when this
	// node's version does not satisfy the constraint.
	NodeMismatch string `json:"node_mismatch,omitempty"`
}

// NewReport assembles the report for p. refusals are manifest problems in
// fields that only the verify step checks (binary, signatures): the policy
// is still shown, and the report says the load would be refused.
func NewReport(p *Policy, m *manifest.Manifest, op *nodeconfig.Config, refusals manifest.Problems) *Report {
	r := &Report{Policy: p, Controls: Controls(p), Score: Score(p), Config: &op.Node}
	r.ScoreLabel = ScoreLabel(r.Score)
	for _, pr := range refusals {
		r.Refusals = append(r.Refusals, pr.String())
	}
	mm, nn, keys, err := op.ThresholdFor(m.Name)
	if err != nil {
		r.Verification.ConfigError = err.Error()
	} else {
		r.Verification.Threshold = fmt.Sprintf("%d-of-%d", mm, nn)
	}
	for _, k := range keys {
		r.Verification.PinnedKeys = append(r.Verification.PinnedKeys, k.Name+" "+k.PublicKey)
	}
	if m.Binary != nil {
		r.Verification.BinaryHash, r.Verification.BinarySize = m.Binary.Hash, m.Binary.Size
	}
	if m.Signatures != nil {
		for _, s := range m.Signatures.Maintainers {
			r.Verification.SignedBy = append(r.Verification.SignedBy, s.Name)
		}
	}
	if m.Payment != nil {
		split := manifest.SplitPayment(m.Payment.PriceSats)
		r.Payment = &PaymentSplit{Required: m.Payment.Required, PriceSats: m.Payment.PriceSats,
			Author: split.Author, Marketplace: split.Marketplace, Node: split.Node}
	}
	for _, d := range sortedKeys(m.Dependencies) {
		dep := Dependency{Name: d, Constraint: m.Dependencies[d]}
		if d == manifest.NodeDependency {
			dep.NodeMismatch = nodeMismatch(op.Node.Version, dep.Constraint)
		}
		r.Dependencies = append(r.Dependencies, dep)
	}
	for _, d := range sortedKeys(m.OptionalDependencies) {
		r.Dependencies = append(r.Dependencies, Dependency{Name: d, Constraint: m.OptionalDependencies[d], Optional: true})
	}
	return r
}

// WriteJSON writes the report as indented, stable JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: one row per control, then the
// details an auditor checks line by line.
func (r *Report) WriteText(w io.Writer) error {
	p := r.Policy
	var b strings.Builder
	fmt.Fprintf(&b, "Module %s %s (entry point %s)\n", p.Module.Name, p.Module.Version, p.Module.EntryPoint)
	fmt.Fprintf(&b, "Host: %s, Landlock ABI %d, cgroup v%d\n\n", p.Host.Arch, p.Host.LandlockABI, p.Host.CgroupVersion)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL\tVALUE\tVERDICT\tEXPOSURE\tWHY\tSOURCE")
	for _, c := range r.Controls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\n", c.Name, c.Value, verdictMark(c.Verdict), c.Exposure, c.Why, c.Source)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nExposure score: %.2f %s (0.0 fully confined .. 10.0 fully exposed; lower is better)\n", r.Score, r.ScoreLabel)

	section(&b, "Capabilities and the rules they add")
	if len(p.Capabilities) == 0 {
		b.WriteString("  (none: the module may only greet the hub, log and answer pings)\n")
	}
	for _, c := range p.Capabilities {
		fmt.Fprintf(&b, "  %s  [tier %s, danger %s]  %s\n", c.Name, c.Tier, c.Danger, c.Description)
		if why := r.Refused[c.Name]; why != "" {
			fmt.Fprintf(&b, "    WOULD BE REFUSED: %s\n", why)
		}
		src := CapabilitySource(c.Name)
		for _, m := range p.Hub.Methods {
			if hasSource(m.Sources, src) {
				fmt.Fprintf(&b, "    hub method  %s\n", m.Name)
			}
		}
		for _, e := range p.Hub.Events {
			if hasSource(e.Sources, src) {
				fmt.Fprintf(&b, "    event       %s\n", e.Name)
			}
		}
		for _, rule := range p.Seccomp.Rules {
			if hasSource(rule.Sources, src) {
				fmt.Fprintf(&b, "    syscall     %s\n", ruleString(rule))
			}
		}
		for _, l := range p.Landlock.Rules {
			if l.Why.Source == src {
				fmt.Fprintf(&b, "    landlock    %s %s\n", l.Path, strings.Join(l.Access, ","))
			}
		}
	}

	section(&b, fmt.Sprintf("Seccomp (%s only; anything unlisted: %s)", p.Seccomp.Arch, actionString(p.Seccomp.DefaultAction, p.Seccomp.DefaultErrno)))
	writeFamilies(&b, p)
	b.WriteString("  Other rules\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SYSCALL\tACTION\tARGS\tSOURCE\tWHY")
	for _, rule := range p.Seccomp.Rules {
		if rule.Family != "" {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", rule.Syscall, actionString(rule.Action, rule.Errno), argsString(rule.Args),
			sourcesString(rule.Sources), rule.Sources[0].Reason)
	}
	tw.Flush()

	section(&b, fmt.Sprintf("Landlock (minimum ABI %d, this host %d)", p.Landlock.MinABI, p.Host.LandlockABI))
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, l := range p.Landlock.Rules {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", l.Path, strings.Join(l.Access, ","), l.Why.Source, l.Why.Reason)
	}
	for _, s := range p.Landlock.Scopes {
		fmt.Fprintf(tw, "  scope %s\t(ABI %d)\t%s\t%s\n", s.Name, s.MinABI, s.Why.Source, s.Why.Reason)
	}
	tw.Flush()
	b.WriteString("  Everything else on the filesystem is denied, including exec of any other file.\n")

	section(&b, "Mounts (nothing else is visible)")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, m := range p.Mounts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", m.Destination, m.Source, strings.Join(m.Options, ","), m.Why.Source, m.Why.Reason)
	}
	tw.Flush()

	section(&b, "Limits")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  memory\t%d bytes\t%s\t%s\n", p.Cgroup.MemoryBytes.Value, p.Cgroup.MemoryBytes.Why.Source, p.Cgroup.MemoryBytes.Why.Reason)
	fmt.Fprintf(tw, "  pids\t%d\t%s\t%s\n", p.Cgroup.Pids.Value, p.Cgroup.Pids.Why.Source, p.Cgroup.Pids.Why.Reason)
	fmt.Fprintf(tw, "  cpu\t%d/%d us\t%s\t%s\n", p.Cgroup.CPUQuotaMicros.Value, p.Cgroup.CPUPeriodMicros, p.Cgroup.CPUQuotaMicros.Why.Source, p.Cgroup.CPUQuotaMicros.Why.Reason)
	for _, rl := range p.Rlimits {
		fmt.Fprintf(tw, "  %s\t%d/%d\t%s\t%s\n", rl.Type, rl.Soft, rl.Hard, rl.Why.Source, rl.Why.Reason)
	}
	st := p.Storage
	fmt.Fprintf(tw, "  disk /data\t%d bytes, %d inodes\t%s\t%s\n", st.Bytes.Value, st.Inodes.Value, st.Bytes.Why.Source, st.Bytes.Why.Reason)
	fmt.Fprintf(tw, "  disk backend\t%s\t%s\t%s\n", storageBackendString(st), st.Why.Source, st.Why.Reason)
	tw.Flush()

	section(&b, "Environment (everything else is cleared)")
	for _, e := range p.Env {
		fmt.Fprintf(&b, "  %s=%s\n", e.Name, e.Value)
	}

	section(&b, "Hub access, in plain English")
	var methods, events []string
	for _, m := range p.Hub.Methods {
		methods = append(methods, m.Name)
	}
	for _, e := range p.Hub.Events {
		events = append(events, e.Name)
	}
	fmt.Fprintf(&b, "  It may call: %s.\n", strings.Join(methods, ", "))
	if len(events) == 0 {
		b.WriteString("  It may subscribe to no events.\n")
	} else {
		fmt.Fprintf(&b, "  It may subscribe to: %s.\n", strings.Join(events, ", "))
	}
	fmt.Fprintf(&b, "  It may publish events only under %q, and never node or lifecycle events.\n", p.Hub.PublishNamespace+".")
	b.WriteString("  Any other request is answered PERMISSION_DENIED; the connection stays up.\n")

	section(&b, "Verification will require")
	v := r.Verification
	if v.ConfigError != "" {
		fmt.Fprintf(&b, "  trust config: %s\n", v.ConfigError)
	} else {
		fmt.Fprintf(&b, "  %s signatures by distinct keys the operator pinned (keys in the manifest are hints only)\n", v.Threshold)
	}
	for _, k := range v.PinnedKeys {
		fmt.Fprintf(&b, "    pinned %s\n", k)
	}
	if v.BinaryHash != "" {
		fmt.Fprintf(&b, "  the binary to hash to %s, %d bytes\n", v.BinaryHash, v.BinarySize)
	} else {
		b.WriteString("  a [binary] hash and size, which this manifest lacks\n")
	}
	if len(v.SignedBy) > 0 {
		fmt.Fprintf(&b, "  signatures present from: %s\n", strings.Join(v.SignedBy, ", "))
	}
	for _, d := range r.Dependencies {
		kind := "required"
		if d.Optional {
			kind = "optional, never blocks the load"
		}
		fmt.Fprintf(&b, "  dependency %s %s (%s)\n", d.Name, d.Constraint, kind)
		if d.NodeMismatch != "" {
			fmt.Fprintf(&b, "    %s\n", d.NodeMismatch)
		}
	}
	if len(r.Refusals) > 0 {
		b.WriteString("  As written, the load would be refused:\n")
		for _, s := range r.Refusals {
			fmt.Fprintf(&b, "    %s\n", s)
		}
	}

	section(&b, fmt.Sprintf("What degrades on this kernel (Landlock ABI %d)", p.Host.LandlockABI))
	if len(p.Landlock.Degraded) == 0 {
		b.WriteString("  nothing\n")
	}
	for _, d := range p.Landlock.Degraded {
		fmt.Fprintf(&b, "  %s (needs ABI %d): %s\n", d.Feature, d.NeedsABI, d.Effect)
	}
	if p.Host.LandlockABI < p.Landlock.MinABI {
		fmt.Fprintf(&b, "  ABI %d is below the required %d: the runtime will refuse to start this module here.\n", p.Host.LandlockABI, p.Landlock.MinABI)
	}

	if r.Payment != nil {
		section(&b, "Payment")
		pay := r.Payment
		fmt.Fprintf(&b, "  required %t, price %d sats: author %d, marketplace %d, node %d\n",
			pay.Required, pay.PriceSats, pay.Author, pay.Marketplace, pay.Node)
		b.WriteString("  (the author's share rounds up, the marketplace's down, the node takes the rest: the three always sum to the price)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFamilies prints one row per family of sibling syscalls: its members,
// what the filter does with them and the family's reason, once. A member
// treated otherwise gets a row of its own with the reason it differs.
func writeFamilies(b *strings.Builder, p *Policy) {
	b.WriteString("  Syscall families (one decision per family; a member marked * is treated otherwise, and says why)\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FAMILY\tMEMBERS\tTREATMENT\tSOURCE\tWHY")
	for _, f := range p.Seccomp.Families {
		sources := familySources(p, f.Name)
		var order []string
		alike := map[string][]string{}
		for _, m := range f.Members {
			if m.Differs != "" {
				continue
			}
			if _, seen := alike[m.Treatment]; !seen {
				order = append(order, m.Treatment)
			}
			alike[m.Treatment] = append(alike[m.Treatment], memberString(m))
		}
		name := f.Name
		for _, t := range order {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", name, strings.Join(alike[t], " "), t, sources, f.Reason)
			name = ""
		}
		for _, m := range f.Members {
			if m.Differs != "" {
				fmt.Fprintf(tw, "  %s\t%s*\t%s\t\t%s\n", name, memberString(m), m.Treatment, m.Differs)
				name = ""
			}
		}
	}
	tw.Flush()
}

// familySources joins the sources of every rule in the family, in order.
func familySources(p *Policy, family string) string {
	var out []string
	seen := map[string]bool{}
	for _, r := range p.Seccomp.Rules {
		if r.Family != family {
			continue
		}
		for _, s := range r.Sources {
			if !seen[s.Source] {
				seen[s.Source] = true
				out = append(out, s.Source)
			}
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, "+")
}

func memberString(m FamilyMember) string {
	if len(m.ArgIndex) == 0 {
		return m.Syscall
	}
	idx := make([]string, len(m.ArgIndex))
	for i, n := range m.ArgIndex {
		idx[i] = fmt.Sprintf("arg%d", n)
	}
	return m.Syscall + "(" + strings.Join(idx, ",") + ")"
}

// nodeMismatch says why this node's version fails a module's blvm-node
// constraint, or "" when it satisfies it.
func nodeMismatch(nodeVersion, constraint string) string {
	v, err := manifest.ParseVersion(nodeVersion)
	if err != nil {
		return fmt.Sprintf("this node's version %q is not semver: %v", nodeVersion, err)
	}
	c, err := manifest.ParseConstraint(constraint)
	if err != nil {
		return fmt.Sprintf("constraint %q does not parse: %v", constraint, err)
	}
	if !c.Check(v) {
		return fmt.Sprintf("this node is %s, which does not satisfy blvm-node %s: the load would be refused", nodeVersion, constraint)
	}
	return ""
}

func storageBackendString(s Storage) string {
	if !s.Enforced() {
		return "none (NOT ENFORCED)"
	}
	return s.Backend
}

func section(b *strings.Builder, title string) { fmt.Fprintf(b, "\n%s\n", title) }

func verdictMark(v string) string {
	switch v {
	case VerdictOK:
		return "ok"
	case VerdictWeak:
		return "WEAK"
	default:
		return "EXPOSED"
	}
}

func hasSource(ps []Provenance, src string) bool {
	for _, p := range ps {
		if p.Source == src {
			return true
		}
	}
	return false
}

func sourcesString(ps []Provenance) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Source
	}
	return strings.Join(out, "+")
}

func ruleString(r SyscallRule) string {
	s := r.Syscall + " " + actionString(r.Action, r.Errno)
	if a := argsString(r.Args); a != "-" {
		s += " if " + a
	}
	return s
}

func argsString(args []Arg) string {
	if len(args) == 0 {
		return "-"
	}
	return condString(args, true)
}

// condString writes argument conditions; withIndex false leaves the
// argument positions out, so sibling syscalls compare equal.
func condString(args []Arg, withIndex bool) string {
	out := make([]string, len(args))
	for i, a := range args {
		arg := "arg"
		if withIndex {
			arg = fmt.Sprintf("arg%d", a.Index)
		}
		switch a.Op {
		case "masked_eq":
			out[i] = fmt.Sprintf("%s&%#x==%#x", arg, a.Mask, a.Value)
		case "masked_ne":
			out[i] = fmt.Sprintf("%s&%#x!=%#x", arg, a.Mask, a.Value)
		case "ne":
			out[i] = fmt.Sprintf("%s!=%#x", arg, a.Value)
		default:
			out[i] = fmt.Sprintf("%s==%#x", arg, a.Value)
		}
	}
	return strings.Join(out, " && ")
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
