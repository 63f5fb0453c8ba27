package runtime

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Stats are a module's resource figures, read from its cgroup.
type Stats struct {
	MemoryBytes    uint64 `json:"memory_bytes"`
	MemoryLimit    uint64 `json:"memory_limit"`
	MemoryMaxBytes uint64 `json:"memory_max_bytes"` // peak (v1 only)
	// KernelBytes is the kernel memory charged to the module (its slab
	// objects, kernel stacks and, on v1, page tables); part of MemoryBytes.
	KernelBytes      uint64 `json:"kernel_bytes"`
	Pids             uint64 `json:"pids"`
	PidsLimit        uint64 `json:"pids_limit"`
	CPUNanos         uint64 `json:"cpu_nanos"` // total CPU time used
	ThrottledPeriods uint64 `json:"throttled_periods"`
	ThrottledNanos   uint64 `json:"throttled_nanos"`
	OOMKills         uint64 `json:"oom_kills"`
}

// statsReader reads a cgroup's figures; version is the host's cgroup
// version (policy.Host.CgroupVersion).
type statsReader struct{ version int }

// read reads the cgroup at path as libcontainer took it (Layout.CgroupPath).
func (r statsReader) read(path string) (Stats, error) {
	if r.version == 2 {
		return readStats2(path)
	}
	return readStats1(path)
}

// nestedPath finds a v1 cgroup the way libcontainer made it: a relative
// path below the process's own cgroup in each hierarchy, an absolute one
// from each hierarchy's root.
func nestedPath(path string) cgroup1.Path {
	if filepath.IsAbs(path) {
		return cgroup1.StaticPath(path)
	}
	hs, err := Hierarchies()
	return func(n cgroup1.Name) (string, error) {
		if err != nil {
			return "", err
		}
		for _, h := range hs {
			if slices.Contains(h.Controllers, string(n)) {
				return filepath.Join(h.Own, path), nil
			}
		}
		return "", cgroup1.ErrControllerNotActive
	}
}

func readStats1(path string) (Stats, error) {
	cg, err := cgroup1.Load(nestedPath(path))
	if err != nil {
		return Stats{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	var s Stats
	if mem := m.GetMemory().GetUsage(); mem != nil {
		s.MemoryBytes, s.MemoryLimit, s.MemoryMaxBytes = mem.Usage, mem.Limit, mem.Max
	}
	s.KernelBytes = m.GetMemory().GetKernel().GetUsage()
	s.Pids, s.PidsLimit = m.GetPids().GetCurrent(), m.GetPids().GetLimit()
	s.CPUNanos = m.GetCPU().GetUsage().GetTotal()
	s.ThrottledPeriods = m.GetCPU().GetThrottling().GetThrottledPeriods()
	s.ThrottledNanos = m.GetCPU().GetThrottling().GetThrottledTime()
	s.OOMKills = m.GetMemoryOomControl().GetOomKill()
	return s, nil
}

func readStats2(path string) (Stats, error) {
	cg, err := cgroup2.Load(path)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	m, err := cg.Stat()
	if err != nil {
		return Stats{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return Stats{
		MemoryBytes:      m.GetMemory().GetUsage(),
		MemoryLimit:      m.GetMemory().GetUsageLimit(),
		KernelBytes:      m.GetMemory().GetKernelStack() + m.GetMemory().GetSlab(),
		Pids:             m.GetPids().GetCurrent(),
		PidsLimit:        m.GetPids().GetLimit(),
		CPUNanos:         m.GetCPU().GetUsageUsec() * 1000,
		ThrottledPeriods: m.GetCPU().GetNrThrottled(),
		ThrottledNanos:   m.GetCPU().GetThrottledUsec() * 1000,
		OOMKills:         m.GetMemoryEvents().GetOomKill(),
	}, nil
}
