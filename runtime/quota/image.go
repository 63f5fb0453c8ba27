package quota

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
)

// mountFlags keep a module's image from ever carrying set-uid binaries,
// device nodes or executables into the node's view.
const mountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// mountData: a damaged image turns read-only rather than corrupting more
// (ext4's default is to continue); discard gives freed blocks back to the
// host as holes in the image.
const mountData = "errors=remount-ro,discard"

// imageBackend is a sparse ext4 image per module on a loop device.
type imageBackend struct {
	mkfs string // path of mkfs.ext4
}

func (*imageBackend) Kind() Kind { return KindImage }

// Attach implements Backend.
func (b *imageBackend) Attach(s Spec) (*Mount, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(s.Image) {
		return nil, fmt.Errorf("module %s: quota image %q is not an absolute path", s.Name, s.Image)
	}
	// The kernel reports resolved paths (mountinfo, sysfs backing_file).
	var err error
	if s.Mountpoint, err = filepath.EvalSymlinks(s.Mountpoint); err != nil {
		return nil, fmt.Errorf("module %s: quota mountpoint: %w", s.Name, err)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(s.Image))
	if err != nil {
		return nil, fmt.Errorf("module %s: quota image dir: %w", s.Name, err)
	}
	s.Image = filepath.Join(dir, filepath.Base(s.Image))
	if err := rootOnly(dir); err != nil {
		return nil, fmt.Errorf("module %s: quota images dir: %w", s.Name, err)
	}

	cur, err := mountAt(s.Mountpoint)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", s.Name, err)
	}
	if cur != nil {
		// Mounted already (a restart within one runtime): it must be ours.
		l, ok := mountedLoop(cur)
		if !ok || l.Backing != s.Image {
			return nil, fmt.Errorf("module %s: %s already has %s (%s) mounted on it, not the image %s",
				s.Name, s.Mountpoint, cur.Source, cur.FSType, s.Image)
		}
		return b.attached(s, l.Path)
	}
	loops, err := loopsBacking(s.Image)
	if err != nil {
		return nil, fmt.Errorf("module %s: list loop devices: %w", s.Name, err)
	}
	if loops = stillBound(loops); len(loops) > 0 {
		return nil, fmt.Errorf("module %s: image %s is already attached to %s but not mounted on %s; recover the runtime root first",
			s.Name, s.Image, loops[0].Path, s.Mountpoint)
	}
	if err := emptyDir(s.Mountpoint); err != nil {
		return nil, fmt.Errorf("module %s: %w", s.Name, err)
	}

	img, err := b.openImage(s)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	have, err := b.settle(s, img)
	if err != nil {
		return nil, err
	}
	want := imageBlocks(s.Bytes)
	if want < have {
		u, err := b.peekUsage(s, img)
		if err != nil {
			return nil, err
		}
		if uint64(s.Bytes) < u.BytesUsed {
			return nil, shrinkError(s, u, have*blockSize)
		}
	}
	if want != have {
		if err := b.resize(s, img, have, want); err != nil {
			return nil, err
		}
	}
	dev, fd, err := attachLoop(img)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", s.Name, err)
	}
	err = mountImage(dev, s.Mountpoint)
	unix.Close(fd) // the mount holds the device now; autoclear follows it
	if err != nil {
		return nil, fmt.Errorf("module %s: mount image %s (%s) on %s: %w", s.Name, s.Image, dev, s.Mountpoint, err)
	}
	m := &Mount{Spec: s, Kind: KindImage, Device: dev, Resized: want != have}
	if m.Limits, err = Stat(s.Mountpoint); err != nil {
		return nil, errors.Join(fmt.Errorf("module %s: %w", s.Name, err), b.Detach(m))
	}
	return m, nil
}

// attached is Attach for an image already mounted on s.Mountpoint from
// dev: the filesystem fills the file, and a new size waits for the next
// Attach that mounts it.
func (b *imageBackend) attached(s Spec, dev string) (*Mount, error) {
	st, err := os.Stat(s.Image)
	if err != nil {
		return nil, fmt.Errorf("module %s: quota image: %w", s.Name, err)
	}
	m := &Mount{Spec: s, Kind: KindImage, Device: dev}
	if m.Limits, err = Stat(s.Mountpoint); err != nil {
		return nil, fmt.Errorf("module %s: %w", s.Name, err)
	}
	have, want := st.Size()/blockSize, imageBlocks(s.Bytes)
	if want < have && uint64(s.Bytes) < m.Limits.BytesUsed {
		return nil, shrinkError(s, m.Limits, have*blockSize)
	}
	m.Pending = want != have
	return m, nil
}

// settle makes an unmounted image consistent and returns its size in
// blocks. An undo file means a resize was cut short: it is rolled back, and
// Attach will redo it. The superblock is the authority on the size; a file
// longer than it (a crash around a resize) is cut back to it.
func (b *imageBackend) settle(s Spec, img *os.File) (int64, error) {
	undo := s.Image + ".undo"
	if _, err := os.Stat(undo); err == nil {
		if err := b.tool("e2undo", undo, s.Image); err != nil {
			return 0, fmt.Errorf("module %s: roll back an interrupted resize of %s: %w", s.Name, s.Image, err)
		}
		if err := os.Remove(undo); err != nil {
			return 0, fmt.Errorf("module %s: %w", s.Name, err)
		}
	}
	sb, err := readSuperblock(img, s.Image)
	if err != nil {
		return 0, fmt.Errorf("module %s: %w", s.Name, err)
	}
	if sb.BlockSize != blockSize {
		return 0, fmt.Errorf("module %s: image %s has %d-byte blocks, want %d", s.Name, s.Image, sb.BlockSize, blockSize)
	}
	st, err := img.Stat()
	if err != nil {
		return 0, fmt.Errorf("module %s: %w", s.Name, err)
	}
	switch size := sb.Bytes(); {
	case st.Size() < size:
		return 0, fmt.Errorf("module %s: image %s is %d bytes, shorter than its %d-byte filesystem: truncated by someone; not mounting it", s.Name, s.Image, st.Size(), size)
	case st.Size() > size:
		if err := img.Truncate(size); err != nil {
			return 0, fmt.Errorf("module %s: cut image %s back to its filesystem: %w", s.Name, s.Image, err)
		}
	}
	return sb.Blocks, nil
}

// resize grows or shrinks an unmounted image offline: e2fsck -f, then
// resize2fs with an undo file, so that a crash in the middle is rolled back
// by the next Attach (settle). resize2fs refuses a shrink the data does not
// fit in, and then so does Attach.
func (b *imageBackend) resize(s Spec, img *os.File, have, want int64) error {
	fail := func(err error) error {
		return fmt.Errorf("module %s: resize image %s from %s to %s: %w", s.Name, s.Image, human(have*blockSize), human(want*blockSize), err)
	}
	if want > have {
		if err := growFile(img, want*blockSize); err != nil {
			return fail(err)
		}
	}
	if err := b.fsck(s.Image); err != nil {
		return fail(err)
	}
	undo := s.Image + ".undo"
	os.Remove(undo) // resize2fs appends to an existing one
	if err := b.tool("resize2fs", "-z", undo, s.Image, strconv.FormatInt(want, 10)); err != nil {
		os.Remove(undo)
		// Back to a file that fits the filesystem, which resize2fs left as
		// it was.
		return errors.Join(fail(err), img.Truncate(have*blockSize))
	}
	if err := errors.Join(img.Sync(), os.Remove(undo)); err != nil {
		return fail(err)
	}
	// Only now: a roll-back needs the blocks past the new end.
	if want < have {
		if err := img.Truncate(want * blockSize); err != nil {
			return fail(err)
		}
	}
	return nil
}

// peekUsage mounts the unmounted image read-only for a moment to read its
// use: the number a refusal names is then the one ps shows.
func (b *imageBackend) peekUsage(s Spec, img *os.File) (Usage, error) {
	dev, fd, err := attachLoop(img)
	if err != nil {
		return Usage{}, fmt.Errorf("module %s: %w", s.Name, err)
	}
	err = unix.Mount(dev, s.Mountpoint, "ext4", mountFlags|unix.MS_RDONLY, "")
	unix.Close(fd)
	if err != nil {
		return Usage{}, fmt.Errorf("module %s: mount image %s read-only to read its use: %w", s.Name, s.Image, err)
	}
	u, err := Stat(s.Mountpoint)
	return u, errors.Join(err, b.Detach(&Mount{Spec: s}))
}

// shrinkError refuses a byte limit below use, naming the module, its use
// and the requested size.
func shrinkError(s Spec, u Usage, size int64) error {
	return fmt.Errorf("module %s: disk_bytes %d (%s) is below the %d bytes (%s) its data already uses; its image stays at %d bytes (%s): set disk_bytes above the use, or delete data first",
		s.Name, s.Bytes, human(s.Bytes), u.BytesUsed, human(int64(u.BytesUsed)), size, human(size))
}

// openImage opens the module's image, making it first if there is none.
func (b *imageBackend) openImage(s Spec) (*os.File, error) {
	f, err := os.OpenFile(s.Image, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := b.makeImage(s); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(s.Image, os.O_RDWR|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("module %s: open quota image: %w", s.Name, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(int(f.Fd()), &st)
	switch {
	case err != nil:
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("%s is not a regular file (mode %#o)", s.Image, st.Mode)
	case st.Uid != 0 || st.Mode&0o077 != 0:
		// Whoever can write the raw image can feed the kernel a crafted
		// filesystem.
		err = fmt.Errorf("%s is uid %d mode %04o; want root's alone (0600)", s.Image, st.Uid, st.Mode&0o7777)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("module %s: quota image: %w", s.Name, err)
	}
	return f, nil
}

// makeImage makes a fresh image beside its final name and renames it there
// once mkfs succeeded, so a crash never leaves a half-made image.
func (b *imageBackend) makeImage(s Spec) error {
	tmp := s.Image + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("module %s: create quota image: %w", s.Name, err)
	}
	err = f.Truncate(imageBlocks(s.Bytes) * blockSize)
	if err == nil {
		err = runMkfs(b.mkfs, tmp, s.Bytes, s.Inodes)
	}
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(tmp, s.Image)
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(s.Image))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("module %s: make quota image %s: %w", s.Name, s.Image, err)
	}
	return nil
}

// Detach implements Backend: unmount; the loop device clears itself.
func (b *imageBackend) Detach(m *Mount) error {
	if m == nil {
		return nil
	}
	s := m.Spec
	cur, err := mountAt(s.Mountpoint)
	if err != nil {
		return fmt.Errorf("module %s: %w", s.Name, err)
	}
	var loops []loopDevice
	if cur != nil {
		l, ok := mountedLoop(cur)
		if !ok || l.Backing != s.Image {
			return fmt.Errorf("module %s: %s has %s mounted on it, not the image %s; left alone", s.Name, s.Mountpoint, cur.Source, s.Image)
		}
		if err := unmount(s.Mountpoint); err != nil {
			return fmt.Errorf("module %s: %w", s.Name, err)
		}
		loops = []loopDevice{l}
	} else if loops, err = loopsBacking(s.Image); err != nil {
		return fmt.Errorf("module %s: list loop devices: %w", s.Name, err)
	}
	var errs []error
	for _, l := range loops {
		if err := waitUnbound(l); err != nil {
			errs = append(errs, fmt.Errorf("module %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Remove implements Backend: delete the image (uninstall --purge).
func (b *imageBackend) Remove(s Spec) error {
	loops, err := loopsBacking(s.Image)
	if err != nil {
		return fmt.Errorf("module %s: list loop devices: %w", s.Name, err)
	}
	if len(loops) > 0 {
		return fmt.Errorf("module %s: image %s is still attached to %s; detach it first", s.Name, s.Image, loops[0].Path)
	}
	for _, p := range []string{s.Image, s.Image + ".new", s.Image + ".undo"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("module %s: remove quota image: %w", s.Name, err)
		}
	}
	return nil
}

// mountImage mounts dev on dir and makes the mount private, so that later
// mounts and unmounts under it reach no other mount namespace.
func mountImage(dev, dir string) error {
	if err := unix.Mount(dev, dir, "ext4", mountFlags, mountData); err != nil {
		return err
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return errors.Join(fmt.Errorf("make %s private: %w", dir, err), unmount(dir))
	}
	return nil
}

// unmount unmounts dir. A busy filesystem is detached lazily, so that no
// mount stays behind; its loop device then goes when the last user closes.
func unmount(dir string) error {
	err := unix.Unmount(dir, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EBUSY) {
		if err := unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			return fmt.Errorf("unmount %s (busy, then lazily): %w", dir, err)
		}
		return fmt.Errorf("unmount %s: busy; detached lazily, its loop device stays until the last open file on it closes", dir)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// mountAt returns the mount whose mountpoint is dir, or nil; of several
// stacked ones, the top one.
func mountAt(dir string) (*mountinfo.Info, error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	return ms[len(ms)-1], nil
}

// mountedLoop returns the loop device m is mounted from, if it is one.
func mountedLoop(m *mountinfo.Info) (loopDevice, bool) {
	return loopAt(unix.Mkdev(uint32(m.Major), uint32(m.Minor)))
}

// emptyDir refuses a mountpoint with files in it: the mount would hide
// them, and a module's data must never be on the host's filesystem.
func emptyDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("quota mountpoint: %w", err)
	}
	defer d.Close()
	st, err := d.Stat()
	if err != nil {
		return fmt.Errorf("quota mountpoint: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("quota mountpoint %s is not a directory", dir)
	}
	names, err := d.Readdirnames(1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("quota mountpoint: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("quota mountpoint %s is not empty (it holds %q): the image would hide those files; move them into the image or away first", dir, names[0])
	}
	return nil
}

// growFile extends the image to size bytes, sparsely.
func growFile(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// rootOnly refuses a directory others can reach: the images in it must be
// writable by root alone.
func rootOnly(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if st.Uid != 0 || st.Mode&0o077 != 0 {
		return fmt.Errorf("%s is uid %d mode %04o; want root's alone (0700)", dir, st.Uid, st.Mode&0o7777)
	}
	return nil
}
