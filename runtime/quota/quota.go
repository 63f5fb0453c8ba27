// Package quota enforces each module's storage limit, in bytes and inodes,
// in the kernel, and reports use against it.
//
// Two backends, chosen once per runtime root by probing the filesystem that
// holds the modules' data (Open, Choose):
//
//   - project: the filesystem's project quotas (ext4 mounted with prjquota,
//     or XFS with pquota). The module's directory gets a project id and a
//     hard limit; nothing is mounted.
//   - image: a sparse ext4 image per module (mkfs.ext4 -m 0) on a loop
//     device, mounted nosuid,nodev,noexec on the module's directory. The
//     image's size is the byte limit, so a module can never take more of the
//     node's disk than that. Used where project quotas are not available,
//     which includes every kernel without QFMT_V2 or XFS quota.
//
// Either way the write that crosses the limit fails with ENOSPC (image) or
// EDQUOT (project) inside the module, and use and limits are read with
// statfs on the directory (Stat), never by walking the tree.
//
// What the limits mean on the image backend, honestly:
//   - Bytes is the image's size. ext4 keeps its own metadata (journal, inode
//     tables, bitmaps: 10% at 1 GiB, 27% at the 16 MiB minimum, 3% at
//     10 GiB) inside it, so the module can store somewhat less than Bytes;
//     Stat reports the effective limit.
//   - ext4 fixes the inode count per block group at mkfs time. The image gets
//     at least min(Inodes, Bytes/4096) inodes (one per 4 KiB block at most:
//     a module cannot fill more inodes than blocks with data, and every inode
//     costs 256 bytes of the image), rounded up to whole inode-table blocks.
//     Growing the image adds inodes with each 128 MiB block group; a later
//     change to Inodes alone changes nothing. Stat's InodesLimit (statfs
//     f_files) is the limit that holds.
//   - A new Bytes takes effect at the next Attach that mounts the image:
//     e2fsck -f, then resize2fs with an undo file (a crash mid-resize is
//     rolled back with e2undo at the next Attach). Online resizing would
//     need CAP_SYS_RESOURCE, which the daemon may lack. A shrink below
//     current use is refused with an error naming the module, its use and
//     the requested size; a shrink above use that resize2fs cannot fit (the
//     metadata needs room too) is refused with resize2fs's reason.
//
// Integration (for the supervisor):
//
//	b, choice, err := quota.Open(layout.ModulesDataDir(), nil) // once, at start
//	quota.Recover(imagesDir)                // after containers are destroyed
//	m, err := b.Attach(quota.Spec{...})       // before each start
//	u, err := quota.Stat(m.Spec.Mountpoint)   // ps, /metrics
//	b.Detach(m)                               // after each stop, once the container is gone
//	b.Remove(spec)                            // uninstall --purge, detached
package quota

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind names a backend.
type Kind string

const (
	KindProject Kind = "project" // filesystem project quotas
	KindImage   Kind = "image"   // per-module ext4 image on a loop device
)

// Spec is one module's quota. Paths are explicit: the runtime's Layout owns
// where they are.
type Spec struct {
	Name string // module name, used in errors
	// Mountpoint is the directory the quota covers: the image is mounted on
	// it, or it carries the project id. It must exist. The runtime sets its
	// owner and mode after Attach (a fresh image's root is root:root 0755).
	Mountpoint string
	// Image is the image file (image backend). Its directory must be
	// reachable by root only.
	Image string
	// ProjectID is the project id (project backend): the module's host uid
	// is a good choice, unique and stable per module.
	ProjectID uint32
	Bytes     int64 // requested byte limit
	Inodes    int64 // requested inode limit
}

// Usage is what statfs says about a quota: bytes and inodes in use and the
// limits that hold (the effective ones, not the requested ones).
type Usage struct {
	BytesUsed, BytesLimit   uint64
	InodesUsed, InodesLimit uint64
}

// Mount is an attached quota. Keep it to Detach; losing it is harmless:
// Recover finds what a dead runtime left.
type Mount struct {
	Spec   Spec
	Kind   Kind
	Device string // loop device, e.g. /dev/loop3 (image backend)
	// Resized: Attach grew or shrank the image to a new Bytes.
	Resized bool
	// Pending: the image was mounted already (Attach without Detach) and a
	// new Bytes waits for the next Attach after a Detach.
	Pending bool
	Limits  Usage // use and effective limits right after Attach
}

// Backend attaches and detaches quotas of one kind.
type Backend interface {
	Kind() Kind
	// Attach makes the quota hold on s.Mountpoint, creating its storage if
	// it is new and growing it if s.Bytes rose. Calling it again for an
	// attached quota is cheap and applies a raised limit.
	Attach(s Spec) (*Mount, error)
	// Detach undoes Attach (the data stays).
	Detach(m *Mount) error
	// Remove deletes the quota's storage for good (uninstall --purge). The
	// quota must be detached.
	Remove(s Spec) error
}

// Facts are what a probe learned about the host for a data directory.
type Facts struct {
	Dir          string
	FSType       string // filesystem holding Dir: "ext4", "xfs", or its magic in hex
	ProjectQuota bool   // the kernel enforces project quotas on it
	NoProject    string // why not, when ProjectQuota is false
	LoopControl  bool   // /dev/loop-control is there
	Ext4         bool   // the kernel mounts ext4 (/proc/filesystems)
	Mkfs         string // mkfs.ext4, with e2fsck, resize2fs and e2undo beside it; "" when missing
}

// Prober reports Facts for a directory. ProbeKernel is the real one; tests
// inject fakes.
type Prober func(dir string) (Facts, error)

// Choice is the chosen backend and why.
type Choice struct {
	Kind   Kind
	Reason string
}

func (c Choice) String() string { return string(c.Kind) + " (" + c.Reason + ")" }

// Choose picks the backend for f: project quotas where the filesystem and
// kernel enforce them, else an image per module. It is pure.
func Choose(f Facts) (Choice, error) {
	if f.ProjectQuota {
		return Choice{KindProject, fmt.Sprintf("%s on %s enforces project quotas", f.FSType, f.Dir)}, nil
	}
	var missing []string
	if !f.LoopControl {
		missing = append(missing, "no /dev/loop-control (loop driver)")
	}
	if !f.Ext4 {
		missing = append(missing, "the kernel has no ext4")
	}
	if f.Mkfs == "" {
		missing = append(missing, "no mkfs.ext4, e2fsck, resize2fs and e2undo in one dir (install e2fsprogs)")
	}
	if len(missing) > 0 {
		return Choice{}, fmt.Errorf("no storage quota backend for %s: project quotas: %s; image: %s",
			f.Dir, f.NoProject, strings.Join(missing, "; "))
	}
	return Choice{KindImage, fmt.Sprintf("project quotas unavailable: %s", f.NoProject)}, nil
}

// Open probes dir (the directory holding the modules' data dirs) with probe,
// ProbeKernel when nil, and returns the chosen backend.
func Open(dir string, probe Prober) (Backend, Choice, error) {
	if probe == nil {
		probe = ProbeKernel
	}
	f, err := probe(dir)
	if err != nil {
		return nil, Choice{}, fmt.Errorf("probe storage quotas on %s: %w", dir, err)
	}
	c, err := Choose(f)
	if err != nil {
		return nil, Choice{}, err
	}
	switch c.Kind {
	case KindProject:
		return projectBackend{}, c, nil
	default:
		return &imageBackend{mkfs: f.Mkfs}, c, nil
	}
}

// Stat reads use and limits at path with statfs. On an image it is the
// whole filesystem; on a project-quota directory ext4 and XFS report the
// project's limits.
func Stat(path string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return Usage{
		BytesUsed: (st.Blocks - st.Bfree) * bs, BytesLimit: st.Blocks * bs,
		InodesUsed: st.Files - st.Ffree, InodesLimit: st.Files,
	}, nil
}

func (s Spec) check() error {
	if s.Name == "" {
		return errors.New("quota: spec without a module name")
	}
	if s.Bytes <= 0 || s.Inodes <= 0 {
		return fmt.Errorf("module %s: quota %d bytes, %d inodes: both must be positive", s.Name, s.Bytes, s.Inodes)
	}
	if !filepath.IsAbs(s.Mountpoint) {
		return fmt.Errorf("module %s: quota mountpoint %q is not an absolute path", s.Name, s.Mountpoint)
	}
	return nil
}

// human renders a byte count for error messages.
func human(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
