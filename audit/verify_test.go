//go:build cgo && seccomp && linux && amd64

package audit

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/audit/bpf"
	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
	"github.com/blvm/blvm-sandbox/audit/seccompabi"
	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
)

func TestMain(m *testing.M) {
	kernelfilter.ChildMain()
	os.Exit(m.Run())
}

var host = policy.Host{Arch: "amd64", LandlockABI: 7, CgroupVersion: 1}

// loaded is the stack the runtime would load for p, loaded and read back.
func loaded(t *testing.T, p *policy.Policy) bpf.Stack {
	t.Helper()
	cfg, err := p.SeccompConfig()
	if err != nil {
		t.Fatal(err)
	}
	l, err := kernelfilter.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var s bpf.Stack
	for i, insns := range l.Programs {
		prog, err := bpf.New(l.Names[i], insns)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, prog)
	}
	return s
}

func verify(t *testing.T, p *policy.Policy) *Report {
	t.Helper()
	stack := loaded(t, p)
	if len(stack) != 2 {
		t.Fatalf("%d filters loaded, want libcontainer's and the shim's", len(stack))
	}
	r, err := Verify(p, stack)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_ = r.WriteText(&out, 20)
	t.Logf("%s:\n%s", p.Module.Name, out.String())
	if len(r.Mismatches) > 0 {
		t.Errorf("%s: %d mismatches between the policy and the loaded filters", p.Module.Name, len(r.Mismatches))
	}
	if r.Syscalls["x86_64"] < 450 || r.Syscalls["x32"] < 548 || r.Syscalls["i386"] < 450 || r.ArgCases == 0 {
		t.Errorf("%s: too few cases checked: %v, %d argument cases", p.Module.Name, r.Syscalls, r.ArgCases)
	}
	return r
}

func TestVerifyExamples(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading filters back needs CAP_SYS_ADMIN")
	}
	dirs, err := filepath.Glob("../examples/*/module.toml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no example modules: %v", err)
	}
	cat, err := capabilities.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range dirs {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			m, err := manifest.Parse(path)
			if err != nil && m == nil {
				t.Fatal(err)
			}
			cfg := nodeconfig.Default()
			set, _, err := cat.ResolveAsRequested(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			p, err := policy.Compile(m, set, cfg, host)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, p)
		})
	}
}

// The capability sets of FuzzCompile's seeds (policy/compile_test.go),
// every capability at once, and random sets.
func TestVerifyCapabilitySets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading filters back needs CAP_SYS_ADMIN")
	}
	cat, err := capabilities.Default()
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for n, c := range cat.Capabilities {
		if c.Status == capabilities.StatusAvailable {
			all = append(all, n)
		}
	}
	slices.Sort(all)
	masks := []uint64{0, 0xffff, 5, ^uint64(0)}
	rng := rand.New(rand.NewSource(17))
	for range 4 {
		masks = append(masks, rng.Uint64())
	}
	cfg := nodeconfig.Default()
	cfg.Capabilities.MaxTier = nodeconfig.Tiers[len(nodeconfig.Tiers)-1]
	for _, mask := range masks {
		var names []string
		for i, n := range all {
			if mask&(1<<uint(i%64)) != 0 {
				names = append(names, n)
			}
		}
		m := &manifest.Manifest{Name: "fuzz", Version: "1.0.0", EntryPoint: "fuzz", Capabilities: names}
		set, err := cat.Resolve(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := policy.Compile(m, set, cfg, host)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("capabilities %s", strings.Join(names, ","))
		verify(t, p)
	}
}

// The checker must be able to fail: each wrong stack below must show
// mismatches, and exactly of the kind its fault predicts.
func TestVerifyCatchesWrongFilters(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading filters back needs CAP_SYS_ADMIN")
	}
	cat, err := capabilities.Default()
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse("../examples/block-logger/module.toml")
	if err != nil && m == nil {
		t.Fatal(err)
	}
	cfg := nodeconfig.Default()
	set, _, err := cat.ResolveAsRequested(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(m, set, cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	good := loaded(t, p)
	mutate := func(t *testing.T, i int, f func([]unix.SockFilter) bool) bpf.Stack {
		insns := slices.Clone(good[i].Insns)
		if !f(insns) {
			t.Fatal("nothing to mutate")
		}
		prog, err := bpf.New("mutated", insns)
		if err != nil {
			t.Fatal(err)
		}
		s := slices.Clone(good)
		s[i] = prog
		return s
	}
	allowAll, err := bpf.New("allow-all", []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: seccompabi.RetAllow}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		stack bpf.Stack
		// every mismatch must satisfy ok, and there must be at least min
		ok  func(Mismatch) bool
		min int
	}{
		{
			name:  "no shim filter: foreign arches only lose a thread",
			stack: bpf.Stack{good[0]},
			ok: func(m Mismatch) bool {
				// x86_64 numbers with the x32 bit (0x7fffffff, -1) included.
				x32 := m.Arch == "x86_64" && uint32(m.Nr)&seccompabi.X32Bit != 0
				return (m.Arch == "i386" || m.Arch == "x32" || x32) && m.Policy == seccompabi.RetKillProcess && m.Filter != seccompabi.RetKillProcess
			},
			min: 1024 + 600,
		},
		{
			name:  "shim filter replaced by allow-all",
			stack: bpf.Stack{good[0], allowAll},
			ok: func(m Mismatch) bool {
				return m.Policy == seccompabi.RetKillProcess && m.Filter != seccompabi.RetKillProcess
			},
			min: 1024,
		},
		{
			name: "an ioctl command pinned to the wrong value",
			stack: mutate(t, 0, func(in []unix.SockFilter) bool {
				for i := range in {
					if in[i].Code == unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K && in[i].K == unix.TCGETS {
						in[i].K = unix.TCGETS + 1
						return true
					}
				}
				return false
			}),
			ok:  func(m Mismatch) bool { return m.Syscall == "ioctl" },
			min: 1,
		},
		{
			name: "ENOSYS turned into EPERM",
			stack: mutate(t, 0, func(in []unix.SockFilter) bool {
				n := 0
				for i := range in {
					if in[i].Code == unix.BPF_RET|unix.BPF_K && in[i].K == seccompabi.Errno(38) {
						in[i].K = seccompabi.Errno(1)
						n++
					}
				}
				return n > 0
			}),
			ok:  func(m Mismatch) bool { return m.Policy == seccompabi.Errno(38) && m.Filter == seccompabi.Errno(1) },
			min: 100,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Verify(p, c.stack)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Mismatches) < c.min {
				t.Fatalf("%d mismatches, want at least %d", len(r.Mismatches), c.min)
			}
			for _, m := range r.Mismatches {
				if !c.ok(m) {
					t.Fatalf("unexpected mismatch %s", m)
				}
			}
			t.Logf("%d mismatches, e.g. %s", len(r.Mismatches), r.Mismatches[0])
		})
	}
}
