package policy

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultShimHostPath is where packages install the static Landlock shim.
const DefaultShimHostPath = "/usr/libexec/blvm-sandbox/blvm-landlock-shim"

// DefaultHostPaths gives the on-disk layout of DESIGN.md under root, for
// rendering a policy offline (explain --format oci). The runtime builds its
// own HostPaths at start, with the uid range it allocated.
func DefaultHostPaths(root string, p *Policy) HostPaths {
	name := p.Module.Name
	hash := strings.TrimPrefix(p.Module.BinaryHash, "sha256:")
	return HostPaths{
		Rootfs:     filepath.Join(root, "bundles", name, "rootfs"),
		Binary:     filepath.Join(root, "store", "sha256", hash),
		Shim:       DefaultShimHostPath,
		Config:     filepath.Join(root, "bundles", name, "private", "config.toml"),
		Socket:     filepath.Join(root, "sockets", name, "hub.sock"),
		Data:       filepath.Join(root, "data", "modules", name, "db"),
		CgroupPath: "/blvm-sandbox/" + name,
		// A placeholder: the runtime allocates a distinct range per module.
		UIDBase: 100000,
		GIDBase: 100000,
		IDCount: 65536,
	}
}

// OCISpec renders the policy as an OCI runtime-spec config.json, for runc,
// crun or an auditor. It carries the same content as LibcontainerConfig; the
// process is the Landlock shim, which then execs the module.
func (p *Policy) OCISpec(h HostPaths) (*specs.Spec, error) {
	lc, err := p.LibcontainerConfig(h)
	if err != nil {
		return nil, fmt.Errorf("oci spec: %w", err)
	}
	seccomp, err := p.ociSeccomp()
	if err != nil {
		return nil, fmt.Errorf("oci spec: %w", err)
	}
	caps := p.Process.Capabilities
	if caps == nil {
		caps = []string{}
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args:            p.ShimArgs(),
			Cwd:             p.Process.Cwd,
			User:            specs.User{UID: p.Process.UID, GID: p.Process.UID},
			NoNewPrivileges: p.Process.NoNewPrivileges.Enabled,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
		},
		Root:     &specs.Root{Path: h.Rootfs, Readonly: p.Process.ReadonlyRootfs.Enabled},
		Hostname: p.Module.Name,
		Linux: &specs.Linux{
			CgroupsPath:   h.CgroupPath,
			Seccomp:       seccomp,
			MaskedPaths:   lc.MaskPaths,
			ReadonlyPaths: lc.ReadonlyPaths,
		},
	}
	for _, e := range p.Env {
		s.Process.Env = append(s.Process.Env, e.Name+"="+e.Value)
	}
	for _, r := range p.Rlimits {
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	for _, m := range p.Mounts {
		src, err := h.source(m)
		if err != nil {
			return nil, fmt.Errorf("oci spec: %w", err)
		}
		opts := m.Options
		if opts == nil {
			opts = []string{}
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: m.Destination, Type: m.Type, Source: src, Options: opts})
	}
	for _, ns := range p.Namespaces {
		_, t, err := namespaceType(ns.Type)
		if err != nil {
			return nil, fmt.Errorf("oci spec: %w", err)
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
	}
	for _, m := range lc.UIDMappings {
		s.Linux.UIDMappings = append(s.Linux.UIDMappings, specs.LinuxIDMapping{ContainerID: uint32(m.ContainerID), HostID: uint32(m.HostID), Size: uint32(m.Size)})
	}
	for _, m := range lc.GIDMappings {
		s.Linux.GIDMappings = append(s.Linux.GIDMappings, specs.LinuxIDMapping{ContainerID: uint32(m.ContainerID), HostID: uint32(m.HostID), Size: uint32(m.Size)})
	}
	r := lc.Cgroups.Resources
	mem, swap, pids, quota, period := r.Memory, r.MemorySwap, *r.PidsLimit, r.CpuQuota, r.CpuPeriod
	s.Linux.Resources = &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem, Swap: &swap},
		Pids:   &specs.LinuxPids{Limit: &pids},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
	}
	for _, d := range r.Devices {
		major, minor := &d.Major, &d.Minor
		if d.Major < 0 {
			major = nil
		}
		if d.Minor < 0 {
			minor = nil
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: d.Allow, Type: string(d.Type), Major: major, Minor: minor, Access: string(d.Permissions),
		})
	}
	for _, d := range lc.Devices {
		mode := d.FileMode
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{
			Path: d.Path, Type: string(d.Type), Major: d.Major, Minor: d.Minor, FileMode: &mode,
		})
	}
	s.Version = specVersion(s)
	return s, nil
}

// ociSeccomp renders Policy.Seccomp in runtime-spec form, through the same
// action and operator translation as SeccompConfig.
func (p *Policy) ociSeccomp() (*specs.LinuxSeccomp, error) {
	s := p.Seccomp
	def, err := convertAction(s.DefaultAction, s.DefaultErrno)
	if err != nil {
		return nil, fmt.Errorf("seccomp default action: %w", err)
	}
	arch, err := seccompArch(s.Arch)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	out := &specs.LinuxSeccomp{
		DefaultAction:   def.oci,
		DefaultErrnoRet: def.errnoRet,
		Architectures:   []specs.Arch{arch},
	}
	for _, r := range s.Rules {
		act, err := convertAction(r.Action, r.Errno)
		if err != nil {
			return nil, fmt.Errorf("seccomp rule %s: %w", r.Syscall, err)
		}
		for _, args := range expandArgs(r.Args) {
			sc := specs.LinuxSyscall{Names: []string{r.Syscall}, Action: act.oci, ErrnoRet: act.errnoRet}
			for _, a := range args {
				ca, err := convertArg(a)
				if err != nil {
					return nil, fmt.Errorf("seccomp rule %s: %w", r.Syscall, err)
				}
				sc.Args = append(sc.Args, ca.oci)
			}
			out.Syscalls = append(out.Syscalls, sc)
		}
	}
	return out, nil
}
