package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/lazyre"
	"github.com/blvm/blvm-sandbox/manifest"
)

// DefaultRoot is the runtime root when none is configured.
const DefaultRoot = "/var/lib/blvm-sandbox"

// entryMode is the mode of a sealed store entry: read-only for everyone.
// The container's mapped uid must read (and exec) it through a read-only
// bind mount; nobody may write it.
const entryMode = 0o555 // read and execute for the modules' mapped uids; nobody writes

// copyBuf is the copy buffer; large enough that syscalls are not the cost.
const copyBuf = 1 << 20

var hexRE = lazyre.New(`^[0-9a-f]{64}$`)

// Store is the sealed, content-addressed store of verified binaries:
// Root/store/sha256/<hex>, each entry root-owned, mode 0555, named by the
// SHA-256 of its bytes and written only after those bytes hashed to the
// name. The container execs the entry, never the module's own file.
type Store struct {
	Root string // runtime root; "" means DefaultRoot
}

func (s *Store) dir() string {
	root := s.Root
	if root == "" {
		root = DefaultRoot
	}
	return filepath.Join(root, "store", "sha256")
}

// Path returns where the entry for hex lives (it may not exist).
func (s *Store) Path(hexDigest string) string { return filepath.Join(s.dir(), hexDigest) }

// wantBinary returns the manifest's digest hex and size, checking their
// shape again: the hex becomes a file name.
func wantBinary(m *manifest.Manifest) (string, int64, error) {
	if m == nil || m.Binary == nil {
		return "", 0, errors.New("binary: manifest has no [binary] hash and size")
	}
	h, ok := strings.CutPrefix(m.Binary.Hash, "sha256:")
	if !ok || !hexRE().MatchString(h) {
		return "", 0, fmt.Errorf("binary: hash %q: want \"sha256:\" and 64 lowercase hex digits", m.Binary.Hash)
	}
	if m.Binary.Size <= 0 {
		return "", 0, fmt.Errorf("binary: size %d: want a positive size in bytes", m.Binary.Size)
	}
	return h, m.Binary.Size, nil
}

// Seal copies the module's entry point into the store and returns the
// entry's path. The entry point is opened once, beneath moduleDir, with no
// symlink followed at any component (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS); its bytes are hashed while
// they are copied from that one fd, and the copy is renamed to its digest
// only when digest and size match m.Binary. The source path is never opened
// again.
//
// If a sound entry for the manifest's digest already exists, Seal returns it
// with reused=true without opening the source at all; docs/verify.md says
// why that is safe.
func (s *Store) Seal(moduleDir string, m *manifest.Manifest) (path string, reused bool, err error) {
	want, size, err := wantBinary(m)
	if err != nil {
		return "", false, err
	}
	dir := s.dir()
	if err := ensureStoreDir(dir); err != nil {
		return "", false, err
	}
	path = filepath.Join(dir, want)
	switch err := entrySound(path, size); {
	case err == nil:
		return path, true, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, err
	}

	src, err := openEntryPoint(moduleDir, m.EntryPoint)
	if err != nil {
		return "", false, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", false, fmt.Errorf("entry point %q: fstat: %w", m.EntryPoint, err)
	}
	if !fi.Mode().IsRegular() {
		return "", false, fmt.Errorf("entry point %q: not a regular file (%s)", m.EntryPoint, fi.Mode().Type())
	}
	// Size first: cheap, and it names the problem better than a hash.
	if fi.Size() != size {
		return "", false, fmt.Errorf("size: binary is %d bytes, manifest says %d", fi.Size(), size)
	}

	tmp, err := os.CreateTemp(dir, ".seal-*") // O_EXCL, 0600
	if err != nil {
		return "", false, fmt.Errorf("store: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	// Read at most size+1 bytes: a file growing under us is caught, and a
	// hostile one cannot fill the disk.
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), io.LimitReader(src, size+1), make([]byte, copyBuf))
	if err != nil {
		return "", false, fmt.Errorf("store: copy entry point %q: %w", m.EntryPoint, err)
	}
	if n != size {
		return "", false, fmt.Errorf("size: binary is %d bytes (read), manifest says %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return "", false, fmt.Errorf("hash: binary sha256:%s does not match manifest sha256:%s", got, want)
	}
	if err = sealFile(tmp); err != nil {
		return "", false, err
	}
	if err = tmp.Close(); err != nil {
		return "", false, fmt.Errorf("store: %w", err)
	}
	// Atomic: the entry's name appears only with its full, verified bytes.
	// A concurrent Seal of the same digest renames identical bytes.
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", false, fmt.Errorf("store: %w", err)
	}
	if err = syncDir(dir); err != nil {
		return "", false, err
	}
	return path, false, nil
}

// openEntryPoint opens rel beneath dir without following any symlink.
func openEntryPoint(dir, rel string) (*os.File, error) {
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("module dir %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	how := unix.OpenHow{
		// O_NONBLOCK: a FIFO planted as the entry point must not hang us;
		// fstat then refuses it as not regular.
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(dfd, rel, &how)
	for errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
		fd, err = unix.Openat2(dfd, rel, &how)
	}
	switch {
	case err == nil:
		return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("entry point %q: openat2 is unavailable (Linux 5.6 or later is required to open it without following symlinks); refusing to fall back to a racy open", rel)
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("entry point %q: a path component is a symlink; symlinks are refused in a module dir", rel)
	case errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("entry point %q: resolves outside the module dir %s", rel, dir)
	}
	return nil, fmt.Errorf("entry point %q in %s: %w", rel, dir, err)
}

// sealFile makes the temp file durable, read-only and root-owned before it
// gets its name.
func sealFile(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("store: fsync: %w", err)
	}
	if err := f.Chmod(entryMode); err != nil {
		return fmt.Errorf("store: chmod: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(0, 0); err != nil {
			return fmt.Errorf("store: chown root: %w", err)
		}
	}
	return nil
}

// ensureStoreDir creates dir (0755) and refuses one that others could write:
// the store's safety rests on only root writing it.
func ensureStoreDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err != nil {
			return fmt.Errorf("store: %s: %w", d, err)
		}
		switch {
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return fmt.Errorf("store: %s is not a directory (a symlink?)", d)
		case st.Uid != uint32(os.Geteuid()):
			return fmt.Errorf("store: %s is owned by uid %d, want %d", d, st.Uid, os.Geteuid())
		case st.Mode&0o022 != 0:
			return fmt.Errorf("store: %s has mode %04o: group/others can write it", d, st.Mode&0o7777)
		}
	}
	return nil
}

// entrySound checks an existing entry without reading it: a regular file
// (not a symlink), owned by us (root in production), mode 0555, the
// manifest's size. os.ErrNotExist means there is no entry yet.
func entrySound(path string, size int64) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return os.ErrNotExist
		}
		return fmt.Errorf("store: %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("store: entry %s is not a regular file; the store was tampered with", path)
	case st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("store: entry %s is owned by uid %d, want %d; the store was tampered with", path, st.Uid, os.Geteuid())
	case st.Mode&0o7777 != entryMode:
		return fmt.Errorf("store: entry %s has mode %04o, want %04o; the store was tampered with", path, st.Mode&0o7777, entryMode)
	case st.Size != size:
		return fmt.Errorf("store: entry %s is %d bytes, manifest says %d; the store was tampered with", path, st.Size, size)
	}
	return nil
}

// Check re-hashes the entry named hexDigest and checks its owner and mode:
// an fsck for the store. Seal's reuse path trusts these properties without
// reading the bytes; Check proves them.
func (s *Store) Check(hexDigest string) error {
	if !hexRE().MatchString(hexDigest) {
		return fmt.Errorf("store: %q is not a sha256 hex digest", hexDigest)
	}
	path := s.Path(hexDigest)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := entrySound(path, fi.Size()); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, copyBuf)); err != nil {
		return fmt.Errorf("store: read %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexDigest {
		return fmt.Errorf("store: entry %s hashes to sha256:%s; the store was tampered with", path, got)
	}
	return nil
}

// syncDir fsyncs a directory so a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}
