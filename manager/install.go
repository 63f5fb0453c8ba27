package manager

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
)

// Install verifies the module in src exactly as a load would, then copies it
// into the modules dir as <modules_dir>/<name>: the module.toml bytes that
// were parsed, the config.toml bytes that matched [config], and the binary
// taken from the sealed store entry (the bytes that were verified, not
// whatever src holds now). An installed module of
// the same name is replaced only by the same or a higher version, unless
// allowDowngrade. The copy is assembled beside the target and renamed in, so
// the modules dir never holds half a module.
func Install(src string, cfg *nodeconfig.Config, host policy.Host, allowDowngrade bool) (*loader.Prepared, string, error) {
	prep, err := loader.Prepare(src, cfg, loader.Options{Root: cfg.Paths.Root, Host: host, AllowDowngrade: allowDowngrade})
	if err != nil {
		return nil, "", err
	}
	m := prep.Manifest
	dst := filepath.Join(cfg.Paths.ModulesDir, m.Name)
	if old, err := manifest.Parse(filepath.Join(dst, manifest.FileName)); err == nil && !allowDowngrade {
		ov, oerr := manifest.ParseVersion(old.Version)
		nv, nerr := manifest.ParseVersion(m.Version)
		if oerr == nil && nerr == nil && nv.LessThan(ov) {
			return nil, "", fmt.Errorf("install %s %s: %s is installed; a downgrade needs --allow-downgrade", m.Name, m.Version, old.Version)
		}
	}
	if err := os.MkdirAll(cfg.Paths.ModulesDir, 0o755); err != nil {
		return nil, "", fmt.Errorf("install: %w", err)
	}
	tmp, err := os.MkdirTemp(cfg.Paths.ModulesDir, "."+m.Name+".install-")
	if err != nil {
		return nil, "", fmt.Errorf("install: %w", err)
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	// Write what was verified, never a second read of src: module.toml as
	// parsed, config.toml as hashed against [config], the binary from the
	// sealed store entry.
	write := func(name string, data []byte) error {
		return atomicfile.WriteNew(filepath.Join(tmp, name), bytes.NewReader(data), 0o644)
	}
	err = write(manifest.FileName, prep.ManifestSource)
	if err == nil && prep.Verified.Config != nil {
		err = write(manifest.ConfigFileName, prep.Verified.Config)
	}
	bin := filepath.Join(tmp, m.EntryPoint)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(bin), 0o755)
	}
	if err == nil {
		err = copyRegular(prep.Verified.StorePath, bin, 0o755)
	}
	if err != nil {
		return nil, "", fmt.Errorf("install %s: %w", m.Name, err)
	}
	old := dst + ".old"
	os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("install %s: %w", m.Name, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Rename(old, dst)
		return nil, "", fmt.Errorf("install %s: %w", m.Name, err)
	}
	os.RemoveAll(old)
	return prep, dst, nil
}

// copyRegular copies a regular file, refusing symlinks at the source.
func copyRegular(from, to string, mode os.FileMode) error {
	in, err := os.OpenFile(from, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", from)
	}
	return atomicfile.WriteNew(to, in, mode)
}
