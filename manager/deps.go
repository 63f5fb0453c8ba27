package manager

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/blvm/blvm-sandbox/manifest"
)

// Plan is the load order of a set of modules: every module after the ones
// it requires (and after its optional dependencies that load), with the
// modules that cannot load and why.
type Plan struct {
	Order   []string          // load order; unload in reverse
	Refused map[string]string // module -> reason, naming the dependency and the constraint
}

// PlanLoad orders mods (by name) for loading against the node's version.
// A required dependency that is missing, refused itself, or at a version
// outside its constraint refuses the module; an optional one never does: it
// orders the load when it can, and is ignored when it would close a cycle. A
// cycle of required dependencies refuses every module on it, and the reason
// names the cycle.
func PlanLoad(mods map[string]*manifest.Manifest, nodeVersion string) Plan {
	p := Plan{Refused: map[string]string{}}
	names := slices.Sorted(maps.Keys(mods))

	// Direct problems first: the node version and each required dependency.
	for _, n := range names {
		if reason := directProblem(mods, n, nodeVersion); reason != "" {
			p.Refused[n] = reason
		}
	}
	// Cycles of required dependencies.
	for _, cyc := range cycles(mods, names) {
		for _, n := range cyc[:len(cyc)-1] {
			if _, ok := p.Refused[n]; !ok {
				p.Refused[n] = "dependency cycle: " + strings.Join(cyc, " -> ")
			}
		}
	}
	// A refusal spreads to everything that requires the refused module.
	for changed := true; changed; {
		changed = false
		for _, n := range names {
			if _, ok := p.Refused[n]; ok {
				continue
			}
			for _, dep := range slices.Sorted(maps.Keys(mods[n].Dependencies)) {
				if why, ok := p.Refused[dep]; ok && dep != manifest.NodeDependency {
					p.Refused[n] = fmt.Sprintf("requires %s, which cannot load (%s)", dep, why)
					changed = true
					break
				}
			}
		}
	}
	// Topological order of what is left (Kahn, names sorted for a stable plan).
	// When only optional edges hold the rest back, they form a cycle: drop
	// them for one pass.
	placed := map[string]bool{}
	relaxed := false
	for len(placed)+len(p.Refused) < len(names) {
		progressed := false
		for _, n := range names {
			if placed[n] || p.Refused[n] != "" {
				continue
			}
			ready := true
			for dep := range edges(mods, n, !relaxed) {
				if p.Refused[dep] == "" && !placed[dep] {
					ready = false
					break
				}
			}
			if ready {
				placed[n] = true
				p.Order = append(p.Order, n)
				progressed = true
				if relaxed {
					break // back to honouring optional edges
				}
			}
		}
		switch {
		case progressed:
			relaxed = false
		case !relaxed:
			relaxed = true
		default:
			return p // cannot happen: required cycles are refused above
		}
	}
	return p
}

// directProblem checks module n's own required dependencies.
func directProblem(mods map[string]*manifest.Manifest, n, nodeVersion string) string {
	m := mods[n]
	for _, dep := range slices.Sorted(maps.Keys(m.Dependencies)) {
		constraint := m.Dependencies[dep]
		c, err := manifest.ParseConstraint(constraint)
		if err != nil {
			return fmt.Sprintf("dependency %s: constraint %q: %v", dep, constraint, err)
		}
		found := ""
		if dep == manifest.NodeDependency {
			found = nodeVersion
		} else if d, ok := mods[dep]; ok {
			found = d.Version
		} else {
			return fmt.Sprintf("requires %s %s: not installed", dep, constraint)
		}
		v, err := manifest.ParseVersion(found)
		if err != nil || !c.Check(v) {
			return fmt.Sprintf("requires %s %s: found %s", dep, constraint, found)
		}
	}
	return ""
}

// edges are the modules n must load after: its required dependencies and,
// with optional, the optional ones present at a matching version.
func edges(mods map[string]*manifest.Manifest, n string, optional bool) map[string]bool {
	out := map[string]bool{}
	m := mods[n]
	for dep := range m.Dependencies {
		if dep != manifest.NodeDependency {
			out[dep] = true
		}
	}
	if !optional {
		return out
	}
	for dep, constraint := range m.OptionalDependencies {
		d, ok := mods[dep]
		if !ok || dep == manifest.NodeDependency {
			continue
		}
		c, err := manifest.ParseConstraint(constraint)
		v, verr := manifest.ParseVersion(d.Version)
		if err == nil && verr == nil && c.Check(v) {
			out[dep] = true
		}
	}
	return out
}

// cycles finds the dependency cycles, each written from its smallest name
// back to itself: ["a", "b", "a"].
func cycles(mods map[string]*manifest.Manifest, names []string) [][]string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	seen := map[string]bool{}
	var out [][]string
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, dep := range slices.Sorted(maps.Keys(edges(mods, n, false))) {
			if _, ok := mods[dep]; !ok {
				continue
			}
			switch color[dep] {
			case white:
				visit(dep)
			case grey:
				i := slices.Index(stack, dep)
				cyc := rotate(append([]string(nil), stack[i:]...))
				key := strings.Join(cyc, ",")
				if !seen[key] {
					seen[key] = true
					out = append(out, append(cyc, cyc[0]))
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range names {
		if color[n] == white {
			visit(n)
		}
	}
	return out
}

// rotate starts a cycle at its smallest name, so it reads the same however
// it was found.
func rotate(c []string) []string {
	i := slices.Index(c, slices.Min(c))
	return append(c[i:], c[:i]...)
}

// Dependents returns the modules among loaded that require name, directly or
// through others, in the order they must be unloaded (dependents first).
func Dependents(mods map[string]*manifest.Manifest, order []string, name string) []string {
	needs := map[string]bool{name: true}
	for changed := true; changed; {
		changed = false
		for n, m := range mods {
			if needs[n] {
				continue
			}
			for dep := range m.Dependencies {
				if needs[dep] {
					needs[n] = true
					changed = true
					break
				}
			}
		}
	}
	var out []string
	for i := len(order) - 1; i >= 0; i-- {
		if n := order[i]; needs[n] && n != name {
			out = append(out, n)
		}
	}
	return out
}
