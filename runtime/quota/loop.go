package quota

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Flags of struct loop_info64 (linux/loop.h); x/sys/unix does not name them.
const (
	loFlagsAutoclear = 4
	loFlagsDirectIO  = 16
)

const sysBlock = "/sys/block"

// loopDevice is a bound loop device as sysfs shows it.
type loopDevice struct {
	Path    string // /dev/loopN
	Dev     uint64 // device number
	Backing string // backing file's path, without " (deleted)"
	// Autoclear: the kernel unbinds the device when its last user closes
	// it (how the runtime binds images); losetup does not set it.
	Autoclear bool
}

// attachLoop binds a free loop device to img with autoclear, so that the
// device goes away by itself when its last user (the mount) lets go. The
// caller must mount it before closing the returned fd.
func attachLoop(img *os.File) (dev string, fd int, err error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer unix.Close(ctl)
	for attempt := 0; attempt < 16; attempt++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", -1, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev = "/dev/loop" + strconv.Itoa(n)
		fd, err = unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", -1, fmt.Errorf("open %s: %w", dev, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
		// Direct I/O: without it the image's pages are cached twice, once
		// by the module's ext4 and once as the host's image file.
		cfg.Info.Flags = loFlagsAutoclear | loFlagsDirectIO
		copy(cfg.Info.File_name[:], img.Name())
		err = unix.IoctlLoopConfigure(fd, &cfg)
		if errors.Is(err, unix.EINVAL) {
			cfg.Info.Flags = loFlagsAutoclear
			err = unix.IoctlLoopConfigure(fd, &cfg)
		}
		if err == nil {
			return dev, fd, nil
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EBUSY) {
			return "", -1, fmt.Errorf("LOOP_CONFIGURE %s with %s: %w", dev, img.Name(), err)
		}
		// Another process took the free device between the two calls.
	}
	return "", -1, fmt.Errorf("LOOP_CONFIGURE with %s: every free loop device was taken first", img.Name())
}

// loopDevices lists the bound loop devices.
func loopDevices() ([]loopDevice, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, err
	}
	var out []loopDevice
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "loop") {
			continue
		}
		if _, err := os.Stat(filepath.Join(sysBlock, name, "loop")); err != nil {
			continue // unbound: no loop/ dir
		}
		d, err := os.ReadFile(filepath.Join(sysBlock, name, "dev"))
		if err != nil {
			continue // gone meanwhile
		}
		dev, err := parseDevNum(strings.TrimSpace(string(d)))
		if err != nil {
			return nil, fmt.Errorf("%s/%s/dev: %w", sysBlock, name, err)
		}
		if l, ok := loopAt(dev); ok { // else unbound meanwhile
			out = append(out, l)
		}
	}
	return out, nil
}

// parseDevNum parses sysfs's "major:minor".
func parseDevNum(s string) (uint64, error) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("%q: want major:minor", s)
	}
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q: want major:minor", s)
	}
	return unix.Mkdev(uint32(a), uint32(b)), nil
}

// loopsBacking returns the bound loop devices whose backing file is path.
// It looks only at loop devices with a size, which /proc/partitions lists
// in one read: a host keeps every loop device it ever used (a hundred here,
// 0.6 ms to read each one's sysfs files), and an image is never empty.
func loopsBacking(path string) ([]loopDevice, error) {
	all, err := sizedLoops()
	if err != nil {
		if all, err = loopDevices(); err != nil {
			return nil, err
		}
	}
	var out []loopDevice
	for _, l := range all {
		if l.Backing == path {
			out = append(out, l)
		}
	}
	return out, nil
}

// sizedLoops lists the bound loop devices that have a size.
func sizedLoops() ([]loopDevice, error) {
	b, err := os.ReadFile("/proc/partitions")
	if err != nil {
		return nil, err
	}
	var out []loopDevice
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasPrefix(f[3], "loop") {
			continue
		}
		maj, err1 := strconv.ParseUint(f[0], 10, 32)
		min, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("/proc/partitions: %q: want major minor blocks name", line)
		}
		if l, ok := loopAt(unix.Mkdev(uint32(maj), uint32(min))); ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// loopAt returns the loop device with device number dev, if it is one and
// it is bound: the device a mount comes from, without listing them all.
func loopAt(dev uint64) (loopDevice, bool) {
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev))
	b, err := os.ReadFile(filepath.Join(sys, "loop", "backing_file"))
	if err != nil {
		return loopDevice{}, false
	}
	target, err := os.Readlink(sys)
	if err != nil {
		return loopDevice{}, false
	}
	ac, _ := os.ReadFile(filepath.Join(sys, "loop", "autoclear"))
	return loopDevice{
		Path:      "/dev/" + filepath.Base(target),
		Dev:       dev,
		Backing:   strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)"),
		Autoclear: strings.TrimSpace(string(ac)) == "1",
	}, true
}

// stillBound waits for the devices of loops to unbind, as autoclear devices
// do once their last user lets go (a mount just taken off, a dying
// container's mount namespace), and returns the devices that stay bound.
// A device that reads as not autoclear is waited for too: a start right
// after a stop was once refused here, under load, with the module's own
// device still bound (one start in 100 of a benchmark); the wait costs only
// the refusal path. Only a device still bound after the wait is refused.
func stillBound(loops []loopDevice) []loopDevice {
	var out []loopDevice
	for _, l := range loops {
		if waitUnbound(l) != nil {
			out = append(out, l)
		}
	}
	return out
}

// clearLoop unbinds a loop device nobody uses, and waits until sysfs shows
// it unbound. A device still in use gets autoclear instead (the kernel
// unbinds it when its last user closes) and an error.
func clearLoop(l loopDevice) error {
	fd, err := unix.Open(l.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		unix.Close(fd)
	}
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("LOOP_CLR_FD %s (backing %s): %w", l.Path, l.Backing, err)
	}
	return waitUnbound(l)
}

// waitUnbound waits for the kernel to finish unbinding l, which it does
// when the last user closes the device (autoclear).
func waitUnbound(l loopDevice) error {
	name := filepath.Base(l.Path)
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(sysBlock, name, "loop", "backing_file"))
		if err != nil || strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") != l.Backing {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still bound to %s after 3s: something still holds it open", l.Path, l.Backing)
		}
	}
}
