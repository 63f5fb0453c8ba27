package policy

import (
	"fmt"
	"math"
	"strings"
)

// Control is one row of the explain table: a single confinement control,
// what it is set to, and how much it leaves exposed.
//
// Weights follow systemd-analyze security's table where a control has an
// equivalent there (PrivateNetwork 2500, PrivateUsers 1000, PrivateMounts
// 1000, ProtectHostname 50, NoNewPrivileges, SystemCallFilter and
// SystemCallArchitectures 1000, address families and capabilities 1500).
// Rows systemd has no equivalent for (cgroup limits, disk quota, Landlock, hub access)
// are weighted by us; docs/explain.md lists every weight and its origin.
type Control struct {
	Name     string  `json:"name"`
	Value    string  `json:"value"`
	Verdict  string  `json:"verdict"` // ok, weak, exposed
	Why      string  `json:"why"`
	Source   string  `json:"source"`
	Weight   int     `json:"weight"`
	Exposure float64 `json:"exposure"` // 0 confined .. 1 exposed
}

// Verdicts.
const (
	VerdictOK      = "ok"
	VerdictWeak    = "weak"
	VerdictExposed = "exposed"
)

// dangerExposure is how much of the hub's surface a capability of a given
// danger opens. A module with no capabilities still talks to the hub.
var dangerExposure = map[string]float64{"low": 0.05, "medium": 0.15, "high": 0.4, "critical": 0.8}

// Controls lists every control of p, in a fixed order.
func Controls(p *Policy) []Control {
	var cs []Control
	add := func(name, value string, exposure float64, weight int, why Provenance) {
		verdict := VerdictOK
		switch {
		case exposure >= 0.5:
			verdict = VerdictExposed
		case exposure > 0:
			verdict = VerdictWeak
		}
		cs = append(cs, Control{Name: name, Value: value, Verdict: verdict, Why: why.Reason,
			Source: why.Source, Weight: weight, Exposure: round2(exposure)})
	}

	s := p.Seccomp
	def := 1.0
	if s.DefaultAction != ActAllow {
		def = 0
	}
	add("seccomp default action", actionString(s.DefaultAction, s.DefaultErrno), def, 1000, s.Default)
	add("seccomp architectures", s.Arch+" only", 0, 1000, s.BadArch)

	missing := missingDenials(p)
	denyVal := fmt.Sprintf("%d syscalls EPERM", countDenied(p))
	denyWhy := Provenance{Source: SourceDeny, Reason: "io_uring, userfaultfd, bpf, ptrace, keyctl, mount API, namespaces, kexec..."}
	if len(missing) > 0 {
		denyVal += "; NOT denied: " + strings.Join(missing, ",")
	}
	add("seccomp always-denied list", denyVal, float64(len(missing))/float64(len(dangerousSyscalls)), 1000, denyWhy)

	fam, famWhy := socketFamilies(p)
	famExp := 0.0
	if fam != "AF_UNIX only" {
		famExp = 1
	}
	add("socket address families", fam, famExp, 1500, famWhy)

	ns := map[string]Namespace{}
	for _, n := range p.Namespaces {
		ns[n.Type] = n
	}
	nsRow := func(typ string, weight int) {
		n, ok := ns[typ]
		if !ok {
			add(typ+" namespace", "shared with host", 1, weight, Provenance{Source: SourceSandbox, Reason: "not isolated"})
			return
		}
		v := "private"
		if n.Detail != "" {
			v += ": " + n.Detail
		}
		add(typ+" namespace", v, 0, weight, n.Why)
	}
	nsRow("network", 2500)
	nsRow("user", 1000)
	nsRow("mount", 1000)
	nsRow("pid", 1000)
	nsRow("ipc", 500)
	nsRow("cgroup", 500)
	nsRow("uts", 50)

	flag := func(name string, f Flag, weight int) {
		e, v := 1.0, "no"
		if f.Enabled {
			e, v = 0, "yes"
		}
		add(name, v, e, weight, f.Why)
	}
	flag("no_new_privs", p.Process.NoNewPrivileges, 1000)
	flag("read-only root filesystem", p.Process.ReadonlyRootfs, 1000)
	capsVal, capsExp := "none", 0.0
	if len(p.Process.Capabilities) > 0 {
		capsVal, capsExp = strings.Join(p.Process.Capabilities, ","), 1
	}
	add("Linux capabilities", capsVal, capsExp, 1500, p.Process.CapabilitiesWhy)
	maskExp := 0.0
	if len(p.Process.MaskedPaths) == 0 {
		maskExp = 1
	}
	add("masked /proc and /sys paths", fmt.Sprintf("%d masked, %d read-only", len(p.Process.MaskedPaths), len(p.Process.ReadonlyPaths)),
		maskExp, 1000, Provenance{Source: SourceSandbox, Reason: "kernel memory, keyrings and tunables stay out of reach"})

	ll := p.Landlock
	llExp, llVal := 0.0, fmt.Sprintf("%d path rules, ABI %d (need %d)", len(ll.Rules), p.Host.LandlockABI, ll.MinABI)
	switch {
	case p.Host.LandlockABI == 0:
		llExp, llVal = 1, "unavailable on this kernel: the runtime refuses to start modules"
	case p.Host.LandlockABI < ll.MinABI:
		llExp, llVal = 0.5, llVal+": below the minimum, the runtime refuses to start modules"
	}
	add("Landlock filesystem rules", llVal, llExp, 1000,
		Provenance{Source: SourceSandbox, Reason: "exec only the module binary; write only /data and /tmp"})
	for _, sc := range ll.Scopes {
		e, v := 0.0, "scoped"
		if p.Host.LandlockABI < sc.MinABI {
			e, v = 1, fmt.Sprintf("not enforced: needs ABI %d", sc.MinABI)
		}
		add("Landlock scope "+sc.Name, v, e, 500, sc.Why)
	}

	limit := func(name string, l Limit, unit string, weight int) {
		e, v := 0.0, fmt.Sprintf("%d%s", l.Value, unit)
		if l.Value <= 0 {
			e, v = 1, "unlimited"
		}
		add(name, v, e, weight, l.Why)
	}
	limit("memory limit", Limit{Value: p.Cgroup.MemoryBytes.Value >> 20, Why: p.Cgroup.MemoryBytes.Why}, " MiB", 500)
	limit("pids limit", p.Cgroup.Pids, "", 500)
	cpu := p.Cgroup.CPUQuotaMicros
	cpuVal := "unlimited"
	cpuExp := 1.0
	if cpu.Value > 0 {
		cpuVal, cpuExp = fmt.Sprintf("%.2f cores", float64(cpu.Value)/float64(p.Cgroup.CPUPeriodMicros)), 0
	}
	add("cpu limit", cpuVal, cpuExp, 250, cpu.Why)
	st := p.Storage
	diskVal, diskExp := fmt.Sprintf("%d MiB, %d inodes on /data (%s)", st.Bytes.Value>>20, st.Inodes.Value, st.Backend), 0.0
	switch {
	case !st.Enforced():
		diskVal, diskExp = fmt.Sprintf("%d MiB, %d inodes configured, NOT ENFORCED", st.Bytes.Value>>20, st.Inodes.Value), 1
	case st.Bytes.Value <= 0 || st.Inodes.Value <= 0:
		diskVal, diskExp = "unlimited", 1
	}
	add("disk quota", diskVal, diskExp, 500, st.Why)
	add("environment", fmt.Sprintf("cleared; %d BLVM_* variables", len(p.Env)), 0, 100,
		Provenance{Source: SourceSandbox, Reason: "nothing of the node's environment leaks in"})

	// Hub access grows with every capability: 1 - prod(1 - d) never
	// decreases when a capability is added.
	keep := 1.0
	var names []string
	for _, c := range p.Capabilities {
		keep *= 1 - dangerExposure[c.Danger]
		names = append(names, c.Name)
	}
	hubVal := fmt.Sprintf("%d methods, %d event types", len(p.Hub.Methods), len(p.Hub.Events))
	hubWhy := Provenance{Source: "capabilities", Reason: "granted: " + strings.Join(names, ", ")}
	if len(names) == 0 {
		hubWhy.Reason = "no capabilities: handshake, log and ping only"
	}
	add("hub access", hubVal, 1-keep, 2000, hubWhy)
	return cs
}

// Score is the weighted exposure of p from 0.0 (fully confined) to 10.0,
// lower is better, as systemd-analyze security reports it.
func Score(p *Policy) float64 {
	var sum, total float64
	for _, c := range Controls(p) {
		sum += float64(c.Weight) * c.Exposure
		total += float64(c.Weight)
	}
	return math.Round(100*10*sum/total) / 100
}

// ScoreLabel names a score band.
func ScoreLabel(score float64) string {
	switch {
	case score <= 1.5:
		return "SAFE"
	case score <= 4:
		return "OK"
	case score <= 7:
		return "EXPOSED"
	default:
		return "UNSAFE"
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func actionString(a Action, errno string) string {
	if a == ActErrno {
		return "errno " + errno
	}
	return string(a)
}

// dangerousSyscalls are the denials DESIGN decision 5 requires. The score
// checks the compiled policy against this list rather than trusting the
// catalog to contain it.
var dangerousSyscalls = []string{
	"io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf", "perf_event_open",
	"ptrace", "process_vm_readv", "process_vm_writev", "keyctl", "mount", "umount2", "fsopen",
	"fsmount", "move_mount", "open_tree", "unshare", "setns", "kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module",
}

func unconditionalDeny(p *Policy) map[string]bool {
	out := map[string]bool{}
	for _, r := range p.Seccomp.Rules {
		if r.Action != ActAllow && len(r.Args) == 0 {
			out[r.Syscall] = true
		}
	}
	for _, r := range p.Seccomp.Rules {
		if r.Action == ActAllow {
			delete(out, r.Syscall)
		}
	}
	return out
}

func missingDenials(p *Policy) []string {
	denied := unconditionalDeny(p)
	var missing []string
	for _, sc := range dangerousSyscalls {
		if !denied[sc] {
			missing = append(missing, sc)
		}
	}
	return missing
}

func countDenied(p *Policy) int {
	n := 0
	for _, r := range p.Seccomp.Rules {
		if r.Action == ActErrno && r.Errno == "EPERM" && len(r.Args) == 0 {
			n++
		}
	}
	return n
}

// socketFamilies describes what socket(2) may create.
func socketFamilies(p *Policy) (string, Provenance) {
	for _, r := range p.Seccomp.Rules {
		if r.Syscall != "socket" || r.Action != ActAllow {
			continue
		}
		if len(r.Args) == 1 && r.Args[0].Index == 0 && r.Args[0].Op == "eq" && r.Args[0].Value == 1 {
			continue
		}
		return "unrestricted", r.Sources[0]
	}
	for _, r := range p.Seccomp.Rules {
		if r.Syscall == "socket" && r.Action == ActAllow {
			return "AF_UNIX only", r.Sources[0]
		}
	}
	return "none", Provenance{Source: SourceSandbox, Reason: "socket is not allowed"}
}
