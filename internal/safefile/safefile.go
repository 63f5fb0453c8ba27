// Package safefile opens the files the runtime reads, as root, from a
// directory someone else controls: a module dir (module.toml, config.toml,
// the binary) and the operator's node config. Every open goes through one
// rule, so it is audited once:
//
//   - openat2 beneath a directory fd with RESOLVE_BENEATH |
//     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: no symlink is followed at
//     any component, and ".." or an absolute name cannot leave the directory;
//   - O_NONBLOCK | O_NOCTTY, so a FIFO or a terminal planted there cannot
//     hang or adopt the process;
//   - fstat on that fd: a regular file, nothing else;
//   - for ReadFile, a size limit checked on the fd and again while reading,
//     and the bytes read from that same fd.
//
// The directory itself is the caller's choice and is opened as given.
// Every refusal is an *Error naming the file and the reason.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MaxTOML is the size limit for every TOML file read from a module dir and
// for the node config: far above any real one, far below what would hurt.
const MaxTOML = 1 << 20

// retries bounds openat2's EAGAIN (a rename racing RESOLVE_BENEATH) and
// EINTR: a directory that keeps changing is refused, not waited on.
const retries = 8

// Error is a refused or failed open. Err is what it wraps: fs.ErrNotExist
// for a missing file, so callers can treat absence as absence.
type Error struct {
	Path   string // dir joined with name
	Reason string // "is a FIFO, not a regular file", ...
	Err    error
}

func (e *Error) Error() string { return e.Path + ": " + e.Reason }
func (e *Error) Unwrap() error { return e.Err }

// Dir is an open directory fd (O_PATH) to open files beneath.
type Dir struct {
	fd   int
	path string
}

// OpenDir opens path as a directory. Symlinks in path are followed: the
// directory is the caller's choice; only what is beneath it is distrusted.
func OpenDir(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Path: path, Reason: "open directory: " + errnoText(err), Err: mapErrno(err)}
	}
	return &Dir{fd: fd, path: path}, nil
}

// Close releases the directory fd.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Path is the directory as given to OpenDir.
func (d *Dir) Path() string { return d.path }

// Open opens name (relative, may have several components) beneath d as a
// regular file and returns it with its fstat. The caller reads from the
// returned file, never from the path again.
func (d *Dir) Open(name string) (*os.File, fs.FileInfo, error) {
	path := filepath.Join(d.path, name)
	if !filepath.IsLocal(name) {
		path = fmt.Sprintf("%q beneath %s", name, d.path) // Join would hide the escape
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(d.fd, name, &how)
	for i := 0; i < retries && (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)); i++ {
		fd, err = unix.Openat2(d.fd, name, &how)
	}
	if err != nil {
		return nil, nil, d.openError(name, path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, &Error{Path: path, Reason: "fstat: " + err.Error(), Err: err}
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &Error{Path: path, Reason: "is " + kind(fi.Mode()) + ", not a regular file", Err: errNotRegular}
	}
	return f, fi, nil
}

// ReadFile opens name beneath d as Open does and reads it whole, refusing a
// file larger than limit bytes, by fstat and again while reading (a file
// growing under us is caught).
func (d *Dir) ReadFile(name string, limit int64) ([]byte, error) {
	f, fi, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > limit {
		return nil, tooBig(f.Name(), fmt.Sprintf("is %d bytes", fi.Size()), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &Error{Path: f.Name(), Reason: "read: " + err.Error(), Err: err}
	}
	if int64(len(data)) > limit {
		return nil, tooBig(f.Name(), "grew while being read", limit)
	}
	return data, nil
}

// ReadFile reads name beneath dir; see Dir.ReadFile.
func ReadFile(dir, name string, limit int64) ([]byte, error) {
	d, err := OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadFile(name, limit)
}

// ReadPath reads the file at path: its directory is opened as given and its
// last component must be a regular file, not a symlink; see Dir.ReadFile.
func ReadPath(path string, limit int64) ([]byte, error) {
	return ReadFile(filepath.Dir(path), filepath.Base(path), limit)
}

// Open opens name beneath dir; see Dir.Open.
func Open(dir, name string) (*os.File, fs.FileInfo, error) {
	d, err := OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	return d.Open(name)
}

// OpenPath opens the file at path; see ReadPath and Dir.Open.
func OpenPath(path string) (*os.File, fs.FileInfo, error) {
	return Open(filepath.Dir(path), filepath.Base(path))
}

var (
	errNotRegular = errors.New("not a regular file")
	errTooBig     = errors.New("file too large")
)

func tooBig(path, what string, limit int64) error {
	return &Error{Path: path, Reason: fmt.Sprintf("%s, over the limit of %d bytes", what, limit), Err: errTooBig}
}

// openError explains a failed open. For errors other than the resolve
// refusals it looks at what is there through an O_PATH fd (which opens
// nothing), so a device on a nodev mount is called a device, not EACCES.
func (d *Dir) openError(name, path string, err error) error {
	dir := d.path
	reason := errnoText(err)
	if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.ENOSYS) {
		how := unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		if fd, perr := unix.Openat2(d.fd, name, &how); perr == nil {
			var st unix.Stat_t
			serr := unix.Fstat(fd, &st)
			unix.Close(fd)
			if serr == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
				return &Error{Path: path, Reason: "is " + kindOf(st.Mode) + ", not a regular file", Err: errNotRegular}
			}
		}
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		reason = "is a symlink, or a path component is; symlinks are refused here"
	case errors.Is(err, unix.EXDEV):
		reason = "resolves outside " + dir
	case errors.Is(err, unix.ENXIO):
		reason = "is a socket or a device without a driver, not a regular file"
	case errors.Is(err, unix.ENOSYS):
		reason = "openat2 is unavailable (Linux 5.6 or later is required to open it without following symlinks); refusing to fall back to a racy open"
	case errors.Is(err, unix.EAGAIN):
		reason = "the directory kept changing while it was opened"
	}
	return &Error{Path: path, Reason: reason, Err: mapErrno(err)}
}

// mapErrno turns ENOENT into fs.ErrNotExist (and so on) for errors.Is.
func mapErrno(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno // unix.Errno implements Is(fs.ErrNotExist) and friends
	}
	return err
}

func errnoText(err error) string {
	if errors.Is(err, unix.ENOENT) {
		return "no such file"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	}
	return fmt.Sprintf("a special file (mode %#o)", mode&unix.S_IFMT)
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "a special file (" + m.Type().String() + ")"
}
