package client

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/registry/layout"
)

// Request is one NAME[@CONSTRAINT] the operator asked for.
type Request struct {
	Name       string
	Constraint string // "" any; "1.2.0" or "=1.2.0" exact; else a semver constraint
}

// ParseRequest splits NAME[@CONSTRAINT] and refuses names and constraints
// that are not the manifest's.
func ParseRequest(s string) (Request, error) {
	name, c, _ := strings.Cut(s, "@")
	r := Request{Name: name, Constraint: c}
	if err := layout.CheckName(name, ""); err != nil {
		return r, err
	}
	if c != "" {
		if _, err := manifest.ParseConstraint(c); err != nil {
			return r, fmt.Errorf("%s: constraint %q: %v", name, c, err)
		}
	}
	return r, nil
}

// Step is one module the plan installs, in dependency order.
type Step struct {
	Entry     layout.Entry
	Reason    string // "requested", "dependency of x (>=1.0)", "optional dependency of x"
	Installed string // the version in the modules dir now; "" none
}

// ResolveOptions change what resolution may choose.
type ResolveOptions struct {
	AllowYanked  bool // a yanked version may be named exactly
	WithOptional bool // install optional dependencies too
	// OnlyNewer (update) leaves out a requested module whose installed
	// version is already the newest the snapshot offers it: no reinstall.
	OnlyNewer bool
}

// installedVersion is the version in modulesDir/<name>, "" when none.
func installedVersion(modulesDir, name string) string {
	m, err := manifest.Parse(filepath.Join(modulesDir, name, manifest.FileName))
	if err != nil {
		return ""
	}
	return m.Version
}

func exactVersion(c string) string {
	c = strings.TrimPrefix(strings.TrimSpace(c), "=")
	if _, err := manifest.ParseVersion(c); err == nil {
		return c
	}
	return ""
}

// pick chooses the highest version of name meeting constraint and the
// node's version, from this client's one snapshot.
func (c *Client) pick(cfg *nodeconfig.Config, name, constraint string, opt ResolveOptions) (layout.Entry, error) {
	var cons *semver.Constraints
	if constraint != "" {
		var err error
		if cons, err = manifest.ParseConstraint(constraint); err != nil {
			return layout.Entry{}, err
		}
	}
	node, err := manifest.ParseVersion(cfg.Node.Version)
	if err != nil {
		return layout.Entry{}, fmt.Errorf("[node] version: %w", err)
	}
	exact := exactVersion(constraint)
	var best *layout.Entry
	var bestV *semver.Version
	var why []string
	for i, e := range c.Entries {
		if e.Name != name {
			continue
		}
		v, err := manifest.ParseVersion(e.Version)
		if err != nil || (cons != nil && !cons.Check(v)) {
			continue
		}
		if e.Yanked && !(opt.AllowYanked && exact == e.Version) {
			if exact == e.Version {
				return e, fmt.Errorf("yanked: %s %s is yanked by the registry; pass --allow-yanked to install it anyway", name, e.Version)
			}
			why = append(why, e.Version+" is yanked")
			continue
		}
		if e.Node != "" {
			nc, err := manifest.ParseConstraint(e.Node)
			if err != nil || !nc.Check(node) {
				why = append(why, fmt.Sprintf("%s needs blvm-node %s (this node is %s)", e.Version, e.Node, cfg.Node.Version))
				continue
			}
		}
		if best == nil || v.GreaterThan(bestV) {
			best, bestV = &c.Entries[i], v
		}
	}
	if best == nil {
		c0 := constraint
		if c0 == "" {
			c0 = "any version"
		}
		msg := fmt.Sprintf("resolve: no version of %s in snapshot %d satisfies %s", name, c.Snapshot, c0)
		if len(why) > 0 {
			msg += " (" + strings.Join(why, "; ") + ")"
		}
		return layout.Entry{}, fmt.Errorf("%s", msg)
	}
	return *best, nil
}

// Resolve turns requests into an ordered plan: dependencies first, each
// chosen from the same snapshot with the project's semver evaluator. A
// dependency already installed at a satisfying version is kept.
func (c *Client) Resolve(cfg *nodeconfig.Config, reqs []Request, opt ResolveOptions) ([]Step, error) {
	chosen := map[string]*Step{}
	var order []string
	visiting := map[string]bool{}
	var visit func(name, constraint, reason string, requested bool) error
	visit = func(name, constraint, reason string, requested bool) error {
		if s, ok := chosen[name]; ok {
			if constraint != "" {
				cons, err := manifest.ParseConstraint(constraint)
				v, _ := manifest.ParseVersion(s.Entry.Version)
				if err != nil || !cons.Check(v) {
					return fmt.Errorf("resolve: %s %s was chosen (%s), but %s needs %s", name, s.Entry.Version, s.Reason, reason, constraint)
				}
			}
			return nil
		}
		if visiting[name] {
			return fmt.Errorf("resolve: dependency cycle through %s", name)
		}
		inst := installedVersion(cfg.Paths.ModulesDir, name)
		if !requested && inst != "" {
			v, _ := manifest.ParseVersion(inst)
			cons, err := manifest.ParseConstraint(orAny(constraint))
			if err == nil && v != nil && cons.Check(v) {
				return nil // satisfied by what is installed
			}
		}
		e, err := c.pick(cfg, name, constraint, opt)
		if err != nil {
			if !requested {
				return fmt.Errorf("%s: %w", reason, err)
			}
			return err
		}
		if requested && opt.OnlyNewer && inst != "" {
			iv, _ := manifest.ParseVersion(inst)
			pv, _ := manifest.ParseVersion(e.Version)
			if iv != nil && pv != nil && !pv.GreaterThan(iv) {
				return nil // current
			}
		}
		visiting[name] = true
		deps := e.Dependencies
		for _, d := range slices.Sorted(mapKeys(deps)) {
			if err := visit(d, deps[d], fmt.Sprintf("dependency of %s %s (%s)", e.Name, e.Version, deps[d]), false); err != nil {
				return err
			}
		}
		if opt.WithOptional {
			for _, d := range slices.Sorted(mapKeys(e.OptionalDependencies)) {
				if err := visit(d, e.OptionalDependencies[d], fmt.Sprintf("optional dependency of %s %s", e.Name, e.Version), false); err != nil {
					return err
				}
			}
		}
		visiting[name] = false
		chosen[name] = &Step{Entry: e, Reason: reason, Installed: inst}
		order = append(order, name)
		return nil
	}
	for _, r := range reqs {
		if err := visit(r.Name, r.Constraint, "requested", true); err != nil {
			return nil, err
		}
	}
	plan := make([]Step, 0, len(order))
	for _, n := range order {
		plan = append(plan, *chosen[n])
	}
	return plan, nil
}

func orAny(c string) string {
	if c == "" {
		return "*"
	}
	return c
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Latest returns the newest non-yanked version of name compatible with the
// node, for outdated and update.
func (c *Client) Latest(cfg *nodeconfig.Config, name string) (layout.Entry, error) {
	return c.pick(cfg, name, "", ResolveOptions{})
}

// Search returns the entries whose name or description contains q and
// that grant capability (when set), newest first per name.
func (c *Client) Search(q, capability string) []layout.Entry {
	var out []layout.Entry
	for _, e := range c.Entries {
		if q != "" && !strings.Contains(e.Name, q) && !strings.Contains(strings.ToLower(e.Description), strings.ToLower(q)) {
			continue
		}
		if capability != "" && !slices.Contains(e.Capabilities, capability) {
			continue
		}
		out = append(out, e)
	}
	return out
}
