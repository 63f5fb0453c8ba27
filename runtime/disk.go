package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime/quota"
)

// The disk quota (runtime/quota) holds the module's whole data parent: the
// image backend mounts a filesystem of the quota's size on it, so db/ (the
// module's /data) and the runtime's marker live inside the limit. It is put
// in place at load, before the data dir is prepared, stays across restarts,
// and goes at unload once the container is gone.

// Where the data of a module sits while it moves from the host's filesystem
// into a new quota image (a module that ran before quotas existed). Module
// names have no dots, so neither is a module's name.
func (l Layout) toImage(name string) string     { return l.DataParent(name) + ".to-image" }
func (l Layout) toImageDone(name string) string { return l.DataParent(name) + ".to-image-done" }

// quotaSpec is the module's quota as the policy sets it.
func (l Layout) quotaSpec(p *policy.Policy, ids IDRange) quota.Spec {
	name := p.Module.Name
	return quota.Spec{
		Name: name, Mountpoint: l.DataParent(name), Image: l.Image(name),
		ProjectID: uint32(ids.HostUID()),
		Bytes:     p.Storage.Bytes.Value, Inodes: p.Storage.Inodes.Value,
	}
}

// attachDisk puts the module's quota on its data parent. The policy must
// have been compiled for this host's backend: explain and the runtime then
// say the same thing.
func (s *Supervisor) attachDisk(sv *supervised) (*quota.Mount, error) {
	p := sv.mod.Policy
	if got, want := p.Storage.Backend, string(s.disk.Kind()); got != want {
		return nil, fmt.Errorf("disk quota: the policy was compiled for storage backend %q, but this host enforces %q (%s); compile it with this host's facts",
			got, want, s.diskChoice)
	}
	name := p.Module.Name
	spec := s.layout.quotaSpec(p, sv.ids)
	if s.disk.Kind() == quota.KindProject {
		// Data kept in an image from the time this host had no project
		// quotas must not be left behind for an empty /data.
		if _, err := os.Lstat(spec.Image); err == nil {
			return nil, fmt.Errorf("disk quota: %s holds this module's data from the image backend; this host now uses project quotas: move the data out of the image into %s by hand", spec.Image, s.layout.Data(name))
		}
		if err := s.layout.migrateData(name); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		return s.disk.Attach(spec)
	}
	if err := s.layout.finishToImage(name, s.disk, spec); err != nil {
		return nil, err
	}
	if mounted, err := mountinfo.Mounted(spec.Mountpoint); err == nil && mounted {
		return s.disk.Attach(spec) // a restart within this runtime's life
	}
	parent := spec.Mountpoint
	if err := s.layout.migrateData(name); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// What the host's filesystem holds under the parent: nothing, the
	// marker of a module that never wrote, or the data of a module that
	// ran without a quota, which moves into the image.
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if len(entries) == 1 && entries[0].Name() == dataMarker {
		if err := os.Remove(filepath.Join(parent, dataMarker)); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		entries = nil
	}
	if len(entries) == 0 {
		return s.disk.Attach(spec)
	}
	_, imageErr := os.Lstat(spec.Image)
	if imageErr == nil {
		return nil, fmt.Errorf("data dir %s holds files and its image %s exists too; keep one by hand", parent, spec.Image)
	}
	return s.layout.moveIntoImage(name, s.disk, spec)
}

// moveIntoImage moves a data parent from the host's filesystem into a new
// image: aside, attach an empty image, copy, and only once the copy is
// whole mark it done and remove the original. A crash before "done" keeps
// the original (finishToImage restores it); one after keeps the copy.
func (l Layout) moveIntoImage(name string, b quota.Backend, spec quota.Spec) (*quota.Mount, error) {
	parent, aside, done := spec.Mountpoint, l.toImage(name), l.toImageDone(name)
	if err := os.Rename(parent, aside); err != nil {
		return nil, fmt.Errorf("data dir: move into its quota image: %w", err)
	}
	if err := os.Mkdir(parent, 0o700); err != nil {
		return nil, errors.Join(fmt.Errorf("data dir: %w", err), os.Rename(aside, parent))
	}
	m, err := b.Attach(spec)
	if err != nil {
		return nil, errors.Join(err, l.undoToImage(name, b, nil, spec))
	}
	// cp -a never follows a symlink in the source and keeps owners and
	// modes; the destination is a fresh filesystem, nothing to trip on. Its
	// complaints name the module's files: a few KiB of them, escaped.
	out := &cappedBuffer{max: 4 << 10}
	cp := exec.Command("cp", "-a", "--no-dereference", "--", aside+"/.", parent+"/")
	cp.Stdout, cp.Stderr = out, out
	if err := cp.Run(); err != nil {
		return nil, errors.Join(
			fmt.Errorf("data dir of %s does not fit its quota of %d bytes, or could not be copied: %v: %s", name, spec.Bytes, err, out),
			l.undoToImage(name, b, m, spec))
	}
	// The copy must be on the image's disk before the original goes.
	if err := syncFS(parent); err != nil {
		return nil, errors.Join(fmt.Errorf("data dir: sync the copy into its image: %w", err), l.undoToImage(name, b, m, spec))
	}
	if err := os.Rename(aside, done); err != nil {
		return nil, errors.Join(fmt.Errorf("data dir: %w", err), b.Detach(m))
	}
	if err := atomicfile.SyncDir(filepath.Dir(parent)); err != nil {
		return nil, errors.Join(fmt.Errorf("data dir: %w", err), b.Detach(m))
	}
	if err := os.RemoveAll(done); err != nil {
		return nil, errors.Join(fmt.Errorf("data dir: %w", err), b.Detach(m))
	}
	return m, nil
}

// undoToImage puts the original data parent back after a failed move.
func (l Layout) undoToImage(name string, b quota.Backend, m *quota.Mount, spec quota.Spec) error {
	var errs []error
	if m != nil {
		errs = append(errs, b.Detach(m))
	}
	if err := b.Remove(spec); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	errs = append(errs, os.Remove(spec.Mountpoint), os.Rename(l.toImage(name), spec.Mountpoint))
	return errors.Join(errs...)
}

// finishToImage completes what a runtime that died during moveIntoImage
// left (Recover has unmounted everything by then).
func (l Layout) finishToImage(name string, b quota.Backend, spec quota.Spec) error {
	if _, err := os.Lstat(l.toImageDone(name)); err == nil {
		if err := os.RemoveAll(l.toImageDone(name)); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	if _, err := os.Lstat(l.toImage(name)); err != nil {
		return nil
	}
	// The copy may be partial; the original is whole.
	if err := b.Remove(spec); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.Remove(spec.Mountpoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.Rename(l.toImage(name), spec.Mountpoint); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return nil
}

// syncFS flushes the whole filesystem holding path.
func syncFS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// cappedBuffer keeps the first max bytes written to it, escaped when
// printed, and counts the rest.
type cappedBuffer struct {
	max     int
	buf     []byte
	dropped int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	room := max(c.max-len(c.buf), 0)
	keep := min(room, len(p))
	c.buf = append(c.buf, p[:keep]...)
	c.dropped += len(p) - keep
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	s := termesc.String(string(c.buf))
	if c.dropped > 0 {
		s += fmt.Sprintf(" (+%d bytes)", c.dropped)
	}
	return s
}

// DiskUsage is a module's /data quota as statfs sees it.
type DiskUsage = quota.Usage

// Disk reads the use and limits of a loaded module's disk quota.
func (s *Supervisor) Disk(name string) (DiskUsage, error) {
	s.mu.Lock()
	sv, ok := s.modules[name]
	s.mu.Unlock()
	if !ok {
		return DiskUsage{}, fmt.Errorf("disk %s: %w", name, ErrNotLoaded)
	}
	return quota.Stat(s.layout.Data(sv.mod.Policy.Module.Name))
}

// DiskBackend says how this supervisor enforces disk quotas, and why.
func (s *Supervisor) DiskBackend() string { return s.diskChoice.String() }
