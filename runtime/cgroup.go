package runtime

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Module cgroups live below the daemon's own cgroup (DESIGN.md decision
// 15), so they count against the unit's limits and accounting and die with
// the unit. In each hierarchy the layout is
//
//	<own>/blvm-sandbox-<hash>/<module>   the modules of one root
//	<own>/supervisor                     the daemon itself (cgroup v2 only)
//
// Under v2 a cgroup that hands controllers to its children may hold no
// process of its own, so the daemon moves into the leaf <own>/supervisor
// before its modules' cgroups are made. v1 has no such rule: the daemon
// stays where it was started.

// SupervisorCgroup is the leaf a daemon moves itself into under cgroup v2.
const SupervisorCgroup = "supervisor"

// Hierarchy is one mounted cgroup hierarchy and a process's place in it.
type Hierarchy struct {
	Mount       string   // its mountpoint, e.g. /sys/fs/cgroup/memory
	Version     int      // 1 or 2
	Controllers []string // v1: the line's controllers (cpu, name=systemd); v2: none
	Own         string   // the process's cgroup, relative to Mount ("/" at its root)
}

// Dir is the directory of the process's own cgroup in this hierarchy.
func (h Hierarchy) Dir() string { return filepath.Join(h.Mount, h.Own) }

// Hierarchies lists every mounted cgroup hierarchy with the calling
// process's cgroup in it, from /proc/self/cgroup and the mount table.
func Hierarchies() ([]Hierarchy, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	return matchHierarchies(f, mounts)
}

// matchHierarchies pairs each line of a /proc/<pid>/cgroup file with the
// mount of its hierarchy. A hierarchy that is not mounted is left out. The
// path in the file is relative to the hierarchy's root; a mount of a
// subtree (a container's view) has that subtree as its Root, which is cut
// off.
func matchHierarchies(procCgroup io.Reader, mounts []*mountinfo.Info) ([]Hierarchy, error) {
	var out []Hierarchy
	sc := bufio.NewScanner(procCgroup)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		h := Hierarchy{Version: 1}
		if parts[0] == "0" && parts[1] == "" {
			h.Version = 2
		} else {
			h.Controllers = strings.Split(parts[1], ",")
		}
		for _, m := range mounts {
			if !mountServes(m, h) {
				continue
			}
			rel, err := filepath.Rel(m.Root, parts[2])
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				continue
			}
			h.Mount, h.Own = m.Mountpoint, filepath.Clean("/"+rel)
			break
		}
		if h.Mount != "" {
			out = append(out, h)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("/proc/self/cgroup: %w", err)
	}
	return out, nil
}

// mountServes reports whether m mounts hierarchy h: cgroup2 for the v2
// line, and for a v1 line a cgroup mount whose options name every one of
// its controllers.
func mountServes(m *mountinfo.Info, h Hierarchy) bool {
	if h.Version == 2 {
		return m.FSType == "cgroup2"
	}
	if m.FSType != "cgroup" {
		return false
	}
	opts := strings.Split(m.VFSOptions, ",")
	for _, c := range h.Controllers {
		if !slices.Contains(opts, c) {
			return false
		}
	}
	return len(h.Controllers) > 0
}

// cgroupPlace is where one supervisor puts its modules' cgroups.
type cgroupPlace struct {
	version int
	// lcParent is the parent handed to libcontainer: under v1 relative
	// (libcontainer nests it under the process's own cgroup in each
	// hierarchy), under v2 absolute within the unified hierarchy.
	lcParent string
	// parents are the parent's directories, one per hierarchy.
	parents []string
	// hybridParent is, on a hybrid host (v1 controllers, an empty
	// cgroup2 beside them), the parent in the unified hierarchy below the
	// daemon's own cgroup; "" elsewhere. See joinHybrid.
	hybridParent string
}

// CgroupParent is the name of the cgroup this root's modules live under,
// below the daemon's own cgroup. It is named after the root, so that two
// runtimes in one cgroup (a daemon and a `run` started from the same
// shell, or parallel tests) never recover each other's modules as orphans.
func (l Layout) CgroupParent() string {
	abs, err := filepath.Abs(l.Root)
	if err != nil {
		abs = l.Root
	}
	return "blvm-sandbox-" + rootHash(abs)
}

// CgroupPath is the module's cgroup path as libcontainer takes it. It is
// valid once the supervisor has placed its cgroups (NewSupervisor).
func (l Layout) CgroupPath(name string) string {
	if l.cgroups == nil {
		return l.CgroupParent() + "/" + name
	}
	return l.cgroups.lcParent + "/" + name
}

// cgroupRecord is where the supervisor notes the parents it made, so a
// later one finds their orphans even if it starts in another cgroup.
func (l Layout) cgroupRecord() string { return filepath.Join(l.StateDir(), "cgroups.json") }

type cgroupRecordFile struct {
	Parents []string `json:"parents"`
}

// placeCgroups decides where this supervisor's module cgroups go and,
// under v2, moves the process into its own leaf first. It records the
// parents (with those of the last supervisor, until recover has swept
// them).
func (l *Layout) placeCgroups(version int, log *slog.Logger) error {
	hs, err := Hierarchies()
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	place := &cgroupPlace{version: version}
	name := l.CgroupParent()
	if version == 2 {
		own, err := claimV2(hs)
		if err != nil {
			log.Warn("cgroups: module cgroups go to the hierarchy's root, outside the daemon's cgroup", "reason", err)
			own = "/"
		}
		place.lcParent = filepath.Join(own, name)
		for _, h := range hs {
			if h.Version == 2 {
				place.parents = append(place.parents, filepath.Join(h.Mount, own, name))
			}
		}
	} else {
		place.lcParent = name
		for _, h := range hs {
			if h.Version == 2 {
				// On a hybrid host libcontainer puts the unified
				// hierarchy's cgroup at that hierarchy's root; joinHybrid
				// moves the module below the daemon's own.
				place.parents = append(place.parents, filepath.Join(h.Mount, name))
				place.hybridParent = filepath.Join(h.Dir(), name)
			}
			place.parents = append(place.parents, filepath.Join(h.Dir(), name))
		}
	}
	prev, _ := l.recordedParents()
	if err := l.writeCgroupRecord(append(slices.Clone(place.parents), prev...)); err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	l.cgroups = place
	return nil
}

// joinHybrid moves a container's init (before it execs the module) into
// the module's cgroup below the daemon's own in the unified hierarchy of a
// hybrid host, and returns that cgroup ("" on other hosts). libcontainer
// puts it at the hierarchy's root, but a hybrid systemd tracks a unit's
// processes there: at the root, a module would outlive its unit when the
// daemon crashes. The hierarchy has no controllers, so nothing else
// changes for the module.
func (p *cgroupPlace) joinHybrid(name string, pid int) (string, error) {
	if p == nil || p.hybridParent == "" {
		return "", nil
	}
	leaf := filepath.Join(p.hybridParent, name)
	for _, d := range []string{p.hybridParent, leaf} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("cgroup %s: %w", d, err)
		}
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return "", fmt.Errorf("move %s's init into %s: %w", name, leaf, err)
	}
	return leaf, nil
}

// claimV2 returns the daemon's own cgroup in the unified hierarchy, after
// moving the process into its SupervisorCgroup leaf so that the cgroup may
// hand controllers to the modules. A process already in a leaf of that
// name (a second supervisor in one process) is home. The real root
// cgroup is exempt from the rule and is used as it is. An error means the
// cgroup cannot be delegated (other processes share it).
func claimV2(hs []Hierarchy) (string, error) {
	i := slices.IndexFunc(hs, func(h Hierarchy) bool { return h.Version == 2 })
	if i < 0 {
		return "", errors.New("no cgroup2 mount")
	}
	h := hs[i]
	own := h.Own
	if filepath.Base(own) == SupervisorCgroup {
		return filepath.Dir(own), nil
	}
	dir := h.Dir()
	if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); errors.Is(err, fs.ErrNotExist) {
		return own, nil // the real root: no internal-process rule
	}
	self := os.Getpid()
	if others := slices.DeleteFunc(cgroupProcs(dir), func(p int) bool { return p == self }); len(others) > 0 {
		return "", fmt.Errorf("cgroup %s holds other processes (pid %d and %d more); run the daemon in a cgroup of its own (the systemd unit does, with Delegate=yes)", dir, others[0], len(others)-1)
	}
	leaf := filepath.Join(dir, SupervisorCgroup)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("make %s: %w", leaf, err)
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(self)), 0); err != nil {
		return "", fmt.Errorf("move the daemon into %s: %w", leaf, err)
	}
	return own, nil
}

// recordedParents are the parents the record names that are still valid
// for this root: below a cgroup mount and named after the root. Anything
// else in it is ignored, so a damaged record cannot aim recovery's kill at
// other cgroups.
func (l Layout) recordedParents() ([]string, error) {
	b, err := os.ReadFile(l.cgroupRecord())
	if err != nil {
		return nil, err
	}
	var rec cgroupRecordFile
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", l.cgroupRecord(), err)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range rec.Parents {
		if p != filepath.Clean(p) || filepath.Base(p) != l.CgroupParent() {
			continue
		}
		if slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(p, m+"/") }) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (l Layout) writeCgroupRecord(parents []string) error {
	slices.Sort(parents)
	b, err := json.Marshal(cgroupRecordFile{Parents: slices.Compact(parents)})
	if err != nil {
		return err
	}
	tmp := l.cgroupRecord() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.cgroupRecord())
}

// cgroupParents are every place this root's module cgroups may be: the
// recorded ones, the current supervisor's, and each hierarchy's root,
// where runtimes before nesting put them.
func (l Layout) cgroupParents() ([]string, error) {
	out, err := l.recordedParents()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if l.cgroups != nil {
		out = append(out, l.cgroups.parents...)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		out = append(out, filepath.Join(m, l.CgroupParent()))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ModuleCgroups are the module's cgroup directories on the host, one per
// hierarchy, as the last supervisor on this root recorded them. Tests and
// operators use it to find a module's processes.
func (l Layout) ModuleCgroups(name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	parents, err := l.recordedParents()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(parents))
	for _, p := range parents {
		out = append(out, filepath.Join(p, name))
	}
	return out, nil
}
