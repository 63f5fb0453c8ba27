package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/policy"
)

// Verdict is how a host fact stands for running modules.
type Verdict string

const (
	VerdictOK   Verdict = "ok"
	VerdictWarn Verdict = "warn" // works, with less than the design asks
	VerdictFail Verdict = "fail" // the daemon refuses to run, or a promise would not hold
)

// Check is one row of the host matrix.
type Check struct {
	Name    string  `json:"name"`
	Value   string  `json:"value"`
	Verdict Verdict `json:"verdict"`
	Detail  string  `json:"detail,omitempty"`
}

// DoctorOptions say what to check the host for.
type DoctorOptions struct {
	Root           string // the runtime root (its filesystem decides the quota backend)
	MinLandlockABI int    // the node config's [sandbox] min_landlock_abi
	Shim           string // --shim, as FindShim takes it
	// Pid is the daemon whose cgroup is checked for delegation; 0 checks
	// the calling process, as if it were the daemon.
	Pid int
}

// cgroupMount is where every hierarchy hangs (v1) or the unified one is (v2).
const cgroupMount = "/sys/fs/cgroup"

// Controllers the policy's limits need: a missing memory or pids
// controller leaves a promised limit unenforced.
var (
	neededControllers = []string{"memory", "pids"}
	wantedControllers = []string{"cpu"}
)

// Doctor reads the host's facts and judges each one for running modules:
// privileges, cgroups (version, controllers, delegation of the daemon's
// cgroup), user namespaces, Landlock, seccomp, the disk-quota backend and
// the shim.
func Doctor(o DoctorOptions) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }
	if os.Geteuid() == 0 {
		add(Check{Name: "privileges", Value: "root", Verdict: VerdictOK})
	} else {
		add(Check{Name: "privileges", Value: "uid " + strconv.Itoa(os.Geteuid()), Verdict: VerdictFail,
			Detail: "the daemon creates containers, cgroups and user namespaces: run it as root"})
	}
	host, hostErr := DetectHost(cgroupMount, o.Root)
	hs, hsErr := Hierarchies()
	add(cgroupVersionCheck(host, hostErr, hs))
	add(controllersCheck(host, hs, hsErr))
	add(delegationCheck(host, o.Pid, Layout{Root: o.Root}.CgroupParent()))
	add(userNSCheck())
	add(landlockCheck(host, hostErr, o.MinLandlockABI))
	add(seccompCheck())
	add(storageCheck(host, hostErr, o.Root))
	if p, err := FindShim(o.Shim); err != nil {
		add(Check{Name: "landlock shim", Value: "missing", Verdict: VerdictFail, Detail: err.Error()})
	} else {
		add(Check{Name: "landlock shim", Value: p, Verdict: VerdictOK})
	}
	return out
}

// Worst is the worst verdict among checks.
func Worst(checks []Check) Verdict {
	worst := VerdictOK
	for _, c := range checks {
		switch {
		case c.Verdict == VerdictFail:
			return VerdictFail
		case c.Verdict == VerdictWarn:
			worst = VerdictWarn
		}
	}
	return worst
}

func cgroupVersionCheck(host policy.Host, err error, hs []Hierarchy) Check {
	c := Check{Name: "cgroup version"}
	if err != nil {
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, fmt.Sprintf("statfs %s: %v", cgroupMount, err)
		return c
	}
	c.Value, c.Verdict = "v"+strconv.Itoa(host.CgroupVersion), VerdictOK
	if host.CgroupVersion == 1 {
		c.Value += " (legacy)"
		if i := slices.IndexFunc(hs, func(h Hierarchy) bool { return h.Version == 2 }); i >= 0 {
			c.Value = "v1 (hybrid)"
			c.Detail = "cgroup2 at " + hs[i].Mount + " takes no controllers; limits are set in the v1 hierarchies"
		}
	}
	return c
}

// hostControllers are the controllers the host offers: the v1 hierarchies'
// or the unified root's cgroup.controllers.
func hostControllers(host policy.Host, hs []Hierarchy) []string {
	var have []string
	if host.CgroupVersion == 2 {
		b, _ := os.ReadFile(filepath.Join(cgroupMount, "cgroup.controllers"))
		return strings.Fields(string(b))
	}
	for _, h := range hs {
		for _, ctl := range h.Controllers {
			if !strings.HasPrefix(ctl, "name=") {
				have = append(have, ctl)
			}
		}
	}
	slices.Sort(have)
	return have
}

func controllersCheck(host policy.Host, hs []Hierarchy, err error) Check {
	c := Check{Name: "cgroup controllers"}
	if err != nil {
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, err.Error()
		return c
	}
	have := hostControllers(host, hs)
	c.Value, c.Verdict = strings.Join(have, " "), VerdictOK
	if missing := missingFrom(have, neededControllers); len(missing) > 0 {
		c.Verdict, c.Detail = VerdictFail, "missing "+strings.Join(missing, ", ")+": the policy's memory and pids limits would not be enforced"
	} else if missing := missingFrom(have, wantedControllers); len(missing) > 0 {
		c.Verdict, c.Detail = VerdictWarn, "missing "+strings.Join(missing, ", ")+": the CPU quota would not be enforced"
	}
	return c
}

func missingFrom(have, want []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// delegationCheck says whether the daemon's own cgroup can hold its
// modules' cgroups (placeCgroups): writable in every hierarchy the limits
// use, and under v2 with the controllers handed down to it and no other
// process in it.
func delegationCheck(host policy.Host, pid int, parent string) Check {
	c := Check{Name: "cgroup delegation"}
	self := pid == 0
	if self {
		pid = os.Getpid()
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, err.Error()
		return c
	}
	defer f.Close()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, err.Error()
		return c
	}
	hs, err := matchHierarchies(f, mounts)
	if err != nil {
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, err.Error()
		return c
	}
	who := "this process"
	if !self {
		who = "pid " + strconv.Itoa(pid)
	}
	if host.CgroupVersion == 2 {
		return delegationV2(c, hs, pid, who, parent)
	}
	var places, problems []string
	for _, h := range hs {
		if h.Version != 1 || !slices.ContainsFunc(h.Controllers, func(ctl string) bool {
			return slices.Contains(neededControllers, ctl) || slices.Contains(wantedControllers, ctl)
		}) {
			continue
		}
		places = append(places, strings.Join(h.Controllers, ",")+":"+h.Own)
		if err := writableDir(h.Dir()); err != nil {
			problems = append(problems, err.Error())
		}
	}
	c.Value = strings.Join(places, " ")
	if len(problems) > 0 {
		c.Verdict, c.Detail = VerdictFail, strings.Join(problems, "; ")
		return c
	}
	c.Verdict, c.Detail = VerdictOK, "modules' cgroups go below "+who+"'s cgroup in each hierarchy, in "+parent+"/<module>"
	return c
}

func delegationV2(c Check, hs []Hierarchy, pid int, who, parent string) Check {
	i := slices.IndexFunc(hs, func(h Hierarchy) bool { return h.Version == 2 })
	if i < 0 {
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, "no cgroup2 mount"
		return c
	}
	h := hs[i]
	own, dir := h.Own, h.Dir()
	if filepath.Base(own) == SupervisorCgroup {
		own, dir = filepath.Dir(own), filepath.Dir(dir)
	}
	c.Value = own
	if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); errors.Is(err, fs.ErrNotExist) {
		c.Verdict, c.Detail = VerdictOK, "the root cgroup: modules' cgroups go to /"+parent+"/<module>"
		return c
	}
	if err := writableDir(dir); err != nil {
		c.Verdict, c.Detail = VerdictFail, err.Error()
		return c
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if missing := missingFrom(strings.Fields(string(b)), neededControllers); len(missing) > 0 {
		c.Verdict, c.Detail = VerdictFail, fmt.Sprintf("%s is not given %s by its parent (a systemd unit needs Delegate=yes)", dir, strings.Join(missing, ", "))
		return c
	}
	others := slices.DeleteFunc(cgroupProcs(dir), func(p int) bool { return p == pid })
	if len(others) > 0 {
		c.Verdict = VerdictWarn
		c.Detail = fmt.Sprintf("%s also holds pid %d and %d more: the daemon could not leave it for %s/%s, so modules' cgroups would go to the hierarchy's root, outside it (run the daemon in a cgroup of its own: the systemd unit does)",
			dir, others[0], len(others)-1, own, SupervisorCgroup)
		return c
	}
	c.Verdict, c.Detail = VerdictOK, fmt.Sprintf("%s moves into %s/%s; modules' cgroups go to %s/%s/<module>", who, own, SupervisorCgroup, own, parent)
	return c
}

// writableDir fails for a cgroup directory the daemon could not make
// children in: a read-only mount or no write permission.
func writableDir(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return fmt.Errorf("%s is on a read-only mount", dir)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	return nil
}

func userNSCheck() Check {
	c := Check{Name: "user namespaces"}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		c.Value, c.Verdict, c.Detail = "absent", VerdictFail, "the kernel has no user namespaces (CONFIG_USER_NS): every module runs in one"
		return c
	}
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	n, convErr := strconv.Atoi(strings.TrimSpace(string(b)))
	switch {
	case err != nil || convErr != nil:
		c.Value, c.Verdict, c.Detail = "unknown", VerdictWarn, "cannot read /proc/sys/user/max_user_namespaces"
	case n == 0:
		c.Value, c.Verdict, c.Detail = "0", VerdictFail, "user.max_user_namespaces is 0: every module runs in a user namespace of its own"
	default:
		c.Value, c.Verdict, c.Detail = "max "+strconv.Itoa(n), VerdictOK, "each module maps a distinct host uid range"
	}
	return c
}

func landlockCheck(host policy.Host, err error, min int) Check {
	c := Check{Name: "landlock", Value: "ABI " + strconv.Itoa(host.LandlockABI)}
	switch {
	case err != nil:
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, err.Error()
	case host.LandlockABI == 0:
		c.Verdict, c.Detail = VerdictFail, "Landlock is off (add landlock to the lsm= boot parameter)"
	case host.LandlockABI < min:
		c.Verdict, c.Detail = VerdictFail, fmt.Sprintf("below [sandbox] min_landlock_abi = %d: the daemon refuses to start", min)
	default:
		c.Verdict, c.Detail = VerdictOK, fmt.Sprintf("min_landlock_abi is %d", min)
	}
	return c
}

func storageCheck(host policy.Host, err error, root string) Check {
	c := Check{Name: "storage quota", Value: host.StorageBackend}
	switch {
	case err != nil:
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, err.Error()
	case host.StorageBackend == policy.StorageNone:
		c.Value, c.Verdict = "none", VerdictFail
		c.Detail = "no quota backend for " + root + ": the supervisor refuses to start (it needs project quotas on that filesystem, or loop devices and mkfs.ext4 for images)"
	default:
		c.Verdict, c.Detail = VerdictOK, "for "+Layout{Root: root}.ModulesDataDir()
	}
	return c
}
