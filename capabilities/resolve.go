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

// Resolve checks each capability m declares against the catalog, the
// operator's provided-capability declarations and the operator's ceiling.
// Every refusal is reported at once, located at the manifest line that asked
// for it; a module with any refusal gets no Set at all.
func (c *Catalog) Resolve(m *manifest.Manifest, cfg *nodeconfig.Config) (*Set, error) {
	known, err := c.withOperatorProvided(cfg)
	if err != nil {
		return nil, err
	}
	mod := cfg.ModuleSettings(m.Name)
	var problems manifest.Problems
	set := &Set{Base: c.BaseGroups(), Deny: c.Deny, Groups: c.Groups, Families: c.FamilyList()}
	for i, name := range m.Capabilities {
		field := fmt.Sprintf("capabilities[%d]", i)
		refuse := func(format string, args ...any) {
			problems = append(problems, manifest.Problem{
				File: fileName(m), Line: m.Lines[field], Field: field,
				Message: fmt.Sprintf(format, args...),
			})
		}
		capa, ok := known[name]
		switch {
		case !ok:
			msg := fmt.Sprintf("unknown capability %q", name)
			if s := suggest.Closest(name, keys(known)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			refuse("%s", msg)
		case capa.Status == StatusFuture:
			refuse("capability %q is known but not available yet: the node backend does not support it", name)
		case slices.Contains(cfg.Capabilities.Deny, name):
			refuse("capability %q is denied by the operator ([capabilities] deny)", name)
		case slices.Contains(mod.Deny, name):
			refuse("capability %q is denied by the operator ([modules.%s] deny)", name, m.Name)
		case nodeconfig.TierRank(capa.Tier) > nodeconfig.TierRank(cfg.Capabilities.MaxTier) && !slices.Contains(mod.Allow, name):
			refuse("capability %q has tier %q above the operator ceiling %q (allow it with [modules.%s] allow = [%q])",
				name, capa.Tier, cfg.Capabilities.MaxTier, m.Name, name)
		default:
			set.Granted = append(set.Granted, capa)
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	sort.Slice(set.Granted, func(i, j int) bool { return set.Granted[i].Name < set.Granted[j].Name })
	return set, nil
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
