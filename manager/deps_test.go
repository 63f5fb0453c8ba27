package manager

import (
	"fmt"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/manifest"
)

func mod(name, version string, deps, optional map[string]string) *manifest.Manifest {
	return &manifest.Manifest{Name: name, Version: version, Dependencies: deps, OptionalDependencies: optional}
}

func TestPlanLoad(t *testing.T) {
	node := "0.1.0"
	for _, c := range []struct {
		name    string
		mods    []*manifest.Manifest
		order   string
		refused map[string]string // module -> substring of the reason
	}{
		{
			name: "seed: merge-mining after stratum-v2",
			mods: []*manifest.Manifest{
				mod("merge-mining", "0.3.0", map[string]string{"blvm-node": ">=0.1.0", "stratum-v2": "^1.0.0"}, map[string]string{"lightning-network": ">=1.2.0"}),
				mod("stratum-v2", "1.0.0", map[string]string{"blvm-node": ">=0.1.0"}, nil),
			},
			order: "stratum-v2 merge-mining",
		},
		{
			name: "optional dependency present orders, absent never blocks",
			mods: []*manifest.Manifest{
				mod("a", "1.0.0", nil, map[string]string{"z": ">=1.0.0", "missing": "*"}),
				mod("z", "1.0.0", nil, nil),
			},
			order: "z a",
		},
		{
			name: "optional dependency at the wrong version neither orders nor blocks",
			mods: []*manifest.Manifest{
				mod("a", "1.0.0", nil, map[string]string{"b": ">=2.0.0"}),
				mod("b", "1.0.0", nil, map[string]string{"a": "*"}),
			},
			order: "a b",
		},
		{
			name: "a cycle of optional dependencies blocks nothing",
			mods: []*manifest.Manifest{
				mod("a", "1.0.0", nil, map[string]string{"b": "*"}),
				mod("b", "1.0.0", nil, map[string]string{"a": "*"}),
				mod("c", "1.0.0", map[string]string{"b": "*"}, nil),
			},
			order: "a b c",
		},
		{
			name:    "missing dependency named with its constraint",
			mods:    []*manifest.Manifest{mod("merge-mining", "0.3.0", map[string]string{"stratum-v2": "^1.0.0"}, nil)},
			refused: map[string]string{"merge-mining": "requires stratum-v2 ^1.0.0: not installed"},
		},
		{
			name: "incompatible dependency names what was found",
			mods: []*manifest.Manifest{
				mod("merge-mining", "0.3.0", map[string]string{"stratum-v2": "^1.0.0"}, nil),
				mod("stratum-v2", "2.0.0", nil, nil),
			},
			order:   "stratum-v2",
			refused: map[string]string{"merge-mining": "requires stratum-v2 ^1.0.0: found 2.0.0"},
		},
		{
			name:    "node version",
			mods:    []*manifest.Manifest{mod("lightning-network", "1.2.3", map[string]string{"blvm-node": ">=1.0.0"}, nil)},
			refused: map[string]string{"lightning-network": "requires blvm-node >=1.0.0: found 0.1.0"},
		},
		{
			name: "cycle refused and named; its dependents too",
			mods: []*manifest.Manifest{
				mod("a", "1.0.0", map[string]string{"b": "*"}, nil),
				mod("b", "1.0.0", map[string]string{"a": "*"}, nil),
				mod("c", "1.0.0", map[string]string{"a": "*"}, nil),
				mod("d", "1.0.0", nil, nil),
			},
			order: "d",
			refused: map[string]string{
				"a": "dependency cycle: a -> b -> a", "b": "dependency cycle: a -> b -> a",
				"c": "requires a, which cannot load (dependency cycle: a -> b -> a)",
			},
		},
		{
			name: "refusal spreads down a chain",
			mods: []*manifest.Manifest{
				mod("a", "1.0.0", map[string]string{"gone": "*"}, nil),
				mod("b", "1.0.0", map[string]string{"a": "*"}, nil),
				mod("c", "1.0.0", map[string]string{"b": "*"}, nil),
			},
			refused: map[string]string{"a": "gone", "b": "requires a", "c": "requires b"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			mods := map[string]*manifest.Manifest{}
			for _, m := range c.mods {
				mods[m.Name] = m
			}
			p := PlanLoad(mods, node)
			if got := strings.Join(p.Order, " "); got != c.order {
				t.Errorf("order %q, want %q", got, c.order)
			}
			if len(p.Refused) != len(c.refused) {
				t.Errorf("refused %v, want %v", p.Refused, c.refused)
			}
			for n, want := range c.refused {
				if !strings.Contains(p.Refused[n], want) {
					t.Errorf("%s refused %q, want it to contain %q", n, p.Refused[n], want)
				}
			}
		})
	}
}

func TestPlanLoadLongChainIsOrdered(t *testing.T) {
	mods := map[string]*manifest.Manifest{}
	for i := 0; i < 100; i++ {
		deps := map[string]string{}
		if i > 0 {
			deps[fmt.Sprintf("m%03d", i-1)] = "*"
		}
		mods[fmt.Sprintf("m%03d", i)] = mod(fmt.Sprintf("m%03d", i), "1.0.0", deps, nil)
	}
	p := PlanLoad(mods, "0.1.0")
	if len(p.Order) != 100 || len(p.Refused) != 0 {
		t.Fatalf("order %d, refused %v", len(p.Order), p.Refused)
	}
	for i, n := range p.Order {
		if n != fmt.Sprintf("m%03d", i) {
			t.Fatalf("position %d is %s", i, n)
		}
	}
}

func TestDependentsUnloadFirst(t *testing.T) {
	mods := map[string]*manifest.Manifest{
		"stratum-v2":   mod("stratum-v2", "1.0.0", nil, nil),
		"merge-mining": mod("merge-mining", "0.3.0", map[string]string{"stratum-v2": "^1.0.0"}, nil),
		"aux":          mod("aux", "1.0.0", map[string]string{"merge-mining": "*"}, nil),
		"other":        mod("other", "1.0.0", nil, nil),
	}
	got := Dependents(mods, []string{"other", "stratum-v2", "merge-mining", "aux"}, "stratum-v2")
	if strings.Join(got, " ") != "aux merge-mining" {
		t.Fatalf("dependents %v", got)
	}
}
