package capabilities

import (
	"fmt"
	"slices"
	"sort"

	"github.com/blvm/blvm-sandbox/internal/suggest"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// Set is the outcome of resolving a module's declared capabilities.
type Set struct {
	// Granted is sorted by name.
	Granted []*Capability
	// Base and Deny come from the catalog: the syscall groups every module
	// receives and the always-denied list. Groups resolves the extra groups
	// a granted capability names.
	Base     []*SyscallGroup
	Deny     DenyList
	Groups   map[string]*SyscallGroup
	Families []*Family // sorted by name
}

// Names returns the granted names, sorted.
func (s *Set) Names() []string {
	out := make([]string, len(s.Granted))
	for i, c := range s.Granted {
		out[i] = c.Name
	}
	return out
}

// Has reports whether name was granted.
func (s *Set) Has(name string) bool {
	for _, c := range s.Granted {
		if c.Name == name {
			return true
		}
	}
	return false
}

// Refusal is a declared capability that the catalog knows and the policy
// could hold, but that the operator's settings refuse: above the tier
// ceiling, or denied.
type Refusal struct {
	Capability *Capability
	// Problem is located at the manifest line that asked for it; its
	// message is the one a load prints.
	Problem manifest.Problem
	// Why is the reason alone ("above the ceiling ..."), Allow what the
	// operator would change to allow it.
	Why, Allow string
}

// Resolve checks each capability m declares against the catalog, the
// operator's provided-capability declarations and the operator's ceiling.
// Every refusal is reported at once, located at the manifest line that asked
// for it; a module with any refusal gets no Set at all.
func (c *Catalog) Resolve(m *manifest.Manifest, cfg *nodeconfig.Config) (*Set, error) {
	set, _, _, all, err := c.resolve(m, cfg)
	if err != nil {
		return nil, err
	}
	if len(all) > 0 {
		return nil, all
	}
	return set, nil
}

// ResolveAsRequested is Resolve for showing a policy before anyone decides
// on it (explain): a capability the operator's ceiling or denies refuse is
// granted in the Set anyway and returned as a Refusal as well, so the policy
// compiles as the module asked and each refusal can be marked. Names that are
// unknown or not available yet are still errors: there is nothing to compile.
func (c *Catalog) ResolveAsRequested(m *manifest.Manifest, cfg *nodeconfig.Config) (*Set, []Refusal, error) {
	set, refusals, problems, _, err := c.resolve(m, cfg)
	if err != nil {
		return nil, nil, err
	}
	if len(problems) > 0 {
		return nil, nil, problems
	}
	for _, r := range refusals {
		set.Granted = append(set.Granted, r.Capability)
	}
	sortByName(set.Granted)
	return set, refusals, nil
}

// resolve is the one place that decides: it returns the capabilities
// granted, those the operator refuses, the names that cannot be granted at
// all, and every problem of the last two in declaration order.
func (c *Catalog) resolve(m *manifest.Manifest, cfg *nodeconfig.Config) (set *Set, refusals []Refusal, problems, all manifest.Problems, err error) {
	known, err := c.withOperatorProvided(cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	mod := cfg.ModuleSettings(m.Name)
	refuse := func(r Refusal) {
		refusals = append(refusals, r)
		all = append(all, r.Problem)
	}
	cannot := func(p manifest.Problem) {
		problems = append(problems, p)
		all = append(all, p)
	}
	set = &Set{Base: c.BaseGroups(), Deny: c.Deny, Groups: c.Groups, Families: c.FamilyList()}
	for i, name := range m.Capabilities {
		field := fmt.Sprintf("capabilities[%d]", i)
		problem := func(format string, args ...any) manifest.Problem {
			return manifest.Problem{
				File: fileName(m), Line: m.Lines[field], Field: field,
				Message: fmt.Sprintf(format, args...),
			}
		}
		capa, ok := known[name]
		switch {
		case !ok:
			msg := fmt.Sprintf("unknown capability %q", name)
			if s := suggest.Closest(name, keys(known)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			cannot(problem("%s", msg))
		case capa.Status == StatusFuture:
			cannot(problem("capability %q is known but not available yet: the node backend does not support it", name))
		case slices.Contains(cfg.Capabilities.Deny, name):
			refuse(Refusal{Capability: capa,
				Problem: problem("capability %q is denied by the operator ([capabilities] deny)", name),
				Why:     "denied by the operator ([capabilities] deny)", Allow: "remove it from [capabilities] deny"})
		case slices.Contains(mod.Deny, name):
			refuse(Refusal{Capability: capa,
				Problem: problem("capability %q is denied by the operator ([modules.%s] deny)", name, m.Name),
				Why:     fmt.Sprintf("denied by the operator ([modules.%s] deny)", m.Name), Allow: fmt.Sprintf("remove it from [modules.%s] deny", m.Name)})
		case nodeconfig.TierRank(capa.Tier) > nodeconfig.TierRank(cfg.Capabilities.MaxTier) && !slices.Contains(mod.Allow, name):
			allow := fmt.Sprintf("[modules.%s] allow = [%q]", m.Name, name)
			refuse(Refusal{Capability: capa,
				Problem: problem("capability %q has tier %q above the operator ceiling %q (allow it with %s)",
					name, capa.Tier, cfg.Capabilities.MaxTier, allow),
				Why:   fmt.Sprintf("tier %q is above the operator ceiling %q", capa.Tier, cfg.Capabilities.MaxTier),
				Allow: allow})
		default:
			set.Granted = append(set.Granted, capa)
		}
	}
	sortByName(set.Granted)
	return set, refusals, problems, all, nil
}

func sortByName(caps []*Capability) {
	sort.Slice(caps, func(i, j int) bool { return caps[i].Name < caps[j].Name })
}

// withOperatorProvided returns the catalog's capabilities plus the
// provided capabilities the operator declared in the node config. The
// operator may add names but never redefine a reviewed one.
func (c *Catalog) withOperatorProvided(cfg *nodeconfig.Config) (map[string]*Capability, error) {
	if len(cfg.Provided) == 0 {
		return c.Capabilities, nil
	}
	all := make(map[string]*Capability, len(c.Capabilities)+len(cfg.Provided))
	for n, capa := range c.Capabilities {
		all[n] = capa
	}
	for n, p := range cfg.Provided {
		if _, clash := all[n]; clash {
			return nil, fmt.Errorf("%s: provided_capabilities.%s: redefines a capability from the catalog", cfg.Path, n)
		}
		all[n] = &Capability{
			Name: n, Description: p.Description, Tier: p.Tier, Danger: p.Danger,
			Status: StatusAvailable, Provider: p.Provider,
			HubMethods: []string{ModuleCallMethod(p.Provider)},
		}
	}
	return all, nil
}

func fileName(m *manifest.Manifest) string {
	if m.Path == "" {
		return manifest.FileName
	}
	return m.Path
}

func keys(m map[string]*Capability) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
