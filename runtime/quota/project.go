package quota

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Quota interface constants (linux/quota.h, linux/fs.h); x/sys/unix does
// not name them.
const (
	prjQuota   = 2
	qGetInfo   = 0x800005
	qGetQuota  = 0x800007
	qSetQuota  = 0x800008
	qifBLimits = 1
	qifILimits = 4
	// qifDqblkSize is the unit of if_dqblk's block limits.
	qifDqblkSize = 1024

	fsIocFsGetXattr     = 0x801c581f // _IOR('X', 31, struct fsxattr)
	fsIocFsSetXattr     = 0x401c5820 // _IOW('X', 32, struct fsxattr)
	fsXflagProjInherit  = 0x200
	quotactlFdSyscallNr = unix.SYS_QUOTACTL_FD
)

// ifDqblk is struct if_dqblk.
type ifDqblk struct {
	BHardLimit, BSoftLimit, CurSpace  uint64
	IHardLimit, ISoftLimit, CurInodes uint64
	BTime, ITime                      uint64
	Valid                             uint32
	_                                 uint32
}

// ifDqinfo is struct if_dqinfo.
type ifDqinfo struct {
	BGrace, IGrace uint64
	Flags, Valid   uint32
}

// fsxattr is struct fsxattr.
type fsxattr struct {
	XFlags, ExtSize, NExtents, ProjID, CowExtSize uint32
	_                                             [8]byte
}

// quotactlFd calls quotactl_fd(2) (Linux 5.14) for project quotas on the
// filesystem holding fd: no block device path needed.
func quotactlFd(fd int, cmd uintptr, id uint32, addr unsafe.Pointer) error {
	_, _, e := unix.Syscall6(quotactlFdSyscallNr, uintptr(fd), cmd<<8|prjQuota, uintptr(id), uintptr(addr), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// projectQuotaOn reports whether the filesystem holding dir has project
// quotas on, and why not.
func projectQuotaOn(dir string) (bool, string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err.Error()
	}
	defer unix.Close(fd)
	var info ifDqinfo
	if err := quotactlFd(fd, qGetInfo, 0, unsafe.Pointer(&info)); err != nil {
		switch {
		case errors.Is(err, unix.ESRCH):
			return false, "quotactl(Q_GETINFO, PRJQUOTA): project quotas are off on this filesystem (mount option prjquota/pquota)"
		case errors.Is(err, unix.ENOSYS):
			return false, "quotactl_fd: not in this kernel"
		default:
			return false, "quotactl(Q_GETINFO, PRJQUOTA): " + err.Error()
		}
	}
	var x fsxattr
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFsGetXattr, uintptr(unsafe.Pointer(&x))); e != 0 {
		return false, "FS_IOC_FSGETXATTR: " + e.Error()
	}
	return true, ""
}

// projectBackend uses the filesystem's project quotas.
type projectBackend struct{}

func (projectBackend) Kind() Kind { return KindProject }

// Attach implements Backend: tag the directory tree with the project id
// (inherited by everything created in it later) and set hard limits. A
// lower limit is fine as long as it is above use.
func (projectBackend) Attach(s Spec) (*Mount, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if s.ProjectID == 0 {
		return nil, fmt.Errorf("module %s: project quota needs a project id other than 0", s.Name)
	}
	if err := tagTree(s.Mountpoint, s.ProjectID); err != nil {
		return nil, fmt.Errorf("module %s: set project id %d under %s: %w", s.Name, s.ProjectID, s.Mountpoint, err)
	}
	fd, err := unix.Open(s.Mountpoint, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", s.Name, err)
	}
	defer unix.Close(fd)
	var q ifDqblk
	if err := quotactlFd(fd, qGetQuota, s.ProjectID, unsafe.Pointer(&q)); err != nil {
		return nil, fmt.Errorf("module %s: Q_GETQUOTA project %d: %w", s.Name, s.ProjectID, err)
	}
	if q.CurSpace > uint64(s.Bytes) {
		return nil, fmt.Errorf("module %s: disk_bytes %d (%s) is below the %d bytes (%s) its data already uses",
			s.Name, s.Bytes, human(s.Bytes), q.CurSpace, human(int64(q.CurSpace)))
	}
	if q.CurInodes > uint64(s.Inodes) {
		return nil, fmt.Errorf("module %s: disk_inodes %d is below the %d inodes its data already uses", s.Name, s.Inodes, q.CurInodes)
	}
	resized := q.BHardLimit != 0 && (q.BHardLimit != uint64(s.Bytes)/qifDqblkSize || q.IHardLimit != uint64(s.Inodes))
	q = ifDqblk{BHardLimit: uint64(s.Bytes) / qifDqblkSize, IHardLimit: uint64(s.Inodes), Valid: qifBLimits | qifILimits}
	if err := quotactlFd(fd, qSetQuota, s.ProjectID, unsafe.Pointer(&q)); err != nil {
		return nil, fmt.Errorf("module %s: Q_SETQUOTA project %d: %w", s.Name, s.ProjectID, err)
	}
	m := &Mount{Spec: s, Kind: KindProject, Resized: resized}
	if m.Limits, err = Stat(s.Mountpoint); err != nil {
		return nil, fmt.Errorf("module %s: %w", s.Name, err)
	}
	return m, nil
}

// Detach implements Backend: the limit stays with the directory.
func (projectBackend) Detach(*Mount) error { return nil }

// Remove implements Backend: lift the project's limits. The runtime
// removes the directory itself.
func (projectBackend) Remove(s Spec) error {
	if s.ProjectID == 0 {
		return nil
	}
	fd, err := unix.Open(filepath.Dir(s.Mountpoint), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("module %s: %w", s.Name, err)
	}
	defer unix.Close(fd)
	q := ifDqblk{Valid: qifBLimits | qifILimits}
	if err := quotactlFd(fd, qSetQuota, s.ProjectID, unsafe.Pointer(&q)); err != nil {
		return fmt.Errorf("module %s: lift project %d quota: %w", s.Name, s.ProjectID, err)
	}
	return nil
}

// tagTree sets the project id on dir and everything under it, and the
// inherit flag on directories. Files made before the quota keep no id
// otherwise and would not count. Symlinks are skipped, never followed.
func tagTree(dir string, id uint32) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		var x fsxattr
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFsGetXattr, uintptr(unsafe.Pointer(&x))); e != 0 {
			return fmt.Errorf("FS_IOC_FSGETXATTR %s: %w", path, e)
		}
		want := x.XFlags
		if d.IsDir() {
			want |= fsXflagProjInherit
		}
		if x.ProjID == id && x.XFlags == want {
			return nil
		}
		x.ProjID, x.XFlags = id, want
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFsSetXattr, uintptr(unsafe.Pointer(&x))); e != 0 {
			return fmt.Errorf("FS_IOC_FSSETXATTR %s: %w", path, e)
		}
		return nil
	})
}
