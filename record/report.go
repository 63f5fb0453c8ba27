package record

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
)

// Grants answers which capabilities grant a hub method, an event type or a
// syscall, from the catalog's own lists (and the operator's provided
// capabilities, which grant modules.Call:<provider>).
type Grants struct {
	caps    map[string]*capabilities.Capability
	methods map[string][]string
	events  map[string][]string
	sys     map[string][]string
}

// NewGrants indexes the catalog and the node config's provided capabilities.
func NewGrants(cat *capabilities.Catalog, provided map[string]nodeconfig.Provided) *Grants {
	g := &Grants{caps: map[string]*capabilities.Capability{}, methods: map[string][]string{}, events: map[string][]string{}, sys: map[string][]string{}}
	add := func(c *capabilities.Capability) {
		g.caps[c.Name] = c
		for _, m := range c.HubMethods {
			g.methods[m] = append(g.methods[m], c.Name)
		}
		for _, e := range c.Events {
			g.events[e] = append(g.events[e], c.Name)
		}
		for _, name := range c.SeccompGroups {
			if grp := cat.Groups[name]; grp != nil {
				for _, sc := range grp.Syscalls {
					g.sys[sc] = append(g.sys[sc], c.Name)
				}
				for _, r := range grp.Rules {
					if r.Action == string(policy.ActAllow) {
						g.sys[r.Syscall] = append(g.sys[r.Syscall], c.Name)
					}
				}
			}
		}
	}
	for _, c := range cat.Capabilities {
		add(c)
	}
	for name, p := range provided {
		add(&capabilities.Capability{Name: name, Description: p.Description, Tier: p.Tier, Danger: p.Danger,
			Status: capabilities.StatusAvailable, Provider: p.Provider, HubMethods: []string{capabilities.ModuleCallMethod(p.Provider)}})
	}
	for _, m := range []map[string][]string{g.methods, g.events, g.sys} {
		for k, v := range m {
			slices.Sort(v)
			m[k] = slices.Compact(v)
		}
	}
	return g
}

// eventGranters: an event type no capability lists is one modules publish,
// which the hub lets any holder of events.Subscribe receive.
func (g *Grants) eventGranters(t string) []string {
	if c := g.events[t]; len(c) > 0 {
		return c
	}
	if ns, _, ok := strings.Cut(t, "."); ok && !reservedNamespace(ns) {
		return g.methods["events.Subscribe"]
	}
	return nil
}

// reservedNamespace mirrors the hub's rule: node, lifecycle, governance and
// hub events are only ever granted by name.
func reservedNamespace(ns string) bool {
	switch ns {
	case "node", "module", "governance", "hub":
		return true
	}
	return false
}

// HubUse is a hub method or event type with the capabilities that grant it.
type HubUse struct {
	Use
	// Capabilities that grant it; empty for what every module gets (Base)
	// and for what nothing grants.
	Capabilities []string `json:"capabilities,omitempty"`
	Base         bool     `json:"base,omitempty"`
}

// SyscallUse is a syscall the normal filter refuses, with the capabilities
// that would allow it (none, in today's catalog).
type SyscallUse struct {
	Syscall
	Capabilities []string `json:"capabilities,omitempty"`
}

// Change is one suggested change of the manifest's capabilities.
type Change struct {
	Capability string `json:"capability"`
	Because    string `json:"because"`
}

// LimitSuggestion is a suggested operator limit for the module.
type LimitSuggestion struct {
	Key       string `json:"key"` // as in the node config: [modules.<name>.limits] or [modules.<name>]
	Current   string `json:"current"`
	Suggested string `json:"suggested"`
	Value     any    `json:"value"` // the suggested value, typed for the config file
	Because   string `json:"because"`
}

// Suggestion is what the run suggests for module.toml and the operator's
// limits. It is never applied.
type Suggestion struct {
	Capabilities []string          `json:"capabilities"` // the suggested list
	Add          []Change          `json:"add,omitempty"`
	Remove       []Change          `json:"remove,omitempty"`
	Notes        []string          `json:"notes,omitempty"` // what no capability can grant, and what the run cannot tell
	Limits       []LimitSuggestion `json:"limits"`
}

// Empty reports whether the capabilities should stay as declared.
func (s Suggestion) Empty() bool { return len(s.Add) == 0 && len(s.Remove) == 0 }

// Report is everything one recorded run saw.
type Report struct {
	Module   string        `json:"module"`
	Version  string        `json:"version"`
	Duration time.Duration `json:"duration_ns"`
	Exit     string        `json:"exit"`
	Declared []string      `json:"declared"`
	Methods  []HubUse      `json:"methods"`
	Events   []HubUse      `json:"events"`
	Syscalls []SyscallUse  `json:"syscalls"`
	// Sandbox are the syscalls the container's init and the shim made
	// before the module started: the runtime's own, no manifest's concern.
	Sandbox []Syscall `json:"sandbox_syscalls,omitempty"`
	// Resources are the run's peaks; Limits what applied.
	Resources  Resources  `json:"resources"`
	Suggestion Suggestion `json:"suggestion"`
}

// Run is what a recorded run produced, the input of Build.
type Run struct {
	Module, Version string
	Declared        []string // the manifest's capabilities
	Policy          *policy.Policy
	Limits          nodeconfig.Limits // the module's effective limits
	DiskBytes       int64             // its /data quota
	Methods, Events []Use
	Syscalls        []Syscall
	Resources       Resources
	Duration        time.Duration
	Exit            string
}

// Build maps the run's observations to capabilities and derives the
// suggestion.
func Build(r Run, g *Grants) Report {
	rep := Report{Module: r.Module, Version: r.Version, Duration: r.Duration, Exit: r.Exit,
		Declared: slices.Clone(r.Declared), Resources: r.Resources}
	base := map[string]bool{}
	if r.Policy != nil {
		for _, m := range r.Policy.Hub.Methods {
			for _, s := range m.Sources {
				if s.Source == policy.SourceSandbox {
					base[m.Name] = true
				}
			}
		}
	}
	declared := map[string]bool{}
	for _, c := range r.Declared {
		declared[c] = true
	}
	used := map[string]string{}   // declared capability -> the first use that needs it
	wanted := map[string]string{} // capability to add -> why
	var notes []string
	need := func(kind string, u Use, granters []string) {
		what := fmt.Sprintf("%s %s was %s %s", kind, u.Name, verb(kind), times(u.Count))
		var have []string
		for _, c := range granters {
			if declared[c] {
				have = append(have, c)
			}
		}
		if u.Granted && len(have) > 0 {
			for _, c := range have {
				if _, ok := used[c]; !ok {
					used[c] = what
				}
			}
			return
		}
		if u.Granted {
			return // base
		}
		if c := g.cheapest(granters); c != "" {
			if _, ok := wanted[c]; !ok {
				wanted[c] = what + " (denied)"
			}
			return
		}
		notes = append(notes, what+" and denied: no available capability grants it")
	}
	for _, u := range r.Methods {
		h := HubUse{Use: u, Base: base[u.Name]}
		if !h.Base {
			h.Capabilities = g.methods[u.Name]
		}
		rep.Methods = append(rep.Methods, h)
		if !h.Base {
			need("method", u, h.Capabilities)
		}
	}
	for _, u := range r.Events {
		h := HubUse{Use: u, Capabilities: g.eventGranters(u.Name)}
		rep.Events = append(rep.Events, h)
		need("event", u, h.Capabilities)
	}
	for _, s := range r.Syscalls {
		if s.By != ByModule {
			rep.Sandbox = append(rep.Sandbox, s)
			continue
		}
		su := SyscallUse{Syscall: s, Capabilities: g.sys[s.Name]}
		rep.Syscalls = append(rep.Syscalls, su)
		what := fmt.Sprintf("syscall %s was made %s", syscallLabel(s), times(s.Count))
		if c := g.cheapest(su.Capabilities); c != "" && s.Refused == "" {
			if _, ok := wanted[c]; !ok {
				wanted[c] = what
			}
			continue
		}
		if s.Refused != "" {
			notes = append(notes, fmt.Sprintf("%s and refused with %s, as it always is (%s): the module must do without", what, s.Refused, s.Reason))
		} else {
			notes = append(notes, what+": no capability allows it; under the normal filter it fails with ENOSYS, so the module must cope with that")
		}
	}
	sg := Suggestion{Notes: notes}
	for c, why := range wanted {
		sg.Add = append(sg.Add, Change{Capability: c, Because: why})
	}
	for _, c := range r.Declared {
		if _, ok := used[c]; ok {
			continue
		}
		capa := g.caps[c]
		if capa != nil && len(capa.HubMethods) == 0 && len(capa.Events) == 0 {
			sg.Notes = append(sg.Notes, fmt.Sprintf("kept %s: it grants only kernel rules, whose use a recording does not see", c))
			continue
		}
		sg.Remove = append(sg.Remove, Change{Capability: c, Because: "never used: none of its hub methods or events was called or asked for"})
	}
	sort.Slice(sg.Add, func(i, j int) bool { return sg.Add[i].Capability < sg.Add[j].Capability })
	keep := map[string]bool{}
	for _, c := range r.Declared {
		keep[c] = true
	}
	for _, c := range sg.Remove {
		delete(keep, c.Capability)
	}
	for _, c := range sg.Add {
		keep[c.Capability] = true
	}
	for c := range keep {
		sg.Capabilities = append(sg.Capabilities, c)
	}
	sort.Strings(sg.Capabilities)
	sg.Limits = suggestLimits(r)
	rep.Suggestion = sg
	return rep
}

func verb(kind string) string {
	if kind == "event" {
		return "asked for"
	}
	return "called"
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// cheapest picks the least dangerous available capability among names, by
// name on a tie: the narrowest way to get what the module used.
func (g *Grants) cheapest(names []string) string {
	best := ""
	for _, n := range names {
		c := g.caps[n]
		if c == nil || c.Status != capabilities.StatusAvailable {
			continue
		}
		if best == "" || capabilities.DangerRank(c.Danger) < capabilities.DangerRank(g.caps[best].Danger) {
			best = n
		}
	}
	return best
}

const mib = 1 << 20

// suggestLimits gives limits with headroom over the run's peaks: twice the
// peak, never below a floor a module needs to start at all.
func suggestLimits(r Run) []LimitSuggestion {
	res := r.Resources
	var out []LimitSuggestion
	bytesLimit := func(key string, current int64, peak uint64, floor uint64, what string) {
		v := roundUp(max(2*peak, floor), mib)
		out = append(out, LimitSuggestion{Key: key, Current: sizeString(uint64(max(current, 0))), Suggested: sizeString(v), Value: int64(v),
			Because: fmt.Sprintf("peak %s %s: twice that, at least %s", what, sizeString(peak), sizeString(floor))})
	}
	bytesLimit("limits.memory_bytes", r.Limits.MemoryBytes, res.PeakMemory, 32*mib, "memory")
	pids := max(2*res.PeakPids, 16)
	out = append(out, LimitSuggestion{Key: "limits.pids", Current: fmt.Sprint(r.Limits.Pids), Suggested: fmt.Sprint(pids), Value: int64(pids),
		Because: fmt.Sprintf("peak %d tasks (threads count): twice that, at least 16", res.PeakPids)})
	cores := 0.0
	if r.Duration > 0 {
		cores = float64(res.CPUNanos) / float64(r.Duration.Nanoseconds())
	}
	cpus := math.Max(math.Ceil(cores*2*20)/20, 0.1)
	out = append(out, LimitSuggestion{Key: "limits.cpus", Current: fmt.Sprint(r.Limits.CPUs), Suggested: fmt.Sprintf("%.2f", cpus), Value: cpus,
		Because: fmt.Sprintf("%.3f cores on average (%s of CPU in %s): twice that, at least 0.1; a mean, so bursts need more", cores, time.Duration(res.CPUNanos).Round(time.Millisecond), r.Duration.Round(time.Millisecond))})
	bytesLimit("limits.tmp_bytes", r.Limits.TmpBytes, res.PeakTmp, 1*mib, "/tmp use")
	bytesLimit("disk_bytes", r.DiskBytes, res.PeakData, 16*mib, "/data use")
	return out
}

func roundUp(v, unit uint64) uint64 { return (v + unit - 1) / unit * unit }

func sizeString(b uint64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b >= mib:
		return fmt.Sprintf("%.1f MiB", float64(b)/mib)
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as aligned rows, one section at a time.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Recorded %s %s for %s: %s\n", r.Module, r.Version, r.Duration.Round(time.Millisecond), r.Exit)
	fmt.Fprintf(&b, "Declared capabilities: %s\n", listOr(r.Declared, "none"))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	hub := func(title string, uses []HubUse) {
		fmt.Fprintf(tw, "\n%s\tCALLS\tVERDICT\tGRANTED BY\n", title)
		if len(uses) == 0 {
			fmt.Fprintf(tw, "(none)\t\t\t\n")
		}
		for _, u := range uses {
			by := listOr(u.Capabilities, "no capability")
			if u.Base {
				by = "every module"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", u.Name, u.Count, verdict(u.Granted), by)
		}
	}
	hub("HUB METHOD", r.Methods)
	hub("EVENT TYPE", r.Events)
	fmt.Fprintf(tw, "\nSYSCALL (NR)\tCALLS\tNORMAL FILTER\tALLOWED BY\n")
	if len(r.Syscalls) == 0 {
		fmt.Fprintf(tw, "(none outside the allowlist)\t\t\t\n")
	}
	for _, s := range r.Syscalls {
		normal := "ENOSYS (outside the allowlist; let run while recording)"
		if s.Refused != "" {
			normal = s.Refused + " (" + s.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", syscallLabel(s.Syscall), s.Count, normal, listOr(s.Capabilities, "no capability"))
	}
	if len(r.Sandbox) > 0 {
		fmt.Fprintf(tw, "\nBEFORE THE MODULE RAN\tCALLS\tBY\t\n")
		for _, s := range r.Sandbox {
			fmt.Fprintf(tw, "%s\t%d\t%s\t\n", syscallLabel(s), s.Count, s.By)
		}
	}
	tw.Flush()
	res := r.Resources
	fmt.Fprintf(&b, "\nResources (%d samples): peak memory %s, peak pids %d, CPU %s, peak /data %s, peak /tmp %s\n",
		res.Samples, sizeString(res.PeakMemory), res.PeakPids, time.Duration(res.CPUNanos).Round(time.Millisecond), sizeString(res.PeakData), sizeString(res.PeakTmp))
	r.Suggestion.writeText(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (s Suggestion) writeText(b *strings.Builder) {
	b.WriteString("\nSuggested module.toml (not applied):\n")
	if s.Empty() {
		b.WriteString("  capabilities: no change\n")
	}
	for _, c := range s.Add {
		fmt.Fprintf(b, "  + %s: %s\n", c.Capability, c.Because)
	}
	for _, c := range s.Remove {
		fmt.Fprintf(b, "  - %s: %s\n", c.Capability, c.Because)
	}
	if !s.Empty() {
		fmt.Fprintf(b, "  capabilities = %s\n", tomlList(s.Capabilities))
	}
	for _, n := range s.Notes {
		fmt.Fprintf(b, "  note: %s\n", n)
	}
	b.WriteString("\nSuggested limits for the operator's node config (headroom over this run's peaks):\n")
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	for _, l := range s.Limits {
		fmt.Fprintf(tw, "  %s\t%s\t(now %s)\t%s\n", l.Key, l.Suggested, l.Current, l.Because)
	}
	tw.Flush()
	b.WriteString("\nOne run covers only what the module did in it: review before adopting.\n")
}

// WriteSuggestion writes the suggestion as TOML fragments, one for the module's
// author and one for the operator, with the reasons as comments.
func (r Report) WriteSuggestion(w io.Writer) error {
	var b strings.Builder
	s := r.Suggestion
	fmt.Fprintf(&b, "# Suggested by blvm-sandbox record for %s %s after a %s run (%s).\n", r.Module, r.Version, r.Duration.Round(time.Millisecond), r.Exit)
	b.WriteString("# A suggestion, not applied: module.toml is unchanged. One run covers only what the module did in it.\n\n")
	b.WriteString("# For module.toml:\n")
	for _, c := range s.Add {
		fmt.Fprintf(&b, "# add %s: %s\n", c.Capability, oneLine(c.Because))
	}
	for _, c := range s.Remove {
		fmt.Fprintf(&b, "# remove %s: %s\n", c.Capability, oneLine(c.Because))
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "# note: %s\n", oneLine(n))
	}
	fmt.Fprintf(&b, "capabilities = %s\n\n", tomlList(s.Capabilities))
	b.WriteString("# For the operator's node config:\n")
	var limits, module []LimitSuggestion
	for _, l := range s.Limits {
		if strings.HasPrefix(l.Key, "limits.") {
			limits = append(limits, l)
		} else {
			module = append(module, l)
		}
	}
	fmt.Fprintf(&b, "[modules.%s]\n", r.Module)
	for _, l := range module {
		fmt.Fprintf(&b, "# %s\n%s = %v\n", oneLine(l.Because), l.Key, l.Value)
	}
	fmt.Fprintf(&b, "\n[modules.%s.limits]\n", r.Module)
	for _, l := range limits {
		fmt.Fprintf(&b, "# %s\n%s = %v\n", oneLine(l.Because), strings.TrimPrefix(l.Key, "limits."), l.Value)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// syscallLabel is "name (nr)", with the values of the argument the normal
// rules test: "prctl (157) arg0=0x53564d41".
func syscallLabel(s Syscall) string {
	l := fmt.Sprintf("%s (%d)", s.Name, s.Nr)
	if s.Arg != nil && len(s.Values) > 0 {
		v := make([]string, len(s.Values))
		for i, x := range s.Values {
			v[i] = fmt.Sprintf("%#x", x)
		}
		l += fmt.Sprintf(" arg%d=%s", *s.Arg, strings.Join(v, "|"))
	}
	return l
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func tomlList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func listOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	return strings.Join(names, ", ")
}

func verdict(granted bool) string {
	if granted {
		return "granted"
	}
	return "DENIED"
}
