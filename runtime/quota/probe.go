package quota

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ProbeKernel is the real Prober: it asks the kernel about dir's
// filesystem and looks for the loop driver and mkfs.ext4.
func ProbeKernel(dir string) (Facts, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Facts{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	f := Facts{Dir: dir, FSType: fsName(st.Type)}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC:
		f.ProjectQuota, f.NoProject = projectQuotaOn(dir)
	default:
		f.NoProject = f.FSType + " has no project quotas"
	}
	if fi, err := os.Stat("/dev/loop-control"); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		f.LoopControl = true
	}
	f.Ext4 = kernelHasFS("ext4")
	f.Mkfs = findMkfs()
	return f, nil
}

func fsName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("filesystem %#x", magic)
}

// kernelHasFS reports whether /proc/filesystems lists name.
func kernelHasFS(name string) bool {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == name {
			return true
		}
	}
	return false
}

// findMkfs finds mkfs.ext4 on PATH or in the sbin dirs, which a daemon's
// PATH often lacks, with the other e2fsprogs tools the image backend runs
// beside it.
func findMkfs() string {
	candidates := []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, p := range candidates {
		ok := true
		for _, tool := range []string{"mkfs.ext4", "e2fsck", "resize2fs", "e2undo"} {
			fi, err := os.Stat(filepath.Join(filepath.Dir(p), tool))
			ok = ok && err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
		}
		if ok {
			return p
		}
	}
	return ""
}
