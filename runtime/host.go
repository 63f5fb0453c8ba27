// Package runtime runs verified modules in libcontainer containers built
// from their compiled policy, and supervises them. This file holds the one
// piece the explain command needs today: reading the host's facts.
package runtime

import (
	"errors"
	goruntime "runtime"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/policy"
)

// DetectHost reads the facts the policy compiler needs from this kernel:
// the architecture, the Landlock ABI (0 when Landlock is off) and the cgroup
// version of the hierarchy mounted at cgroupRoot (usually /sys/fs/cgroup).
func DetectHost(cgroupRoot string) (policy.Host, error) {
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
	return h, nil
}
