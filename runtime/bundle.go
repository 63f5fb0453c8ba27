package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/blvm/blvm-sandbox/policy"
)

// bundle is the on-disk part of one module's container: an empty rootfs
// holding only mountpoints, and the merged config in a private directory
// beside it.
type bundle struct {
	dir    string
	rootfs string
	config string
}

// makeBundle builds the module's bundle from scratch. The rootfs is owned by
// host root and mounted read-only: the module can create nothing in it, so
// every mountpoint the policy names is created here, ahead of time (inside
// the user namespace, container root could not create them). The merged
// config is the module's alone: mode 0400, owned by its host uid, in a
// 0700 directory of that uid.
func (l Layout) makeBundle(p *policy.Policy, mergedConfig []byte, ids IDRange) (*bundle, error) {
	name := p.Module.Name
	if err := checkName(name); err != nil {
		return nil, err
	}
	b := &bundle{dir: l.Bundle(name)}
	b.rootfs = filepath.Join(b.dir, "rootfs")
	b.config = l.Config(name)
	if err := os.RemoveAll(b.dir); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.dir, err)
	}
	if err := os.MkdirAll(b.rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.dir, err)
	}
	// Explicit modes: the container's init walks the rootfs as the
	// module's uid, whatever the daemon's umask (the unit sets 0077).
	if err := os.Chmod(b.rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.dir, err)
	}
	if err := os.Chmod(b.dir, 0o711); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.dir, err)
	}
	for _, m := range p.Mounts {
		if err := b.mountpoint(m); err != nil {
			return nil, fmt.Errorf("bundle %s: mountpoint %s: %w", b.dir, m.Destination, err)
		}
	}
	// Written while private/ is still root's, then handed over. No fsync:
	// a bundle lives as long as one run, and recovery removes it after a
	// crash.
	private := l.BundlePrivate(name)
	if err := mkdirOwned(private, 0, 0o700); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.dir, err)
	}
	if err := writePrivateFile(b.config, mergedConfig, ids.HostUID()); err != nil {
		return nil, fmt.Errorf("bundle %s: config: %w", b.dir, err)
	}
	if err := ownDir(private, ids.HostUID(), 0o700); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.dir, err)
	}
	return b, nil
}

// mountpoint creates the empty file or directory a mount lands on.
func (b *bundle) mountpoint(m policy.Mount) error {
	dst := path.Clean(m.Destination)
	if !path.IsAbs(dst) || dst == "/" || strings.Contains(dst, "..") {
		return fmt.Errorf("not a clean absolute path")
	}
	host := filepath.Join(b.rootfs, filepath.FromSlash(dst))
	// Each directory on the way gets its mode explicitly, not through the
	// umask.
	dir := b.rootfs
	for _, part := range strings.Split(strings.TrimPrefix(path.Dir(dst), "/"), "/") {
		if part == "" {
			continue
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
	}
	if isFileMount(m) {
		f, err := os.OpenFile(host, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
		if err != nil {
			return err
		}
		return errors.Join(f.Chmod(0o444), f.Close())
	}
	if err := os.Mkdir(host, 0o755); err != nil {
		return err
	}
	return os.Chmod(host, 0o755)
}

// isFileMount reports whether a bind mount's source is a single file.
func isFileMount(m policy.Mount) bool {
	switch m.Source {
	case policy.MountBinary, policy.MountShim, policy.MountConfig, policy.MountSocket:
		return true
	}
	return false
}

func (b *bundle) remove() error { return os.RemoveAll(b.dir) }

// WriteBundle writes the module's bundle (empty rootfs with its mountpoints,
// merged config) the way a start does for a module given the ids range, and
// returns the rootfs and config paths. The benchmarks use it to give crun
// and runc the same bundle.
func (l Layout) WriteBundle(p *policy.Policy, mergedConfig []byte, ids IDRange) (rootfs, config string, err error) {
	if err := l.prepare(); err != nil {
		return "", "", err
	}
	b, err := l.makeBundle(p, mergedConfig, ids)
	if err != nil {
		return "", "", err
	}
	return b.rootfs, b.config, nil
}
