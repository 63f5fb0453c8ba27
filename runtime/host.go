// Package runtime runs verified modules in libcontainer containers built
// from their compiled policy, and supervises them. This file holds the one
// piece the explain command needs today: reading the host's facts.
package runtime

import (
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime/quota"
)

// DetectHost reads the facts the policy compiler needs from this kernel:
// the architecture, the Landlock ABI (0 when Landlock is off), the cgroup
// version of the hierarchy mounted at cgroupRoot (usually /sys/fs/cgroup),
// and how the disk quota would be enforced for the runtime root (none when
// root is "" or no backend works here).
func DetectHost(cgroupRoot, root string) (policy.Host, error) {
	h := policy.Host{Arch: goruntime.GOARCH}
	abi, err := llsys.LandlockGetABIVersion()
	switch {
	case err == nil:
		h.LandlockABI = abi
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		h.LandlockABI = 0
	default:
		return h, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return h, err
	}
	// A cgroup2 filesystem at the root means a unified host; anything else
	// (tmpfs holding v1 controllers, as on hybrid hosts) is v1.
	h.CgroupVersion = 1
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		h.CgroupVersion = 2
	}
	if root != "" {
		h.StorageBackend = storageBackend(Layout{Root: root}.ModulesDataDir())
	}
	return h, nil
}

// storageBackend is the quota backend the supervisor would choose for
// dataDir, probed on the nearest directory that exists (explain runs before
// any root is made); "" when none works.
func storageBackend(dataDir string) string {
	dir := dataDir
	for {
		if _, err := os.Stat(dir); err == nil || dir == filepath.Dir(dir) {
			break
		}
		dir = filepath.Dir(dir)
	}
	f, err := quota.ProbeKernel(dir)
	if err != nil {
		return policy.StorageNone
	}
	c, err := quota.Choose(f)
	if err != nil {
		return policy.StorageNone
	}
	return string(c.Kind)
}
