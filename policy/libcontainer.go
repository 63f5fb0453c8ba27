package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/capabilities"
)

// HostPaths says where the symbolic pieces of a Policy live on the host, and
// which host ids the container's user namespace maps to. The runtime fills it
// in for each start; DefaultHostPaths gives the default layout for offline use.
type HostPaths struct {
	Rootfs     string // the container's (empty, read-only) root filesystem
	Binary     string // the verified store entry: store/sha256/<hex>
	Shim       string // the static Landlock shim
	Config     string // the merged module config
	Socket     string // this module's hub socket
	Data       string // data/modules/<name>/db
	CgroupPath string // absolute: from each hierarchy's root; relative: below the runtime's own cgroup
	UIDBase    uint32 // host uid that container uid 0 maps to
	GIDBase    uint32 // host gid that container gid 0 maps to
	IDCount    uint32 // size of the uid and gid ranges
}

// source resolves a symbolic mount source to a host path or a filesystem name.
func (h HostPaths) source(m Mount) (string, error) {
	var s string
	switch m.Source {
	case MountBinary:
		s = h.Binary
	case MountShim:
		s = h.Shim
	case MountConfig:
		s = h.Config
	case MountSocket:
		s = h.Socket
	case MountData:
		s = h.Data
	case MountTmpfs, MountDev:
		s = "tmpfs"
	case MountProc:
		s = "proc"
	default:
		return "", fmt.Errorf("mount %s: unknown symbolic source %q", m.Destination, m.Source)
	}
	if s == "" {
		return "", fmt.Errorf("mount %s: no host path for source %q", m.Destination, m.Source)
	}
	return s, nil
}

// seccompAction is one policy action in every form a renderer needs. It is
// the only place actions are translated, so libcontainer, OCI and the BPF
// listing cannot disagree.
type seccompAction struct {
	lc       configs.Action
	oci      specs.LinuxSeccompAction
	errnoRet *uint
}

func convertAction(a Action, errno string) (seccompAction, error) {
	switch a {
	case ActAllow:
		return seccompAction{lc: configs.Allow, oci: specs.ActAllow}, nil
	case ActErrno:
		n, ok := capabilities.Errnos[errno]
		if !ok {
			return seccompAction{}, fmt.Errorf("unknown errno %q", errno)
		}
		return seccompAction{lc: configs.Errno, oci: specs.ActErrno, errnoRet: &n}, nil
	case ActKill:
		// KillProcess, not Kill: libcontainer's Kill is SECCOMP_RET_KILL_THREAD,
		// which leaves the other threads of a Go or Rust module running.
		return seccompAction{lc: configs.KillProcess, oci: specs.ActKillProcess}, nil
	case ActNotify:
		return seccompAction{lc: configs.Notify, oci: specs.ActNotify}, nil
	}
	return seccompAction{}, fmt.Errorf("unknown action %q", a)
}

// seccompArg is one argument condition in libcontainer and OCI form.
type seccompArg struct {
	lc  configs.Arg
	oci specs.LinuxSeccompArg
}

func convertArg(a Arg) (seccompArg, error) {
	if a.Index > 5 {
		return seccompArg{}, fmt.Errorf("argument index %d out of range 0-5", a.Index)
	}
	var out seccompArg
	value, valueTwo := a.Value, uint64(0)
	switch a.Op {
	case "eq":
		out.lc.Op, out.oci.Op = configs.EqualTo, specs.OpEqualTo
	case "ne":
		out.lc.Op, out.oci.Op = configs.NotEqualTo, specs.OpNotEqual
	case "masked_eq":
		// libseccomp's SCMP_CMP_MASKED_EQ is (arg & datum_a) == datum_b, and
		// libcontainer and OCI pass Value as datum_a and ValueTwo as datum_b:
		// the mask goes first.
		out.lc.Op, out.oci.Op = configs.MaskEqualTo, specs.OpMaskedEqual
		value, valueTwo = a.Mask, a.Value
	default:
		return seccompArg{}, fmt.Errorf("unknown operator %q", a.Op)
	}
	out.lc.Index, out.lc.Value, out.lc.ValueTwo = a.Index, value, valueTwo
	out.oci.Index, out.oci.Value, out.oci.ValueTwo = a.Index, value, valueTwo
	return out, nil
}

// expandArgs gives the argument conditions of the one or more kernel rules
// that make up r. libseccomp, libcontainer and OCI have no masked_ne, so
// (arg & M) != V becomes one rule per bit b of M testing (arg & b) ==
// (V & b) ^ b: the rules share the action, so any bit that differs from V
// matches. One bit per rule also keeps each test inside one 32-bit half of
// the argument, so libseccomp's two-half comparison of 64-bit arguments
// cannot turn the "or" of the halves into an "and".
func expandArgs(args []Arg) [][]Arg {
	ne := -1
	for i, a := range args {
		if a.Op == "masked_ne" {
			ne = i
		}
	}
	if ne < 0 {
		return [][]Arg{args}
	}
	a := args[ne]
	var out [][]Arg
	for bit := uint64(1); bit != 0; bit <<= 1 {
		if a.Mask&bit == 0 {
			continue
		}
		one := append([]Arg(nil), args...)
		one[ne] = Arg{Index: a.Index, Op: "masked_eq", Mask: bit, Value: (a.Value & bit) ^ bit}
		out = append(out, one)
	}
	return out
}

// seccompArch checks a Go GOARCH and gives its OCI name. libcontainer's
// configs.Seccomp takes libseccomp-golang's names, which for these arches
// are the GOARCH names themselves.
func seccompArch(goarch string) (specs.Arch, error) {
	switch goarch {
	case "amd64":
		return specs.ArchX86_64, nil
	case "arm64":
		return specs.ArchAARCH64, nil
	case "riscv64":
		return specs.ArchRISCV64, nil
	case "ppc64le":
		return specs.ArchPPC64LE, nil
	case "s390x":
		return specs.ArchS390X, nil
	}
	return "", fmt.Errorf("no seccomp architecture for GOARCH %q", goarch)
}

// SeccompConfig renders the seccomp part of the policy for libcontainer.
//
// Architectures holds only the native one. libseccomp then sends every
// other audit arch to its bad-arch action, and on x86_64 its generated code
// also sends syscall numbers with the x32 bit (0x40000000) there, since x32
// is a separate libseccomp arch that is not in the filter. The bad-arch
// action is libseccomp's default, SECCOMP_RET_KILL_THREAD: libcontainer
// offers no way to change it. The Landlock shim therefore stacks a second,
// tiny filter that answers the same syscalls with KILL_PROCESS (see
// cmd/blvm-landlock-shim), so the whole module dies, not one thread.
func (p *Policy) SeccompConfig() (*configs.Seccomp, error) {
	s := p.Seccomp
	def, err := convertAction(s.DefaultAction, s.DefaultErrno)
	if err != nil {
		return nil, fmt.Errorf("seccomp default action: %w", err)
	}
	if _, err := seccompArch(s.Arch); err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	out := &configs.Seccomp{
		DefaultAction:   def.lc,
		DefaultErrnoRet: def.errnoRet,
		Architectures:   []string{s.Arch},
	}
	for _, r := range s.Rules {
		act, err := convertAction(r.Action, r.Errno)
		if err != nil {
			return nil, fmt.Errorf("seccomp rule %s: %w", r.Syscall, err)
		}
		for _, args := range expandArgs(r.Args) {
			sc := &configs.Syscall{Name: r.Syscall, Action: act.lc, ErrnoRet: act.errnoRet}
			for _, a := range args {
				ca, err := convertArg(a)
				if err != nil {
					return nil, fmt.Errorf("seccomp rule %s: %w", r.Syscall, err)
				}
				sc.Args = append(sc.Args, &ca.lc)
			}
			out.Syscalls = append(out.Syscalls, sc)
		}
	}
	return out, nil
}

// mountFlags splits fstab-style options into mount(2) flags and filesystem data.
func mountFlags(opts []string) (flags int, data string, err error) {
	var rest []string
	for _, o := range opts {
		switch o {
		case "bind":
			flags |= unix.MS_BIND
		case "rbind":
			flags |= unix.MS_BIND | unix.MS_REC
		case "ro":
			flags |= unix.MS_RDONLY
		case "rw":
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		default:
			if !strings.Contains(o, "=") {
				return 0, "", fmt.Errorf("unknown mount option %q", o)
			}
			rest = append(rest, o)
		}
	}
	return flags, strings.Join(rest, ","), nil
}

// namespaceTypes maps policy namespace names to libcontainer's and OCI's.
func namespaceType(t string) (configs.NamespaceType, specs.LinuxNamespaceType, error) {
	switch t {
	case "mount":
		return configs.NEWNS, specs.MountNamespace, nil
	case "pid":
		return configs.NEWPID, specs.PIDNamespace, nil
	case "ipc":
		return configs.NEWIPC, specs.IPCNamespace, nil
	case "uts":
		return configs.NEWUTS, specs.UTSNamespace, nil
	case "cgroup":
		return configs.NEWCGROUP, specs.CgroupNamespace, nil
	case "network":
		return configs.NEWNET, specs.NetworkNamespace, nil
	case "user":
		return configs.NEWUSER, specs.UserNamespace, nil
	}
	return "", "", fmt.Errorf("unknown namespace %q", t)
}

// rlimitType maps an RLIMIT_* name to its number.
func rlimitType(name string) (int, error) {
	switch name {
	case "RLIMIT_CPU":
		return unix.RLIMIT_CPU, nil
	case "RLIMIT_FSIZE":
		return unix.RLIMIT_FSIZE, nil
	case "RLIMIT_DATA":
		return unix.RLIMIT_DATA, nil
	case "RLIMIT_STACK":
		return unix.RLIMIT_STACK, nil
	case "RLIMIT_CORE":
		return unix.RLIMIT_CORE, nil
	case "RLIMIT_RSS":
		return unix.RLIMIT_RSS, nil
	case "RLIMIT_NPROC":
		return unix.RLIMIT_NPROC, nil
	case "RLIMIT_NOFILE":
		return unix.RLIMIT_NOFILE, nil
	case "RLIMIT_MEMLOCK":
		return unix.RLIMIT_MEMLOCK, nil
	case "RLIMIT_AS":
		return unix.RLIMIT_AS, nil
	case "RLIMIT_LOCKS":
		return unix.RLIMIT_LOCKS, nil
	case "RLIMIT_SIGPENDING":
		return unix.RLIMIT_SIGPENDING, nil
	case "RLIMIT_MSGQUEUE":
		return unix.RLIMIT_MSGQUEUE, nil
	case "RLIMIT_NICE":
		return unix.RLIMIT_NICE, nil
	case "RLIMIT_RTPRIO":
		return unix.RLIMIT_RTPRIO, nil
	case "RLIMIT_RTTIME":
		return unix.RLIMIT_RTTIME, nil
	}
	return 0, fmt.Errorf("unknown rlimit %q", name)
}

// minimalDevices are the device nodes of the container's tmpfs /dev, which
// the mount list promises: null, zero, full, random, urandom, tty.
func minimalDevices() []*devices.Device {
	dev := func(path string, major, minor int64) *devices.Device {
		return &devices.Device{
			Rule:     devices.Rule{Type: devices.CharDevice, Major: major, Minor: minor, Permissions: "rw", Allow: true},
			Path:     path,
			FileMode: 0o666,
		}
	}
	return []*devices.Device{
		dev("/dev/null", 1, 3), dev("/dev/zero", 1, 5), dev("/dev/full", 1, 7),
		dev("/dev/random", 1, 8), dev("/dev/urandom", 1, 9), dev("/dev/tty", 5, 0),
	}
}

// DeviceNodes are the paths of the device nodes every container's /dev
// holds. In a user namespace libcontainer bind-mounts each from the host, so
// a live process shows them as mounts (audit/live accounts for them).
func DeviceNodes() []string {
	var out []string
	for _, d := range minimalDevices() {
		out = append(out, d.Path)
	}
	return out
}

// deviceRules is the device cgroup allowlist: deny all, then the minimal nodes.
func deviceRules() []*devices.Rule {
	rules := []*devices.Rule{{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: false}}
	for _, d := range minimalDevices() {
		r := d.Rule
		rules = append(rules, &r)
	}
	return rules
}

// LibcontainerConfig renders the whole policy as a libcontainer
// configuration, with symbolic mount sources, ids and the cgroup path taken
// from h. The process itself (args = ShimArgs, env = Env, cwd, rlimits are
// here) is started by the runtime.
func (p *Policy) LibcontainerConfig(h HostPaths) (*configs.Config, error) {
	if h.Rootfs == "" {
		return nil, errors.New("libcontainer config: host rootfs path is empty")
	}
	if h.IDCount == 0 {
		return nil, errors.New("libcontainer config: the uid/gid range is empty")
	}
	seccomp, err := p.SeccompConfig()
	if err != nil {
		return nil, fmt.Errorf("libcontainer config: %w", err)
	}
	c := &configs.Config{
		Rootfs:     h.Rootfs,
		Readonlyfs: p.Process.ReadonlyRootfs.Enabled,
		// Private: nothing mounted on the host later leaks in.
		RootPropagation: unix.MS_PRIVATE | unix.MS_REC,
		Hostname:        p.Module.Name,
		Capabilities: &configs.Capabilities{
			Bounding: p.Process.Capabilities, Effective: p.Process.Capabilities,
			Permitted: p.Process.Capabilities,
		},
		NoNewPrivileges: p.Process.NoNewPrivileges.Enabled,
		// A private keyring per container; keyctl is denied anyway.
		NoNewKeyring: true,
		Devices:      minimalDevices(),
		Seccomp:      seccomp,
		Version:      specs.Version,
	}
	for _, m := range p.Mounts {
		src, err := h.source(m)
		if err != nil {
			return nil, fmt.Errorf("libcontainer config: %w", err)
		}
		flags, data, err := mountFlags(m.Options)
		if err != nil {
			return nil, fmt.Errorf("libcontainer config: mount %s: %w", m.Destination, err)
		}
		c.Mounts = append(c.Mounts, &configs.Mount{
			Source: src, Destination: m.Destination, Device: m.Type, Flags: flags, Data: data,
		})
	}
	for _, ns := range p.Namespaces {
		t, _, err := namespaceType(ns.Type)
		if err != nil {
			return nil, fmt.Errorf("libcontainer config: %w", err)
		}
		c.Namespaces = append(c.Namespaces, configs.Namespace{Type: t})
		switch t {
		case configs.NEWNET:
			// Loopback only: the namespace gets lo and nothing else.
			c.Networks = append(c.Networks, &configs.Network{Type: "loopback"})
		case configs.NEWUSER:
			c.UIDMappings = []configs.IDMap{{ContainerID: 0, HostID: int64(h.UIDBase), Size: int64(h.IDCount)}}
			c.GIDMappings = []configs.IDMap{{ContainerID: 0, HostID: int64(h.GIDBase), Size: int64(h.IDCount)}}
		}
	}
	for _, m := range p.Process.MaskedPaths {
		c.MaskPaths = append(c.MaskPaths, m.Path)
	}
	for _, r := range p.Process.ReadonlyPaths {
		c.ReadonlyPaths = append(c.ReadonlyPaths, r.Path)
	}
	for _, r := range p.Rlimits {
		t, err := rlimitType(r.Type)
		if err != nil {
			return nil, fmt.Errorf("libcontainer config: %w", err)
		}
		c.Rlimits = append(c.Rlimits, configs.Rlimit{Type: t, Soft: r.Soft, Hard: r.Hard})
	}
	pids := p.Cgroup.Pids.Value
	c.Cgroups = &cgroups.Cgroup{
		Path: h.CgroupPath,
		Resources: &cgroups.Resources{
			Memory: p.Cgroup.MemoryBytes.Value,
			// Swap equal to memory: no swap on top of the memory limit.
			MemorySwap: p.Cgroup.MemoryBytes.Value,
			PidsLimit:  &pids,
			CpuQuota:   p.Cgroup.CPUQuotaMicros.Value,
			CpuPeriod:  p.Cgroup.CPUPeriodMicros,
			Devices:    deviceRules(),
		},
	}
	return c, nil
}
