package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/blvm/blvm-sandbox/policy"
)

// OCIFiles are what a standalone OCI bundle is made of besides the policy.
type OCIFiles struct {
	Binary     string  // the verified binary, copied into the bundle
	Shim       string  // the static Landlock shim, copied into the bundle
	Config     []byte  // the merged config
	Socket     string  // host path of the hub socket the operator serves; "" for DIR/hub.sock
	CgroupPath string  // cgroupsPath; "" for /blvm-bundle/NAME
	IDs        IDRange // host ids container uid 0 maps to
}

// OCIBundle is a bundle on disk and the paths an operator needs.
type OCIBundle struct {
	Dir, Rootfs, Binary, Shim, Config, Socket, Data string
	Spec                                            *specs.Spec
}

// WriteOCIBundle writes a bundle runc or crun run unchanged: config.json
// (the policy rendered by Policy.OCISpec), the rootfs with every
// mountpoint, copies of the binary and the shim, the merged config (0400,
// the module's host uid) and the data directory. dir must not exist yet:
// an operator's old bundle is never overwritten. Every directory above it
// must be searchable by others, since the module's uid walks the paths.
func WriteOCIBundle(dir string, p *policy.Policy, f OCIFiles) (_ *OCIBundle, err error) {
	if err := checkName(p.Module.Name); err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := searchable(dir); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	// No half-written bundle for a runtime to run.
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	uid := f.IDs.HostUID()
	b := &OCIBundle{
		Dir: dir, Rootfs: filepath.Join(dir, "rootfs"),
		Binary: filepath.Join(dir, "module"), Shim: filepath.Join(dir, "landlock-shim"),
		Config: filepath.Join(dir, "private", "config.toml"), Socket: f.Socket, Data: filepath.Join(dir, "data"),
	}
	if b.Socket == "" {
		b.Socket = filepath.Join(dir, "hub.sock")
	}
	rootfs := &bundle{dir: dir, rootfs: b.Rootfs}
	if err := os.Mkdir(b.Rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := os.Chmod(b.Rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	for _, m := range p.Mounts {
		if err := rootfs.mountpoint(m); err != nil {
			return nil, fmt.Errorf("bundle %s: mountpoint %s: %w", dir, m.Destination, err)
		}
		if err := tmpfsMountpointMode(b.Rootfs, m); err != nil {
			return nil, fmt.Errorf("bundle %s: mountpoint %s: %w", dir, m.Destination, err)
		}
	}
	if err := copyExecutable(f.Binary, b.Binary); err != nil {
		return nil, fmt.Errorf("bundle %s: binary: %w", dir, err)
	}
	if err := copyExecutable(f.Shim, b.Shim); err != nil {
		return nil, fmt.Errorf("bundle %s: shim: %w", dir, err)
	}
	private := filepath.Dir(b.Config)
	if err := mkdirOwned(private, 0, 0o700); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := writePrivateFile(b.Config, f.Config, uid); err != nil {
		return nil, fmt.Errorf("bundle %s: config: %w", dir, err)
	}
	if err := ownDir(private, uid, 0o700); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := mkdirOwned(b.Data, uid, 0o700); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	cg := f.CgroupPath
	if cg == "" {
		cg = "/blvm-bundle/" + p.Module.Name
	}
	b.Spec, err = p.OCISpec(policy.HostPaths{
		Rootfs: b.Rootfs, Binary: b.Binary, Shim: b.Shim, Config: b.Config, Socket: b.Socket, Data: b.Data,
		CgroupPath: cg, UIDBase: f.IDs.Base, GIDBase: f.IDs.Base, IDCount: f.IDs.Count,
	})
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	js, err := json.MarshalIndent(b.Spec, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	return b, nil
}

// tmpfsMountpointMode gives a tmpfs mountpoint the mode its mount asks
// for. runc (1.1.5) chmods a tmpfs to the mode of the directory it lands
// on after mounting it, so /tmp, mode=1777 in the policy, would be 0755.
// The directory itself is never reachable: the rootfs is read-only and the
// tmpfs covers it.
func tmpfsMountpointMode(rootfs string, m policy.Mount) error {
	if m.Type != "tmpfs" {
		return nil
	}
	for _, o := range m.Options {
		v, ok := strings.CutPrefix(o, "mode=")
		if !ok {
			continue
		}
		mode, err := strconv.ParseUint(v, 8, 32)
		if err != nil || mode > 0o7777 {
			return fmt.Errorf("option %q: not an octal mode", o)
		}
		// os.Chmod maps Go's mode bits; the sticky, setgid and setuid
		// bits are set from the octal value.
		fm := os.FileMode(mode & 0o777)
		if mode&0o1000 != 0 {
			fm |= os.ModeSticky
		}
		if mode&0o2000 != 0 {
			fm |= os.ModeSetgid
		}
		if mode&0o4000 != 0 {
			fm |= os.ModeSetuid
		}
		return os.Chmod(filepath.Join(rootfs, filepath.FromSlash(path.Clean(m.Destination))), fm)
	}
	return nil
}

// copyExecutable copies src to a new root-owned 0555 file at dst.
func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o555)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", dst, err)
	}
	if err := errors.Join(out.Chmod(0o555), out.Close()); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	return nil
}
