// Package capabilities resolves the capability names a module declares
// against the reviewed catalog in policies/, and applies the operator's
// ceiling. It is the one place that decides whether a capability is granted.
package capabilities

import (
	"fmt"
	"io/fs"
	"sort"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policies"
)

// Catalog is the parsed content of policies/*.toml.
type Catalog struct {
	Capabilities map[string]*Capability
	Groups       map[string]*SyscallGroup
	Deny         DenyList
	// Families groups syscalls that reach one kernel operation through
	// different entry points, so the policy decides once per family.
	Families map[string]*Family
}

// Capability is one grantable name.
type Capability struct {
	Name          string
	Description   string   `toml:"description"`
	Tier          string   `toml:"tier"`
	Danger        string   `toml:"danger"`
	Status        string   `toml:"status"`
	HubMethods    []string `toml:"hub_methods"`
	Events        []string `toml:"events"`
	SeccompGroups []string `toml:"seccomp_groups"`
	Landlock      []PathRule
	// Provider is set for module-provided capabilities: holding one lets a
	// module call that provider's registered API, and nothing more.
	Provider string `toml:"provider"`
}

// Status values.
const (
	StatusAvailable = "available"
	StatusFuture    = "future"
)

// Dangers, low to high.
var Dangers = []string{"low", "medium", "high", "critical"}

// PathRule is an extra Landlock rule a capability needs.
type PathRule struct {
	Path   string   `toml:"path"`
	Access []string `toml:"access"`
	Reason string   `toml:"reason"`
}

// SyscallGroup is a named set of syscalls with one purpose.
type SyscallGroup struct {
	Name        string
	Description string        `toml:"description"`
	Base        bool          `toml:"base"` // every module gets it
	Syscalls    []string      `toml:"syscalls"`
	Rules       []SyscallRule `toml:"rules"`
}

// SyscallRule is a syscall with an action other than a plain allow, or with
// pinned arguments.
type SyscallRule struct {
	Syscall string `toml:"syscall"`
	Action  string `toml:"action"` // allow | errno
	Errno   string `toml:"errno"`
	Args    []Arg  `toml:"args"`
	Reason  string `toml:"reason"`
}

// Arg is one argument condition. Op is eq, ne, masked_eq ((arg & Mask) ==
// Value) or masked_ne ((arg & Mask) != Value).
type Arg struct {
	Index uint   `toml:"index"`
	Op    string `toml:"op"`
	Mask  uint64 `toml:"mask"`
	Value uint64 `toml:"value"`
}

// Family is a set of syscalls that do the same thing by different entry
// points (chmod, fchmod, fchmodat, fchmodat2). The policy must treat its
// members alike; Differs names a member that is treated otherwise, and why.
type Family struct {
	Name     string
	Syscalls []string          `toml:"syscalls"`
	Reason   string            `toml:"reason"`
	Differs  map[string]string `toml:"differs"`
}

// DenyList is the always-denied set: EPERM whatever a module declares.
type DenyList struct {
	Description string     `toml:"description"`
	Rules       []DenyRule `toml:"rules"`
}

// DenyRule denies Syscalls (optionally only when Args match) with a reason.
type DenyRule struct {
	Syscalls []string `toml:"syscalls"`
	Args     []Arg    `toml:"args"`
	Reason   string   `toml:"reason"`
}

type catalogFile struct {
	Capabilities map[string]*Capability   `toml:"capabilities"`
	Provided     map[string]*Capability   `toml:"provided"`
	Groups       map[string]*SyscallGroup `toml:"groups"`
	Deny         *DenyList                `toml:"deny"`
	Families     map[string]*Family       `toml:"families"`
}

// Default loads the catalog embedded from policies/.
func Default() (*Catalog, error) { return Load(policies.Files) }

// Load reads every *.toml file at the root of fsys into one catalog. A name
// defined twice, an unknown key, or a dangling group reference is an error.
func Load(fsys fs.FS) (*Catalog, error) {
	names, err := fs.Glob(fsys, "*.toml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	c := &Catalog{Capabilities: map[string]*Capability{}, Groups: map[string]*SyscallGroup{}, Families: map[string]*Family{}}
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		var f catalogFile
		md, err := toml.Decode(string(data), &f)
		if err != nil {
			return nil, fmt.Errorf("policies/%s: %w", name, err)
		}
		if u := md.Undecoded(); len(u) > 0 {
			return nil, fmt.Errorf("policies/%s: unknown key %q", name, u[0].String())
		}
		for n, capa := range f.Capabilities {
			if err := c.addCapability(name, n, capa); err != nil {
				return nil, err
			}
		}
		for n, capa := range f.Provided {
			if capa.Provider == "" {
				return nil, fmt.Errorf("policies/%s: provided.%s: provider is required", name, n)
			}
			capa.Status = StatusAvailable
			if err := c.addCapability(name, n, capa); err != nil {
				return nil, err
			}
		}
		for n, g := range f.Groups {
			if _, dup := c.Groups[n]; dup {
				return nil, fmt.Errorf("policies/%s: groups.%s: defined twice", name, n)
			}
			g.Name = n
			c.Groups[n] = g
		}
		for n, fam := range f.Families {
			if _, dup := c.Families[n]; dup {
				return nil, fmt.Errorf("policies/%s: families.%s: defined twice", name, n)
			}
			fam.Name = n
			c.Families[n] = fam
		}
		if f.Deny != nil {
			c.Deny.Description = f.Deny.Description
			c.Deny.Rules = append(c.Deny.Rules, f.Deny.Rules...)
		}
	}
	return c, c.check()
}

func (c *Catalog) addCapability(file, name string, capa *Capability) error {
	if _, dup := c.Capabilities[name]; dup {
		return fmt.Errorf("policies/%s: capability %q defined twice", file, name)
	}
	capa.Name = name
	if capa.Provider != "" {
		// A provided capability grants exactly one thing: calls to its provider.
		capa.HubMethods = []string{ModuleCallMethod(capa.Provider)}
	}
	c.Capabilities[name] = capa
	return nil
}

// ModuleCallMethod is the hub ACL entry that lets a module call provider's API.
func ModuleCallMethod(provider string) string { return "modules.Call:" + provider }

// check validates cross-references and enumerations.
func (c *Catalog) check() error {
	for _, n := range c.capabilityNames() {
		capa := c.Capabilities[n]
		if nodeconfig.TierRank(capa.Tier) < 0 {
			return fmt.Errorf("policies: capability %q: unknown tier %q (one of %v)", n, capa.Tier, nodeconfig.Tiers)
		}
		if dangerRank(capa.Danger) < 0 {
			return fmt.Errorf("policies: capability %q: unknown danger %q (one of %v)", n, capa.Danger, Dangers)
		}
		if capa.Status != StatusAvailable && capa.Status != StatusFuture {
			return fmt.Errorf("policies: capability %q: status %q is not available or future", n, capa.Status)
		}
		for _, g := range capa.SeccompGroups {
			if _, ok := c.Groups[g]; !ok {
				return fmt.Errorf("policies: capability %q: unknown seccomp group %q", n, g)
			}
		}
	}
	for _, g := range c.Groups {
		for _, r := range g.Rules {
			if err := checkRule(r.Action, r.Errno, r.Args); err != nil {
				return fmt.Errorf("policies: groups.%s: %s: %w", g.Name, r.Syscall, err)
			}
		}
	}
	for _, r := range c.Deny.Rules {
		if err := checkRule("errno", "EPERM", r.Args); err != nil {
			return fmt.Errorf("policies: deny %v: %w", r.Syscalls, err)
		}
	}
	return c.checkFamilies()
}

// checkFamilies makes each syscall belong to one family at most, and each
// family state its reason and name only its own members as different.
func (c *Catalog) checkFamilies() error {
	owner := map[string]string{}
	for _, f := range c.FamilyList() {
		if f.Reason == "" {
			return fmt.Errorf("policies: families.%s: reason is required", f.Name)
		}
		if len(f.Syscalls) < 2 {
			return fmt.Errorf("policies: families.%s: syscalls %v: a family needs two members or more", f.Name, f.Syscalls)
		}
		for _, sc := range f.Syscalls {
			if other, dup := owner[sc]; dup {
				return fmt.Errorf("policies: families.%s: syscall %q is already in families.%s", f.Name, sc, other)
			}
			owner[sc] = f.Name
		}
		for sc, why := range f.Differs {
			if owner[sc] != f.Name {
				return fmt.Errorf("policies: families.%s: differs.%s: not a member of the family", f.Name, sc)
			}
			if why == "" {
				return fmt.Errorf("policies: families.%s: differs.%s: the reason is empty", f.Name, sc)
			}
		}
	}
	return nil
}

// FamilyList returns the syscall families sorted by name.
func (c *Catalog) FamilyList() []*Family {
	out := make([]*Family, 0, len(c.Families))
	for _, f := range c.Families {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func checkRule(action, errno string, args []Arg) error {
	switch action {
	case "allow":
	case "errno":
		if _, ok := Errnos[errno]; !ok {
			return fmt.Errorf("unknown errno %q", errno)
		}
	default:
		return fmt.Errorf("unknown action %q (allow or errno)", action)
	}
	ne := 0
	for _, a := range args {
		if a.Op == "masked_ne" {
			if ne++; ne > 1 {
				return fmt.Errorf("more than one masked_ne condition in one rule (renderers expand it into one rule per mask bit)")
			}
		}
		if a.Index > 5 {
			return fmt.Errorf("argument index %d out of range 0-5", a.Index)
		}
		switch a.Op {
		case "eq", "ne", "masked_eq":
		case "masked_ne":
			if a.Mask == 0 || a.Value&^a.Mask != 0 {
				return fmt.Errorf("masked_ne: mask %#x, value %#x: the mask must be non-zero and cover the value", a.Mask, a.Value)
			}
		default:
			return fmt.Errorf("unknown operator %q (eq, ne, masked_eq or masked_ne)", a.Op)
		}
	}
	return nil
}

// Errnos are the error numbers a policy may return, by name.
var Errnos = map[string]uint{"EPERM": 1, "ENOSYS": 38, "EAFNOSUPPORT": 97, "EACCES": 13}

func dangerRank(d string) int {
	for i, x := range Dangers {
		if x == d {
			return i
		}
	}
	return -1
}

// DangerRank orders danger levels; -1 for an unknown one.
func DangerRank(d string) int { return dangerRank(d) }

func (c *Catalog) capabilityNames() []string {
	names := make([]string, 0, len(c.Capabilities))
	for n := range c.Capabilities {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// BaseGroups returns the groups every module receives, sorted by name.
func (c *Catalog) BaseGroups() []*SyscallGroup {
	var out []*SyscallGroup
	for _, g := range c.Groups {
		if g.Base {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
