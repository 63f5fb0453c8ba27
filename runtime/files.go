package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
)

// ownDir makes dir a directory owned by uid (and gid uid) with mode, without
// following a symlink: whoever could plant one would get root to chown its
// target.
func ownDir(dir string, uid int, mode os.FileMode) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, uid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

// mkdirOwned creates dir if it is missing, then sets its owner and mode.
func mkdirOwned(dir string, uid int, mode os.FileMode) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return ownDir(dir, uid, mode)
}

// dataMarker, a root-owned file in a module's data parent, says the parent
// has the per-module layout (the module's files in db/). A module can never
// forge it: it reaches only db/, and under older runtimes, which mounted the
// parent itself, it could create files but not root-owned ones.
const dataMarker = ".blvm-layout"

// migrating is where a data dir of the old layout sits while it moves into
// db/. Module names have no dots, so it is no module's name.
func (l Layout) migrating(name string) string { return l.DataParent(name) + ".migrating" }

// prepareData makes the module's data parent and db/, both 0700 and owned by
// its host uid, moving a data dir of the old layout (the module's files
// directly in the parent) into db/ first. It runs at load and before every
// start, so a mode or owner the module changed does not survive. A
// filesystem mounted on the parent (the disk quota) must be mounted before.
func (l Layout) prepareData(name string, ids IDRange) error {
	parent, db := l.DataParent(name), l.Data(name)
	if err := l.migrateData(name); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := ownDir(parent, ids.HostUID(), 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := mkdirOwned(db, ids.HostUID(), 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return nil
}

// migrateData leaves the module's data parent in the per-module layout: a
// directory holding the marker. Every step is a rename or a create, and a
// crash between steps is finished at the next load without loss.
func (l Layout) migrateData(name string) error {
	parent, staging := l.DataParent(name), l.migrating(name)
	if _, err := os.Lstat(staging); err == nil {
		return l.finishMigration(name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	st, err := os.Lstat(parent)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := mkdirOwned(parent, 0, 0o700); err != nil {
			return err
		}
		return writeMarker(parent)
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s: not a directory (%s)", parent, st.Mode().Type())
	}
	if hasMarker(parent) {
		return nil
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	mounted, err := mountinfo.Mounted(parent)
	if err != nil {
		return err
	}
	if mounted {
		// A fresh filesystem holds at most its lost+found; anything else
		// cannot be moved by a rename of the mountpoint.
		if len(entries) == 0 || len(entries) == 1 && entries[0].Name() == "lost+found" {
			return writeMarker(parent)
		}
		return fmt.Errorf("%s: a mounted filesystem with files but no %s; move its files into db/ by hand", parent, dataMarker)
	}
	if len(entries) == 0 {
		return writeMarker(parent)
	}
	// The old layout: the whole dir becomes db/.
	if err := os.Rename(parent, staging); err != nil {
		return fmt.Errorf("migrate %s: %w", parent, err)
	}
	return l.finishMigration(name)
}

// finishMigration completes the move of staging into parent/db.
func (l Layout) finishMigration(name string) error {
	parent, staging, db := l.DataParent(name), l.migrating(name), l.Data(name)
	if err := mkdirOwned(parent, 0, 0o700); err != nil {
		return err
	}
	if !hasMarker(parent) {
		if err := writeMarker(parent); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(db); err == nil {
		return fmt.Errorf("migrate %s: both %s and %s exist; keep one by hand", parent, staging, db)
	}
	if err := os.Rename(staging, db); err != nil {
		return fmt.Errorf("migrate %s: %w", parent, err)
	}
	return atomicfile.SyncDir(filepath.Dir(parent))
}

func hasMarker(parent string) bool {
	var st unix.Stat_t
	err := unix.Lstat(filepath.Join(parent, dataMarker), &st)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Uid == 0
}

func writeMarker(parent string) error {
	p := filepath.Join(parent, dataMarker)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("db\n")); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := unix.Fchown(fd, 0, 0); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return unix.Fsync(fd)
}

// writePrivateFile creates path (in a directory only root can enter yet)
// with data, owned by uid, mode 0400.
func writePrivateFile(path string, data []byte, uid int) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Chown(uid, uid); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Chmod(0o400); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
