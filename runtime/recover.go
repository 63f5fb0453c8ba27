package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime/quota"
)

// Recover removes what a runtime that died left behind under the root:
// containers (killed and destroyed through libcontainer), their cgroups in
// every hierarchy, quota mounts and loop devices, sockets and bundles. Data
// dirs and logs stay. It runs before a supervisor starts anything, so
// everything it finds is an orphan.
func (l Layout) Recover(host policy.Host) error {
	var warned []error
	err := l.recover(host, func(e error) { warned = append(warned, e) })
	return errors.Join(append(warned, err)...)
}

// recover is Recover with a place for problems that concern one module
// only and must not stop the rest.
func (l Layout) recover(host policy.Host, recoverWarn func(error)) error {
	var errs []error
	entries, err := os.ReadDir(l.ContainersDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if err := destroyOrphan(l.ContainersDir(), e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.sweepCgroups(); err != nil {
		errs = append(errs, err)
	}
	// After the containers: a live container still holds its /data. An
	// image that will not let go is not fatal for the others: its own
	// module's Attach refuses it until the operator frees it.
	if err := quota.Recover(l.ImagesDir()); err != nil {
		recoverWarn(fmt.Errorf("quota images: %w", err))
	}
	for _, dir := range []string{l.SocketsDir(), l.BundlesDir()} {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// destroyOrphan kills and destroys a container libcontainer still knows.
func destroyOrphan(stateRoot, id string) error {
	c, err := libcontainer.Load(stateRoot, id)
	if err != nil {
		// Unreadable state: nothing libcontainer can do; the cgroup sweep
		// below kills any process still in it.
		return os.RemoveAll(filepath.Join(stateRoot, id))
	}
	if st, err := c.Status(); err == nil && st != libcontainer.Stopped {
		_ = c.Signal(unix.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
				break
			}
		}
	}
	if err := c.Destroy(); err != nil {
		return fmt.Errorf("destroy orphan %s: %w", id, err)
	}
	return nil
}

// cgroupMounts lists the mountpoints of every cgroup hierarchy, v1 and v2.
func cgroupMounts() ([]string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}

// sweepCgroups kills every process in every place this root's module
// cgroups may be and removes the cgroups, leaves first. Once they are gone
// the record names only the current supervisor's parents.
func (l Layout) sweepCgroups() error {
	parents, err := l.cgroupParents()
	if err != nil {
		return err
	}
	var errs []error
	for _, top := range parents {
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var dirs []string
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := removeCgroup(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 && l.cgroups != nil {
		if err := l.writeCgroupRecord(slices.Clone(l.cgroups.parents)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroup kills the processes in one cgroup dir and removes it.
func removeCgroup(dir string) error {
	for try := 0; ; try++ {
		pids := cgroupProcs(dir)
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if try == 100 {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cgroupProcs(dir string) []int {
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroupParent removes the shared parent cgroup in every hierarchy
// once no module is left in it; libcontainer's Destroy removes only the
// leaves. A parent still in use stays (rmdir fails with EBUSY).
func (l Layout) removeCgroupParent(policy.Host) {
	if l.cgroups == nil {
		return
	}
	for _, p := range l.cgroups.parents {
		unix.Rmdir(p)
	}
}

// Orphans lists what Recover would remove: live container states, cgroups
// under the parent, sockets and bundles. Tests and `blvm-sandbox doctor`
// use it to prove there are none.
func (l Layout) Orphans() ([]string, error) {
	var out []string
	for _, dir := range []string{l.ContainersDir(), l.SocketsDir(), l.BundlesDir()} {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	left, err := quota.Leftovers(l.ImagesDir())
	if err != nil {
		return nil, err
	}
	out = append(out, left...)
	parents, err := l.cgroupParents()
	if err != nil {
		return nil, err
	}
	for _, p := range parents {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}
