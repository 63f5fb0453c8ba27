package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/internal/lazyre"
	"github.com/blvm/blvm-sandbox/internal/safefile"
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
// entry's path. The entry point is opened once, beneath moduleDir, through
// safefile (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_MAGICLINKS, O_NONBLOCK, regular file only); its bytes are
// hashed while they are copied from that one fd, and the copy is renamed to its digest
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
		// An entry sealed before the ELF checks existed is checked too:
		// it is what the container will exec.
		if err := checkEntryFile(path, m.EntryPoint); err != nil {
			return "", false, err
		}
		return path, true, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, err
	}

	src, err := openSource(moduleDir, m.EntryPoint, size)
	if err != nil {
		return "", false, err
	}
	defer src.Close()

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
	if err = hashFrom(src, size, want, tmp); err != nil {
		return "", false, err
	}
	// The signed bytes, read back from the copy before it gets its name: a
	// hash mismatch is named first, and a binary that cannot run in the
	// container never becomes a store entry.
	if err = CheckExecutable(tmp, m.EntryPoint, goruntime.GOARCH); err != nil {
		return "", false, err
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
	if err = atomicfile.SyncDir(dir); err != nil {
		return "", false, err
	}
	return path, false, nil
}

// openSource opens the entry point beneath moduleDir through safefile
// (openat2, no symlink at any component, regular file only) and checks its
// size on the fd: cheap, and it names the problem better than a hash.
func openSource(moduleDir, entryPoint string, size int64) (*os.File, error) {
	src, fi, err := safefile.Open(moduleDir, entryPoint)
	if err != nil {
		return nil, fmt.Errorf("entry point: %w", err)
	}
	if fi.Size() != size {
		src.Close()
		return nil, fmt.Errorf("size: binary is %d bytes, manifest says %d", fi.Size(), size)
	}
	return src, nil
}

// hashFrom reads src through SHA-256 into w (which may be io.Discard) and
// compares with want. It reads at most size+1 bytes: a file growing under
// us is caught, and a hostile one cannot fill the disk.
func hashFrom(src *os.File, size int64, want string, w io.Writer) error {
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(src, size+1), make([]byte, copyBuf))
	if err != nil {
		return fmt.Errorf("hash: read %s: %w", src.Name(), err)
	}
	if n != size {
		return fmt.Errorf("size: binary is %d bytes (read), manifest says %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("hash: binary sha256:%s does not match manifest sha256:%s", got, want)
	}
	return nil
}

// CheckSource hashes the module's own entry point against the manifest,
// from one fd, without touching the store: what `verify DIR` reports even
// when the store already holds the entry, so the operator learns what is on
// disk. The loader does not call it; it execs the sealed entry, whatever
// DIR holds.
func CheckSource(moduleDir string, m *manifest.Manifest) error {
	want, size, err := wantBinary(m)
	if err != nil {
		return err
	}
	src, err := openSource(moduleDir, m.EntryPoint, size)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := hashFrom(src, size, want, io.Discard); err != nil {
		return err
	}
	return CheckExecutable(src, m.EntryPoint, goruntime.GOARCH)
}

// checkEntryFile runs CheckExecutable on an existing store entry.
func checkEntryFile(path, entryPoint string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	return CheckExecutable(f, entryPoint, goruntime.GOARCH)
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
