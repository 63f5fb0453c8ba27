package manager

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
)

// Install verifies the module in src exactly as a load would, then copies it
// into the modules dir as <modules_dir>/<name>: module.toml, its config.toml
// when present, and the binary taken from the sealed store entry (the bytes
// that were verified, not whatever src holds now). An installed module of
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
	copies := []struct {
		from, to string
		mode     os.FileMode
	}{
		{filepath.Join(src, manifest.FileName), manifest.FileName, 0o644},
		{prep.Verified.StorePath, m.EntryPoint, 0o755},
	}
	if _, err := os.Stat(filepath.Join(src, loader.ConfigFileName)); err == nil {
		copies = append(copies, struct {
			from, to string
			mode     os.FileMode
		}{filepath.Join(src, loader.ConfigFileName), loader.ConfigFileName, 0o644})
	}
	for _, c := range copies {
		if err := copyRegular(c.from, filepath.Join(tmp, c.to), c.mode); err != nil {
			return nil, "", fmt.Errorf("install %s: %w", m.Name, err)
		}
	}
	// The manifest copied must be the one verified: re-read and compare the
	// signed digest, so a module.toml swapped after Prepare is caught.
	again, err := manifest.Parse(filepath.Join(tmp, manifest.FileName))
	if err != nil {
		return nil, "", fmt.Errorf("install %s: %w", m.Name, err)
	}
	a, errA := manifest.SigningDigest(m)
	b, errB := manifest.SigningDigest(again)
	if errA != nil || errB != nil || a != b {
		return nil, "", fmt.Errorf("install %s: module.toml changed while it was being installed", m.Name)
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
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
