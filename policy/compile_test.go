package policy

import (
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

var testHost = Host{Arch: "amd64", LandlockABI: 7, CgroupVersion: 1}

// permissive is a node config whose ceiling admits every available tier.
func permissive() *nodeconfig.Config {
	cfg := nodeconfig.Default()
	cfg.Capabilities.MaxTier = nodeconfig.Tiers[len(nodeconfig.Tiers)-1]
	return cfg
}

func catalog(t testing.TB) *capabilities.Catalog {
	t.Helper()
	c, err := capabilities.Default()
	if err != nil {
		t.Fatalf("load catalog: %v", err)
	}
	return c
}

func availableNames(c *capabilities.Catalog) []string {
	var out []string
	for n, capa := range c.Capabilities {
		if capa.Status == capabilities.StatusAvailable {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func compileNames(t testing.TB, c *capabilities.Catalog, cfg *nodeconfig.Config, names []string) *Policy {
	t.Helper()
	m := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "bin/probe", Capabilities: names}
	set, err := c.Resolve(m, cfg)
	if err != nil {
		t.Fatalf("resolve %v: %v", names, err)
	}
	p, err := Compile(m, set, cfg, testHost)
	if err != nil {
		t.Fatalf("compile %v: %v", names, err)
	}
	return p
}

func TestCompileIsDeterministic(t *testing.T) {
	c := catalog(t)
	names := availableNames(c)
	a := compileNames(t, c, permissive(), names)
	b := compileNames(t, c, permissive(), names)
	var sa, sb strings.Builder
	if err := NewReport(a, &manifest.Manifest{Name: "probe"}, permissive(), nil).WriteJSON(&sa); err != nil {
		t.Fatal(err)
	}
	if err := NewReport(b, &manifest.Manifest{Name: "probe"}, permissive(), nil).WriteJSON(&sb); err != nil {
		t.Fatal(err)
	}
	if sa.String() != sb.String() {
		t.Fatal("two compilations of the same input differ")
	}
}

// Every seccomp rule, hub method and event must come from a base group, the
// deny list, the sandbox itself or a capability that was granted.
func assertNoUngrantedItems(t testing.TB, p *Policy, granted []string) {
	t.Helper()
	ok := func(src string) bool {
		if strings.HasPrefix(src, "base:") || src == SourceDeny || src == SourceSandbox || src == SourceOperator {
			return true
		}
		name, isCap := strings.CutPrefix(src, "capability:")
		return isCap && slices.Contains(granted, name)
	}
	for _, r := range p.Seccomp.Rules {
		for _, s := range r.Sources {
			if !ok(s.Source) {
				t.Errorf("seccomp rule %s from %q, which was not granted", ruleString(r), s.Source)
			}
		}
		if r.Action == ActAllow && slices.Contains(dangerousSyscalls, r.Syscall) {
			t.Errorf("always-denied syscall %s is allowed", r.Syscall)
		}
	}
	for _, g := range append(slices.Clone(p.Hub.Methods), p.Hub.Events...) {
		for _, s := range g.Sources {
			if !ok(s.Source) {
				t.Errorf("hub grant %s from %q, which was not granted", g.Name, s.Source)
			}
		}
	}
}

func TestCompileGrantsNothingUndeclared(t *testing.T) {
	c := catalog(t)
	for _, name := range availableNames(c) {
		p := compileNames(t, c, permissive(), []string{name})
		assertNoUngrantedItems(t, p, []string{name})
	}
	p := compileNames(t, c, permissive(), nil)
	if got := len(p.Hub.Methods); got != 3 {
		t.Errorf("a module without capabilities has %d hub methods, want the 3 base ones", got)
	}
	if len(p.Hub.Events) != 0 {
		t.Errorf("a module without capabilities may subscribe to %v", p.Hub.Events)
	}
}

// Adding a capability never removes a rule, and removing one never adds a
// rule: the policy of a subset is contained in the policy of the superset.
func TestPropertyCapabilitiesAreMonotonic(t *testing.T) {
	c := catalog(t)
	all := availableNames(c)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		var small, big []string
		for _, n := range all {
			switch rng.Intn(3) {
			case 0:
				small = append(small, n)
				big = append(big, n)
			case 1:
				big = append(big, n)
			}
		}
		ps := compileNames(t, c, permissive(), small)
		pb := compileNames(t, c, permissive(), big)
		is, ib := items(ps), items(pb)
		for k := range is {
			if _, ok := ib[k]; !ok {
				t.Fatalf("adding %v to %v removed %q", big, small, k)
			}
		}
		if d := Diff(pb, ps); len(d.Wider) > 0 {
			t.Fatalf("removing capabilities widened the policy: %v", d.Wider)
		}
		if Score(ps) > Score(pb) {
			t.Fatalf("score fell from %.2f to %.2f when adding capabilities", Score(ps), Score(pb))
		}
	}
}

func TestSeccompShape(t *testing.T) {
	p := compileNames(t, catalog(t), permissive(), nil)
	if p.Seccomp.DefaultAction != ActErrno || p.Seccomp.DefaultErrno != "ENOSYS" {
		t.Errorf("default action %s %s, want errno ENOSYS", p.Seccomp.DefaultAction, p.Seccomp.DefaultErrno)
	}
	find := func(syscall string, action Action) []SyscallRule {
		var out []SyscallRule
		for _, r := range p.Seccomp.Rules {
			if r.Syscall == syscall && r.Action == action {
				out = append(out, r)
			}
		}
		return out
	}
	for _, sc := range dangerousSyscalls {
		if len(find(sc, ActAllow)) > 0 || len(find(sc, ActErrno)) == 0 {
			t.Errorf("%s is not denied", sc)
		}
	}
	sock := find("socket", ActAllow)
	if len(sock) != 1 || len(sock[0].Args) != 1 || sock[0].Args[0].Value != 1 {
		t.Errorf("socket allow rules %+v, want exactly one pinned to AF_UNIX", sock)
	}
	c3 := find("clone3", ActErrno)
	if len(c3) != 1 || c3[0].Errno != "ENOSYS" {
		t.Errorf("clone3 rules %+v, want ENOSYS", c3)
	}
	clone := find("clone", ActAllow)
	if len(clone) != 1 || clone[0].Args[0].Op != "masked_eq" || clone[0].Args[0].Mask&0x10000000 == 0 {
		t.Errorf("clone allow %+v, want masked against namespace flags", clone)
	}
	for _, r := range p.Seccomp.Rules {
		if r.Syscall == "ioctl" && r.Action == ActAllow && (len(r.Args) == 0 || r.Args[0].Value == 0x5412) {
			t.Errorf("ioctl allowed too widely: %s", ruleString(r))
		}
	}
}

func TestLandlockDegradesByABI(t *testing.T) {
	c := catalog(t)
	for _, tc := range []struct {
		abi      int
		degraded int
	}{{0, 7}, {3, 4}, {6, 1}, {7, 1}, {9, 0}} {
		cfg := permissive()
		m := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "probe"}
		set, err := c.Resolve(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Compile(m, set, cfg, Host{Arch: "amd64", LandlockABI: tc.abi, CgroupVersion: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Landlock.Degraded) != tc.degraded {
			t.Errorf("ABI %d: %d degradations, want %d: %+v", tc.abi, len(p.Landlock.Degraded), tc.degraded, p.Landlock.Degraded)
		}
	}
}

func TestDiffFlagsWiderPolicies(t *testing.T) {
	c := catalog(t)
	narrow := compileNames(t, c, permissive(), []string{"read_blockchain"})
	wide := compileNames(t, c, permissive(), []string{"read_blockchain", "governance_vote"})
	if d := Diff(narrow, wide); len(d.Wider) == 0 || !slices.Contains(d.Added, "capability governance_vote") {
		t.Errorf("adding governance_vote: %+v", d)
	}
	if d := Diff(wide, narrow); len(d.Wider) != 0 {
		t.Errorf("dropping governance_vote is reported wider: %v", d.Wider)
	}
	bigger := permissive()
	bigger.Limits.MemoryBytes *= 2
	roomy := compileNames(t, c, bigger, []string{"read_blockchain"})
	if d := Diff(narrow, roomy); len(d.Wider) != 1 || !strings.Contains(d.Wider[0], "memory_bytes") {
		t.Errorf("raising memory: %+v", d)
	}
}

func TestScoreRewardsConfinement(t *testing.T) {
	p := compileNames(t, catalog(t), permissive(), []string{"read_blockchain"})
	base := Score(p)
	if base > 1.5 {
		t.Errorf("a read-only module scores %.2f, want SAFE (<= 1.5)", base)
	}
	weak := *p
	weak.Namespaces = nil
	weak.Process.NoNewPrivileges.Enabled = false
	if s := Score(&weak); s <= base {
		t.Errorf("dropping namespaces and no_new_privs did not raise the score: %.2f <= %.2f", s, base)
	}
	noLandlock := *p
	noLandlock.Host.LandlockABI = 0
	if s := Score(&noLandlock); s <= base {
		t.Errorf("a kernel without Landlock did not raise the score: %.2f <= %.2f", s, base)
	}
}

func FuzzCompile(f *testing.F) {
	c := catalog(f)
	all := availableNames(c)
	f.Add(uint64(0), 6)
	f.Add(uint64(0xffff), 0)
	f.Add(uint64(5), 9)
	f.Fuzz(func(t *testing.T, mask uint64, abi int) {
		var names []string
		for i, n := range all {
			if mask&(1<<uint(i%64)) != 0 {
				names = append(names, n)
			}
		}
		cfg := permissive()
		m := &manifest.Manifest{Name: "fuzz", Version: "1.0.0", EntryPoint: "fuzz", Capabilities: names}
		set, err := c.Resolve(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Compile(m, set, cfg, Host{Arch: "amd64", LandlockABI: abi, CgroupVersion: 1})
		if err != nil {
			t.Fatal(err)
		}
		assertNoUngrantedItems(t, p, names)
		if s := Score(p); s < 0 || s > 10 {
			t.Fatalf("score %.2f out of range", s)
		}
	})
}
