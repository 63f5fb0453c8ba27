package policy

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// MinLandlockABI is the lowest Landlock ABI the runtime accepts unless the
// operator sets another: ABI 6 brings the abstract-unix and signal scopes.
const MinLandlockABI = nodeconfig.ScopesLandlockABI

// cpuPeriodMicros is the CFS period the CPU quota is expressed against.
const cpuPeriodMicros = 100_000

// Compile builds the Policy for one module. It is pure: the same inputs
// always give the same Policy, and nothing outside the arguments is read.
func Compile(m *manifest.Manifest, caps *capabilities.Set, op *nodeconfig.Config, host Host) (*Policy, error) {
	if m == nil || caps == nil || op == nil {
		return nil, errors.New("policy: compile needs a manifest, a capability set and a node config")
	}
	if host.Arch == "" {
		return nil, errors.New("policy: host arch is unknown")
	}
	switch host.StorageBackend {
	case StorageProject, StorageImage, StorageNone:
	default:
		return nil, fmt.Errorf("policy: host storage_backend %q is not %q, %q or empty", host.StorageBackend, StorageProject, StorageImage)
	}
	p := &Policy{
		Module: Module{Name: m.Name, Version: m.Version, EntryPoint: m.EntryPoint},
		Host:   host,
	}
	if m.Binary != nil {
		p.Module.BinaryHash = m.Binary.Hash
	}
	for _, c := range caps.Granted {
		p.Capabilities = append(p.Capabilities, Capability{
			Name: c.Name, Description: c.Description, Tier: c.Tier, Danger: c.Danger, Provider: c.Provider,
		})
	}
	seccomp, err := compileSeccomp(caps, host)
	if err != nil {
		return nil, err
	}
	p.Seccomp = seccomp
	p.Landlock = compileLandlock(m, caps, op, host)
	p.Namespaces = compileNamespaces()
	p.Process = compileProcess(m)
	p.Cgroup, p.Rlimits = compileLimits(op.EffectiveLimits(m.Name))
	p.Storage = compileStorage(op, m.Name, host)
	p.Mounts = compileMounts(m, op.EffectiveLimits(m.Name))
	p.Env = compileEnv(m, op)
	p.Hub = compileHub(m, caps)
	return p, nil
}

func compileSeccomp(caps *capabilities.Set, host Host) (Seccomp, error) {
	s := Seccomp{
		DefaultAction: ActErrno,
		DefaultErrno:  "ENOSYS",
		Default: Provenance{Source: SourceSandbox,
			Reason: "unknown syscalls fail with ENOSYS so libc and Go fall back instead of aborting"},
		Arch: host.Arch,
		BadArch: Provenance{Source: SourceSandbox,
			Reason: "native arch only: foreign and x32 syscall numbers kill the process (i386 socketcall hides its arguments)"},
	}
	b := ruleBuilder{index: map[string]int{}}
	for _, g := range caps.Base {
		b.addGroup(g, Provenance{Source: BaseSource(g.Name), Reason: g.Description})
	}
	for _, c := range caps.Granted {
		for _, name := range c.SeccompGroups {
			g := caps.Groups[name]
			if g == nil {
				return Seccomp{}, fmt.Errorf("policy: capability %q names unknown seccomp group %q", c.Name, name)
			}
			b.addGroup(g, Provenance{Source: CapabilitySource(c.Name), Reason: g.Description})
		}
	}
	// The deny list goes last and wins: an allow for an always-denied
	// syscall is dropped, whoever asked for it.
	denied := map[string]bool{}
	for _, r := range caps.Deny.Rules {
		for _, sc := range r.Syscalls {
			if len(r.Args) == 0 {
				denied[sc] = true
			}
			b.add(SyscallRule{Syscall: sc, Action: ActErrno, Errno: "EPERM", Args: convertArgs(r.Args)},
				Provenance{Source: SourceDeny, Reason: r.Reason})
		}
	}
	for _, r := range b.rules {
		if denied[r.Syscall] && !(r.Action == ActErrno && r.Errno == "EPERM" && len(r.Args) == 0) {
			continue
		}
		s.Rules = append(s.Rules, r)
	}
	sort.SliceStable(s.Rules, func(i, j int) bool { return ruleKey(s.Rules[i]) < ruleKey(s.Rules[j]) })
	s.Families = compileFamilies(caps.Families, &s)
	if err := checkFamilies(s.Families); err != nil {
		return Seccomp{}, err
	}
	return s, nil
}

// checkFamilies refuses a filter that treats siblings differently without
// saying why, and a "differs" note on a member that no longer differs: the
// first is a hole or a breakage, the second a reason that has gone stale.
func checkFamilies(fams []SyscallFamily) error {
	for _, f := range fams {
		var first *FamilyMember
		for i := range f.Members {
			m := &f.Members[i]
			if m.Differs != "" {
				continue
			}
			if first == nil {
				first = m
				continue
			}
			if m.Treatment != first.Treatment {
				return fmt.Errorf("policy: syscall family %s: %s gets %q but %s gets %q; treat them alike or give the reason in policies/syscalls.toml families.%s.differs",
					f.Name, m.Syscall, m.Treatment, first.Syscall, first.Treatment, f.Name)
			}
		}
		if first == nil {
			return fmt.Errorf("policy: syscall family %s: every member is marked as differing", f.Name)
		}
		for _, m := range f.Members {
			if m.Differs != "" && m.Treatment == first.Treatment {
				return fmt.Errorf("policy: syscall family %s: families.%s.differs.%s says it is treated otherwise, but it gets %q like %s",
					f.Name, f.Name, m.Syscall, m.Treatment, first.Syscall)
			}
		}
	}
	return nil
}

// compileFamilies records, for each family of sibling syscalls, what the
// finished filter does with every member, and tags each rule with its
// family. It only describes the rules; the rules alone decide.
func compileFamilies(fams []*capabilities.Family, s *Seccomp) []SyscallFamily {
	byName := map[string][]int{}
	for i, r := range s.Rules {
		byName[r.Syscall] = append(byName[r.Syscall], i)
	}
	out := make([]SyscallFamily, 0, len(fams))
	for _, f := range fams {
		sf := SyscallFamily{Name: f.Name, Reason: f.Reason}
		for _, sc := range f.Syscalls {
			var rules []SyscallRule
			for _, i := range byName[sc] {
				s.Rules[i].Family = f.Name
				rules = append(rules, s.Rules[i])
			}
			sf.Members = append(sf.Members, FamilyMember{
				Syscall: sc, Treatment: treatment(rules, s.DefaultAction, s.DefaultErrno),
				ArgIndex: argIndexes(rules), Differs: f.Differs[sc],
			})
		}
		out = append(out, sf)
	}
	return out
}

// treatment describes what a filter does with one syscall given its rules,
// leaving argument positions out so siblings compare equal. Rules that share
// an action and each test one bit of one argument (the deny list's clone
// flags) read as one: "if any of these bits is set".
func treatment(rules []SyscallRule, def Action, defErrno string) string {
	if len(rules) == 0 {
		return actionString(def, defErrno) + " (not in the policy)"
	}
	var parts []string
	bits := map[string]uint64{} // action -> the bits its one-bit rules test
	conditional := true
	for _, r := range rules {
		act := actionString(r.Action, r.Errno)
		switch {
		case len(r.Args) == 0:
			conditional = false
			parts = append(parts, act)
		case len(r.Args) == 1 && r.Args[0].Op == "masked_eq" && r.Args[0].Value == r.Args[0].Mask && bitCount(r.Args[0].Mask) == 1:
			bits[act] |= r.Args[0].Mask
		default:
			parts = append(parts, act+" if "+condString(r.Args, false))
		}
	}
	for act, mask := range bits {
		if bitCount(mask) == 1 {
			parts = append(parts, fmt.Sprintf("%s if arg&%#x==%#x", act, mask, mask))
		} else {
			parts = append(parts, fmt.Sprintf("%s if arg&%#x!=0x0", act, mask))
		}
	}
	sort.Strings(parts)
	if conditional {
		parts = append(parts, "otherwise "+actionString(def, defErrno))
	}
	return strings.Join(parts, "; ")
}

func bitCount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

func argIndexes(rules []SyscallRule) []uint {
	var out []uint
	seen := map[uint]bool{}
	for _, r := range rules {
		for _, a := range r.Args {
			if !seen[a.Index] {
				seen[a.Index] = true
				out = append(out, a.Index)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// compileStorage states the /data quota and whether this host enforces it.
func compileStorage(op *nodeconfig.Config, name string, host Host) Storage {
	bytes, inodes := op.EffectiveDisk(name)
	why := "disk bytes and inodes on /data: a module cannot fill the node's disk"
	st := Storage{
		Bytes:   Limit{Value: bytes, Why: Provenance{Source: SourceOperator, Reason: why}},
		Inodes:  Limit{Value: inodes, Why: Provenance{Source: SourceOperator, Reason: why}},
		Backend: host.StorageBackend,
	}
	switch host.StorageBackend {
	case StorageProject:
		st.Why = Provenance{Source: SourceSandbox, Reason: "a project quota on the data dir's filesystem: the kernel refuses writes past it (EDQUOT)"}
	case StorageImage:
		// ext4 fixes inodes at mkfs: the image gets at least
		// min(inodes, bytes/4096), rounded up (runtime/quota); ps shows
		// the limit that holds.
		st.Why = Provenance{Source: SourceSandbox, Reason: fmt.Sprintf(
			"an ext4 image of that size on a loop device, mounted nosuid,nodev,noexec: writes past it fail with ENOSPC; its metadata takes part of the bytes, and it holds at least %d inodes (one per 4 KiB at most)",
			min(inodes, bytes/4096))}
	default:
		st.Why = Provenance{Source: SourceSandbox, Reason: "NOT ENFORCED: the host facts name no quota backend (a project quota or a per-module image), so /data can grow until the node's disk is full"}
	}
	return st
}

// ruleBuilder merges identical rules so each appears once with every source.
type ruleBuilder struct {
	rules []SyscallRule
	index map[string]int
}

func (b *ruleBuilder) addGroup(g *capabilities.SyscallGroup, why Provenance) {
	for _, sc := range g.Syscalls {
		b.add(SyscallRule{Syscall: sc, Action: ActAllow}, why)
	}
	for _, r := range g.Rules {
		rw := why
		if r.Reason != "" {
			rw.Reason = r.Reason
		}
		b.add(SyscallRule{Syscall: r.Syscall, Action: Action(r.Action), Errno: r.Errno, Args: convertArgs(r.Args)}, rw)
	}
}

func (b *ruleBuilder) add(r SyscallRule, why Provenance) {
	k := ruleKey(r)
	if i, ok := b.index[k]; ok {
		b.rules[i].Sources = append(b.rules[i].Sources, why)
		return
	}
	r.Sources = []Provenance{why}
	b.index[k] = len(b.rules)
	b.rules = append(b.rules, r)
}

func ruleKey(r SyscallRule) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s|%s|%s", r.Syscall, r.Action, r.Errno)
	for _, a := range r.Args {
		fmt.Fprintf(&sb, "|%d %s %#x %#x", a.Index, a.Op, a.Mask, a.Value)
	}
	return sb.String()
}

func convertArgs(in []capabilities.Arg) []Arg {
	if len(in) == 0 {
		return nil
	}
	out := make([]Arg, len(in))
	for i, a := range in {
		out[i] = Arg{Index: a.Index, Op: a.Op, Mask: a.Mask, Value: a.Value}
	}
	return out
}

// Landlock access sets, by the names go-landlock and the kernel use.
var (
	accessRead  = []string{"read_file", "read_dir"}
	accessExec  = []string{"execute", "read_file"}
	accessWrite = []string{"read_file", "read_dir", "write_file", "remove_file", "remove_dir",
		"make_reg", "make_dir", "make_sock", "make_fifo", "make_sym", "refer", "truncate"}
)

func compileLandlock(m *manifest.Manifest, caps *capabilities.Set, op *nodeconfig.Config, host Host) Landlock {
	minABI := op.Sandbox.MinLandlockABI
	if minABI == 0 {
		minABI = MinLandlockABI
	}
	sb := func(reason string) Provenance { return Provenance{Source: SourceSandbox, Reason: reason} }
	l := Landlock{
		MinABI: minABI,
		Rules: []PathRule{
			{Path: path.Join(ModuleDir, m.EntryPoint), Access: accessExec, Why: sb("the verified module binary: the only file it may execute")},
			{Path: ConfigPath, Access: []string{"read_file"}, Why: sb("its merged configuration, read-only")},
			{Path: DataDir, Access: accessWrite, Why: sb("its own database directory")},
			{Path: TmpDir, Access: accessWrite, Why: sb("a small private scratch space")},
			{Path: "/dev/null", Access: []string{"read_file", "write_file"}, Why: sb("libraries open /dev/null for discarded output")},
		},
		Scopes: []Scope{
			{Name: "abstract_unix_socket", MinABI: 6, Why: sb("no abstract Unix sockets outside the sandbox (CVE-2020-15257 class)")},
			{Name: "signal", MinABI: 6, Why: sb("no signals to processes outside the sandbox")},
		},
	}
	for _, c := range caps.Granted {
		for _, r := range c.Landlock {
			l.Rules = append(l.Rules, PathRule{Path: r.Path, Access: r.Access,
				Why: Provenance{Source: CapabilitySource(c.Name), Reason: r.Reason}})
		}
	}
	l.Degraded = landlockDegradations(host.LandlockABI)
	return l
}

// landlockDegradations lists what the host's Landlock ABI cannot enforce,
// and what else in the policy covers for it.
func landlockDegradations(abi int) []Degradation {
	features := []Degradation{
		{Feature: "filesystem access rules", NeedsABI: 1, Effect: "no filesystem confinement beyond the mount namespace and read-only rootfs"},
		{Feature: "refer (cross-directory rename and link)", NeedsABI: 2, Effect: "renames between the writable dirs are refused outright"},
		{Feature: "truncate right", NeedsABI: 3, Effect: "truncate is not separately controlled"},
		{Feature: "TCP bind/connect rules", NeedsABI: 4, Effect: "none needed: seccomp allows only AF_UNIX sockets and the net namespace has only loopback"},
		{Feature: "ioctl on devices", NeedsABI: 5, Effect: "seccomp pins ioctl to four harmless commands"},
		{Feature: "abstract-unix and signal scopes", NeedsABI: 6, Effect: "the private network namespace still isolates abstract sockets; the pid namespace hides other processes"},
		{Feature: "pathname Unix socket connect rules", NeedsABI: 9, Effect: "the mount namespace shows only the hub socket, so there is nothing else to connect to"},
	}
	var out []Degradation
	for _, f := range features {
		if abi < f.NeedsABI {
			out = append(out, f)
		}
	}
	return out
}

func compileNamespaces() []Namespace {
	sb := func(reason string) Provenance { return Provenance{Source: SourceSandbox, Reason: reason} }
	return []Namespace{
		{Type: "mount", Detail: "only the paths listed under mounts", Why: sb("the module sees its own files and the hub socket, nothing of the host")},
		{Type: "pid", Why: sb("no other process is visible or signalable")},
		{Type: "ipc", Why: sb("no shared memory or message queues with the host")},
		{Type: "uts", Why: sb("its own hostname")},
		{Type: "cgroup", Why: sb("its own cgroup is its root; the host's tree stays hidden")},
		{Type: "network", Detail: "loopback only", Why: sb("no route anywhere: the hub socket is the only way out")},
		{Type: "user", Detail: "a distinct host uid/gid range per module", Why: sb("root inside maps to an unprivileged host uid no other module shares")},
	}
}

func compileProcess(m *manifest.Manifest) Process {
	sb := func(reason string) Provenance { return Provenance{Source: SourceSandbox, Reason: reason} }
	return Process{
		NoNewPrivileges: Flag{Enabled: true, Why: sb("setuid binaries and file capabilities cannot raise privileges")},
		ReadonlyRootfs:  Flag{Enabled: true, Why: sb("only /data and /tmp are writable")},
		Capabilities:    []string{},
		CapabilitiesWhy: sb("a module needs no Linux capability: the hub does privileged work"),
		MaskedPaths: []PathItem{
			{Path: "/proc/kcore", Why: sb("kernel memory")},
			{Path: "/proc/keys", Why: sb("kernel keyrings")},
			{Path: "/proc/timer_list", Why: sb("host timer details")},
			{Path: "/proc/sched_debug", Why: sb("host scheduler details")},
			{Path: "/proc/acpi", Why: sb("host hardware")},
			{Path: "/proc/scsi", Why: sb("host hardware")},
			{Path: "/sys/firmware", Why: sb("host firmware")},
		},
		ReadonlyPaths: []PathItem{
			{Path: "/proc/bus", Why: sb("host devices")},
			{Path: "/proc/fs", Why: sb("host filesystems")},
			{Path: "/proc/irq", Why: sb("host interrupts")},
			{Path: "/proc/sys", Why: sb("kernel tunables")},
			{Path: "/proc/sysrq-trigger", Why: sb("host-wide SysRq")},
		},
		Args: []string{path.Join(ModuleDir, m.EntryPoint)},
		Cwd:  DataDir,
		UID:  ModuleUID,
	}
}

func compileLimits(l nodeconfig.Limits) (Cgroup, []Rlimit) {
	op := func(reason string) Provenance { return Provenance{Source: SourceOperator, Reason: reason} }
	c := Cgroup{
		MemoryBytes:     Limit{Value: l.MemoryBytes, Why: op("memory ceiling; the kernel OOM-kills the module, not the node")},
		Pids:            Limit{Value: l.Pids, Why: op("process and thread ceiling: stops fork bombs")},
		CPUQuotaMicros:  Limit{Value: int64(l.CPUs * cpuPeriodMicros), Why: op(fmt.Sprintf("%.2f cores at most", l.CPUs))},
		CPUPeriodMicros: cpuPeriodMicros,
	}
	r := []Rlimit{
		{Type: "RLIMIT_NOFILE", Soft: l.OpenFiles, Hard: l.OpenFiles, Why: op("open descriptors")},
		{Type: "RLIMIT_CORE", Soft: 0, Hard: 0, Why: Provenance{Source: SourceSandbox, Reason: "no core dumps: memory may hold secrets"}},
	}
	return c, r
}

func compileMounts(m *manifest.Manifest, l nodeconfig.Limits) []Mount {
	sb := func(reason string) Provenance { return Provenance{Source: SourceSandbox, Reason: reason} }
	return []Mount{
		{Destination: "/proc", Source: MountProc, Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}, Why: sb("its own pid namespace's processes")},
		{Destination: "/dev", Source: MountDev, Type: "tmpfs", Options: []string{"nosuid", "noexec", "mode=755", "size=64k"}, Why: sb("a minimal /dev: null, zero, full, random, urandom, tty")},
		{Destination: path.Join(ModuleDir, m.EntryPoint), Source: MountBinary, Type: "bind", Options: []string{"bind", "ro", "nosuid", "nodev"}, Why: sb("the verified store entry, never the original path")},
		{Destination: ShimPath, Source: MountShim, Type: "bind", Options: []string{"bind", "ro", "nosuid", "nodev"}, Why: sb("applies Landlock, then execs the module")},
		{Destination: ConfigPath, Source: MountConfig, Type: "bind", Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}, Why: sb("the merged config; node settings win")},
		{Destination: HubSocketPath, Source: MountSocket, Type: "bind", Options: []string{"bind", "nosuid", "nodev", "noexec"}, Why: sb("this module's own hub socket: identity comes from it")},
		{Destination: DataDir, Source: MountData, Type: "bind", Options: []string{"bind", "rw", "nosuid", "nodev", "noexec"}, Why: sb("data/modules/" + m.Name + "/db, under a 0700 parent owned by this module's uid and inside its disk quota")},
		{Destination: TmpDir, Source: MountTmpfs, Type: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", fmt.Sprintf("size=%d", l.TmpBytes), "mode=1777"}, Why: Provenance{Source: SourceOperator, Reason: "small scratch space, counted against its memory"}},
	}
}

func compileEnv(m *manifest.Manifest, op *nodeconfig.Config) []EnvVar {
	sb := func(reason string) Provenance { return Provenance{Source: SourceSandbox, Reason: reason} }
	return []EnvVar{
		{Name: "BLVM_MODULE_NAME", Value: m.Name, Why: sb("the module's name as the hub knows it")},
		{Name: "BLVM_MODULE_VERSION", Value: m.Version, Why: sb("the verified version")},
		{Name: "BLVM_SOCKET", Value: HubSocketPath, Why: sb("where the hub listens")},
		{Name: "BLVM_CONFIG", Value: ConfigPath, Why: sb("the merged config file")},
		{Name: "BLVM_DATA_DIR", Value: DataDir, Why: sb("the module's database directory")},
		{Name: "BLVM_NETWORK", Value: op.Node.Network, Why: Provenance{Source: SourceOperator, Reason: "the chain the node runs"}},
	}
}

func compileHub(m *manifest.Manifest, caps *capabilities.Set) HubACL {
	acl := HubACL{PublishNamespace: m.Name}
	sb := Provenance{Source: SourceSandbox, Reason: "every module may greet the hub, log and answer health checks"}
	add := func(list *[]HubGrant, name string, why Provenance) {
		for i := range *list {
			if (*list)[i].Name == name {
				(*list)[i].Sources = append((*list)[i].Sources, why)
				return
			}
		}
		*list = append(*list, HubGrant{Name: name, Sources: []Provenance{why}})
	}
	for _, base := range []string{"hub.Handshake", "hub.Log", "hub.Ping"} {
		add(&acl.Methods, base, sb)
	}
	for _, c := range caps.Granted {
		why := Provenance{Source: CapabilitySource(c.Name), Reason: c.Description}
		for _, meth := range c.HubMethods {
			add(&acl.Methods, meth, why)
		}
		for _, ev := range c.Events {
			add(&acl.Events, ev, why)
		}
	}
	sort.SliceStable(acl.Methods, func(i, j int) bool { return acl.Methods[i].Name < acl.Methods[j].Name })
	sort.SliceStable(acl.Events, func(i, j int) bool { return acl.Events[i].Name < acl.Events[j].Name })
	return acl
}
