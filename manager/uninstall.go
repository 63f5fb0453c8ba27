package manager

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/runtime"
)

// UninstallOptions say what an uninstall removes besides the module's
// installed files.
type UninstallOptions struct {
	// Purge also removes the module's data (its /data and the image that
	// holds its quota). Without it the data stays, so that a reinstall
	// finds it again.
	Purge bool
}

// Uninstall removes <modules_dir>/<name>. A module that is loaded (its hub
// socket exists) is refused: unload it first, so nothing runs from files
// that are gone. The version high-water mark stays whatever happens: an
// uninstall must never open the door to a downgrade. It returns the paths
// it removed.
func Uninstall(name string, cfg *nodeconfig.Config, opts UninstallOptions) ([]string, error) {
	if !manifest.ValidModuleName(name) {
		return nil, fmt.Errorf("uninstall %q: not a valid module name", name)
	}
	layout := runtime.Layout{Root: cfg.Paths.Root}
	if _, err := os.Lstat(layout.Socket(name)); err == nil {
		return nil, fmt.Errorf("uninstall %s: the module is loaded (%s exists); unload it first (blvm-sandbox unload %s)", name, layout.Socket(name), name)
	}
	dir := filepath.Join(cfg.Paths.ModulesDir, name)
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !opts.Purge {
			return nil, fmt.Errorf("uninstall %s: %s: not installed", name, dir)
		}
	case err != nil:
		return nil, fmt.Errorf("uninstall %s: %w", name, err)
	case !st.IsDir():
		return nil, fmt.Errorf("uninstall %s: %s is not a directory", name, dir)
	}
	var removed []string
	if err == nil {
		// Renamed aside first, so discovery never sees half a module.
		aside := filepath.Join(cfg.Paths.ModulesDir, "."+name+".uninstall")
		if err := os.RemoveAll(aside); err != nil {
			return nil, fmt.Errorf("uninstall %s: %w", name, err)
		}
		if err := os.Rename(dir, aside); err != nil {
			return nil, fmt.Errorf("uninstall %s: %w", name, err)
		}
		if err := os.RemoveAll(aside); err != nil {
			return nil, fmt.Errorf("uninstall %s: %w", name, err)
		}
		removed = append(removed, dir)
	}
	if opts.Purge {
		paths, err := layout.PurgeData(name)
		removed = append(removed, paths...)
		if err != nil {
			return removed, fmt.Errorf("uninstall %s: purge: %w", name, err)
		}
	}
	return removed, nil
}
