package policy

import (
	"reflect"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// handPolicy is a small Policy written out by hand, so these tests check the
// renderers and not the compiler.
func handPolicy() *Policy {
	sb := Provenance{Source: SourceSandbox, Reason: "test"}
	return &Policy{
		Module: Module{Name: "demo", Version: "1.0.0", EntryPoint: "demo", BinaryHash: "sha256:abcd"},
		Seccomp: Seccomp{
			DefaultAction: ActErrno, DefaultErrno: "ENOSYS", Arch: "amd64",
			Rules: []SyscallRule{
				{Syscall: "getpid", Action: ActAllow, Sources: []Provenance{sb}},
				{Syscall: "clone", Action: ActAllow, Args: []Arg{{Index: 0, Op: "masked_eq", Mask: 0x7E020080, Value: 0}}},
				{Syscall: "socket", Action: ActErrno, Errno: "EAFNOSUPPORT", Args: []Arg{{Index: 0, Op: "ne", Value: 1}}},
				{Syscall: "ioctl", Action: ActAllow, Args: []Arg{{Index: 1, Op: "eq", Value: 0x5401}}},
				{Syscall: "bpf", Action: ActErrno, Errno: "EPERM"},
				{Syscall: "kexec_load", Action: ActKill},
			},
		},
		Landlock: Landlock{
			MinABI: 6,
			Rules: []PathRule{
				{Path: "/module/demo", Access: []string{"execute", "read_file"}},
				{Path: "/data", Access: []string{"read_file", "write_file", "make_dir"}},
			},
			Scopes: []Scope{{Name: "abstract_unix_socket"}, {Name: "signal"}},
		},
		Namespaces: []Namespace{{Type: "mount"}, {Type: "pid"}, {Type: "network"}, {Type: "user"}},
		Process: Process{
			NoNewPrivileges: Flag{Enabled: true}, ReadonlyRootfs: Flag{Enabled: true},
			Capabilities:  []string{},
			MaskedPaths:   []PathItem{{Path: "/proc/kcore"}},
			ReadonlyPaths: []PathItem{{Path: "/proc/sys"}},
			Args:          []string{"/module/demo"}, Cwd: "/data",
		},
		Cgroup: Cgroup{MemoryBytes: Limit{Value: 64 << 20}, Pids: Limit{Value: 32},
			CPUQuotaMicros: Limit{Value: 50_000}, CPUPeriodMicros: 100_000},
		Rlimits: []Rlimit{{Type: "RLIMIT_NOFILE", Soft: 256, Hard: 256}, {Type: "RLIMIT_CORE"}},
		Mounts: []Mount{
			{Destination: "/proc", Source: MountProc, Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/module/demo", Source: MountBinary, Type: "bind", Options: []string{"bind", "ro", "nosuid", "nodev"}},
			{Destination: "/tmp", Source: MountTmpfs, Type: "tmpfs", Options: []string{"nosuid", "size=1024", "mode=1777"}},
		},
		Env: []EnvVar{{Name: "BLVM_MODULE_NAME", Value: "demo"}},
	}
}

func testHostPaths() HostPaths {
	return HostPaths{Rootfs: "/b/rootfs", Binary: "/s/abcd", Shim: "/shim", Config: "/c.toml",
		Socket: "/s.sock", Data: "/d", CgroupPath: "/blvm/demo", UIDBase: 200000, GIDBase: 300000, IDCount: 65536}
}

func TestSeccompConfig(t *testing.T) {
	got, err := handPolicy().SeccompConfig()
	if err != nil {
		t.Fatal(err)
	}
	u := func(n uint) *uint { return &n }
	want := &configs.Seccomp{
		DefaultAction: configs.Errno, DefaultErrnoRet: u(38), Architectures: []string{"amd64"},
		Syscalls: []*configs.Syscall{
			{Name: "getpid", Action: configs.Allow},
			// MaskEqualTo: Value is the mask, ValueTwo the value.
			{Name: "clone", Action: configs.Allow, Args: []*configs.Arg{{Index: 0, Op: configs.MaskEqualTo, Value: 0x7E020080, ValueTwo: 0}}},
			{Name: "socket", Action: configs.Errno, ErrnoRet: u(97), Args: []*configs.Arg{{Index: 0, Op: configs.NotEqualTo, Value: 1}}},
			{Name: "ioctl", Action: configs.Allow, Args: []*configs.Arg{{Index: 1, Op: configs.EqualTo, Value: 0x5401}}},
			{Name: "bpf", Action: configs.Errno, ErrnoRet: u(1)},
			{Name: "kexec_load", Action: configs.KillProcess},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SeccompConfig:\n got %+v\nwant %+v", got, want)
	}
}

func TestSeccompConfigRefuses(t *testing.T) {
	for name, mutate := range map[string]func(*Policy){
		"unknown errno":  func(p *Policy) { p.Seccomp.Rules[4].Errno = "EWHAT" },
		"unknown op":     func(p *Policy) { p.Seccomp.Rules[1].Args[0].Op = "gt" },
		"unknown action": func(p *Policy) { p.Seccomp.Rules[0].Action = "trace" },
		"bad index":      func(p *Policy) { p.Seccomp.Rules[1].Args[0].Index = 6 },
		"unknown arch":   func(p *Policy) { p.Seccomp.Arch = "mips" },
	} {
		p := handPolicy()
		mutate(p)
		if _, err := p.SeccompConfig(); err == nil {
			t.Errorf("%s: SeccompConfig accepted it", name)
		}
	}
}

func TestLibcontainerConfig(t *testing.T) {
	p, h := handPolicy(), testHostPaths()
	c, err := p.LibcontainerConfig(h)
	if err != nil {
		t.Fatal(err)
	}
	check := func(field string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", field, got, want)
		}
	}
	check("Rootfs", c.Rootfs, "/b/rootfs")
	check("Readonlyfs", c.Readonlyfs, true)
	check("Hostname", c.Hostname, "demo")
	check("NoNewPrivileges", c.NoNewPrivileges, true)
	check("Capabilities", c.Capabilities, &configs.Capabilities{Bounding: []string{}, Effective: []string{}, Permitted: []string{}})
	check("Mounts", c.Mounts, []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
		{Source: "/s/abcd", Destination: "/module/demo", Device: "bind", Flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV},
		{Source: "tmpfs", Destination: "/tmp", Device: "tmpfs", Flags: unix.MS_NOSUID, Data: "size=1024,mode=1777"},
	})
	check("Namespaces", c.Namespaces, configs.Namespaces{{Type: configs.NEWNS}, {Type: configs.NEWPID}, {Type: configs.NEWNET}, {Type: configs.NEWUSER}})
	check("Networks", c.Networks, []*configs.Network{{Type: "loopback"}})
	check("UIDMappings", c.UIDMappings, []configs.IDMap{{ContainerID: 0, HostID: 200000, Size: 65536}})
	check("GIDMappings", c.GIDMappings, []configs.IDMap{{ContainerID: 0, HostID: 300000, Size: 65536}})
	check("MaskPaths", c.MaskPaths, []string{"/proc/kcore"})
	check("ReadonlyPaths", c.ReadonlyPaths, []string{"/proc/sys"})
	check("Rlimits", c.Rlimits, []configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Soft: 256, Hard: 256}, {Type: unix.RLIMIT_CORE}})
	check("Cgroups.Path", c.Cgroups.Path, "/blvm/demo")
	r := c.Cgroups.Resources
	check("Memory", r.Memory, int64(64<<20))
	check("MemorySwap", r.MemorySwap, int64(64<<20))
	check("PidsLimit", *r.PidsLimit, int64(32))
	check("CpuQuota", r.CpuQuota, int64(50_000))
	check("CpuPeriod", r.CpuPeriod, uint64(100_000))
	if len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Permissions != "rwm" {
		t.Errorf("device rules must start with deny-all: %+v", r.Devices)
	}
	check("Devices", len(c.Devices), 6)
	want, _ := p.SeccompConfig()
	check("Seccomp", c.Seccomp, want)
}

func TestLibcontainerConfigRefuses(t *testing.T) {
	p := handPolicy()
	h := testHostPaths()
	h.Binary = ""
	if _, err := p.LibcontainerConfig(h); err == nil {
		t.Error("accepted a bind mount without a host path")
	}
	h = testHostPaths()
	h.IDCount = 0
	if _, err := p.LibcontainerConfig(h); err == nil {
		t.Error("accepted an empty id range")
	}
	p.Mounts[0].Options = append(p.Mounts[0].Options, "suid")
	if _, err := p.LibcontainerConfig(testHostPaths()); err == nil {
		t.Error("accepted an unknown mount option")
	}
}

func TestShimArgs(t *testing.T) {
	got := handPolicy().ShimArgs()
	want := []string{"/.blvm/landlock-shim", "--min-abi", "6",
		"--allow", "execute,read_file:/module/demo",
		"--allow", "read_file,write_file,make_dir:/data",
		"--scope", "abstract_unix_socket", "--scope", "signal",
		"--", "/module/demo"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ShimArgs:\n got %q\nwant %q", got, want)
	}
}
