package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/blvm/blvm-sandbox/internal/ownedpath"
	"github.com/blvm/blvm-sandbox/manifest"
)

// Layout is where the runtime keeps its files under the root (DESIGN.md
// "On disk"). Every path a module name reaches goes through Layout, which
// refuses names that are not valid module names, so a name can never walk
// out of its directory.
type Layout struct {
	Root string
	// cgroups is where the supervisor placed its modules' cgroups
	// (placeCgroups); nil in a Layout made only to find files.
	cgroups *cgroupPlace
}

// Dirs the runtime owns. The store and trust dirs belong to verify.
func (l Layout) StateDir() string       { return filepath.Join(l.Root, "state") }
func (l Layout) ContainersDir() string  { return filepath.Join(l.Root, "state", "containers") }
func (l Layout) SocketsDir() string     { return filepath.Join(l.Root, "sockets") }
func (l Layout) BundlesDir() string     { return filepath.Join(l.Root, "bundles") }
func (l Layout) LogsDir() string        { return filepath.Join(l.Root, "logs") }
func (l Layout) ModulesDataDir() string { return filepath.Join(l.Root, "data", "modules") }
func (l Layout) ImagesDir() string      { return filepath.Join(l.Root, "data", "images") }

// Image is the disk image that holds the module's data quota (the image
// backend), root-only.
func (l Layout) Image(name string) string { return filepath.Join(l.ImagesDir(), name+".img") }

// legacyIDsFile is where runtimes before the host-wide registry kept their
// uid ranges; it is imported once (importLegacy).
func (l Layout) legacyIDsFile() string { return filepath.Join(l.Root, "state", "ids.json") }

// Each module's socket, data and merged config sit under a directory of
// their own, mode 0700 and owned by the module's host uid, so nobody else
// reaches them whatever mode the module gives the leaf (DESIGN.md decision
// 13). Container root reaches them through its capabilities, which cover
// inodes owned by an id mapped into its user namespace.

// SocketDir is the module's private socket directory.
func (l Layout) SocketDir(name string) string { return filepath.Join(l.SocketsDir(), name) }

// Socket is the module's hub socket on the host.
func (l Layout) Socket(name string) string { return filepath.Join(l.SocketDir(name), "hub.sock") }

// Bundle holds the module's rootfs and merged config while it runs.
func (l Layout) Bundle(name string) string { return filepath.Join(l.BundlesDir(), name) }

// BundlePrivate is the module's private part of its bundle.
func (l Layout) BundlePrivate(name string) string { return filepath.Join(l.Bundle(name), "private") }

// Config is the merged config the module reads at /etc/module/config.toml.
func (l Layout) Config(name string) string {
	return filepath.Join(l.BundlePrivate(name), "config.toml")
}

// DataParent is the module's private data directory; a per-module
// filesystem (the disk quota) is mounted here.
func (l Layout) DataParent(name string) string { return filepath.Join(l.ModulesDataDir(), name) }

// Data is the module's own read-write directory, its /data, kept across
// restarts.
func (l Layout) Data(name string) string { return filepath.Join(l.DataParent(name), "db") }

// Log is the module's captured stdout and stderr.
func (l Layout) Log(name string) string { return filepath.Join(l.LogsDir(), name+".log") }

// RecordDir holds the sockets `blvm-sandbox record` listens on for a
// record-mode filter's notify fd. Only root reaches it: whoever connects
// there is libcontainer, handing over the module's filter.
func (l Layout) RecordDir() string { return filepath.Join(l.StateDir(), "record") }

// RecordAgent is where the recorder of a record-mode policy listens; the
// process that creates the container connects there with the notify fd.
func (l Layout) RecordAgent(name string) string { return filepath.Join(l.RecordDir(), name+".sock") }

// rootHash names a root in names that must not collide between roots.
func rootHash(abs string) string {
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:4])
}

// ContainerID is libcontainer's id for the module's container.
func ContainerID(name string) string { return "blvm-" + name }

func checkName(name string) error {
	if !manifest.ValidModuleName(name) {
		return fmt.Errorf("module name %q: not a valid module name", name)
	}
	return nil
}

// prepare creates the runtime's directories. Every directory on the way to a
// bundle must be searchable by the modules' mapped uids (o+x), or rootfs
// preparation fails inside the user namespace with EACCES; nothing is
// readable by them.
func (l Layout) prepare() error {
	if err := os.MkdirAll(l.Root, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(l.Root, 0o711); err != nil {
		return err
	}
	if err := searchable(l.Root); err != nil {
		return err
	}
	// Everything the runtime puts under the root (bundles, sockets, state,
	// the modules' data) is only as safe as the directories leading to
	// it: another user who owned one could rename it and swap in theirs.
	if err := ownedpath.Check(l.Root); err != nil {
		return fmt.Errorf("runtime root %s: %w: that user could swap the bundles, sockets and state under it; use a root only root can change", l.Root, err)
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{l.StateDir(), 0o700}, {l.ContainersDir(), 0o700}, {l.SocketsDir(), 0o711},
		{l.BundlesDir(), 0o711}, {l.LogsDir(), 0o700}, {filepath.Join(l.Root, "data"), 0o711},
		{l.ModulesDataDir(), 0o711}, {l.ImagesDir(), 0o700},
	} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
	}
	return nil
}

// searchable checks that every directory above dir lets others search it:
// the modules' mapped uids must reach their bundles, sockets and data.
func searchable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("runtime root %s: %s is mode %04o; the modules' uids must be able to search it (chmod o+x)", abs, d, st.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

// binaryContains reports whether the directory of the binary exe contains
// dir. libcontainer gives each container's init a sealed view of the
// runtime's binary through an overlayfs whose lower layers are the binary's
// directory and the container's state directory. When the first contains
// the second, overlayfs refuses (ELOOP) and libcontainer falls back to
// copying the whole binary on every start.
func binaryContains(exe, dir string) bool {
	rel, err := filepath.Rel(filepath.Dir(exe), dir)
	return err == nil && filepath.IsAbs(dir) && rel != ".." && !strings.HasPrefix(rel, "../")
}

// PurgeData removes the module's data, for an uninstall that asks for it:
// its data parent (db/ and all), the disk image of its quota, and what an
// interrupted migration left beside them (which a later load would
// otherwise put back). The module must not be loaded: a data parent with a
// filesystem mounted on it is refused. A project quota's limit stays set on
// its id, harmless once the tree is gone. It returns what it removed.
func (l Layout) PurgeData(name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	parent := l.DataParent(name)
	if mounted, err := mountinfo.Mounted(parent); err == nil && mounted {
		return nil, fmt.Errorf("%s has its disk image mounted (is the module loaded, or did a daemon die? start and stop the daemon to recover)", parent)
	}
	var removed []string
	for _, p := range []string{parent, l.migrating(name), l.toImage(name), l.toImageDone(name),
		l.Image(name), l.Image(name) + ".new", l.Image(name) + ".undo"} {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}
