package quota

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Recover removes what a runtime that died left of its image quotas:
// every mount of a loop device backed by a file in images (wherever it is
// mounted), and then those loop devices. Nothing of another root is
// touched. The images stay. Run it after the root's containers are
// destroyed: a live container still holds its /data, so its loop device
// would only go when the container does.
func Recover(images string) error {
	mounts, loops, err := leftovers(images)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		if err := unmount(m.Mountpoint); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range loops {
		if err := clearLoop(l); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists the mounts and loop devices of images in images: what
// Recover would remove. After Detach of every quota, or after Recover, it
// is empty.
func Leftovers(images string) ([]string, error) {
	mounts, loops, err := leftovers(images)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		out = append(out, fmt.Sprintf("mount %s (%s)", m.Mountpoint, m.Source))
	}
	for _, l := range loops {
		out = append(out, fmt.Sprintf("loop device %s backed by %s", l.Path, l.Backing))
	}
	return out, nil
}

// leftovers finds the loop devices backed by files in images and the mounts
// of them, deepest mountpoint first.
func leftovers(images string) ([]*mountinfo.Info, []loopDevice, error) {
	dir, err := filepath.EvalSymlinks(images)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil // a root that never had an image
	}
	if err != nil {
		return nil, nil, fmt.Errorf("quota images dir: %w", err)
	}
	all, err := loopDevices()
	if err != nil {
		return nil, nil, fmt.Errorf("list loop devices: %w", err)
	}
	ours := map[uint64]bool{}
	var loops []loopDevice
	for _, l := range all {
		if strings.HasPrefix(l.Backing, dir+"/") {
			ours[l.Dev] = true
			loops = append(loops, l)
		}
	}
	if len(loops) == 0 {
		return nil, nil, nil
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !ours[unix.Mkdev(uint32(m.Major), uint32(m.Minor))], false
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read mountinfo: %w", err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	return mounts, loops, nil
}
