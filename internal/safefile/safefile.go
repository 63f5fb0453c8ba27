// Package safefile opens the files the runtime reads, as root, from a
// directory someone else controls: a module dir (module.toml, config.toml,
// the binary) and the operator's node config. Every open goes through one
// rule, so it is audited once:
//
//   - openat2 beneath a directory fd with RESOLVE_BENEATH |
//     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: no symlink is followed at
//     any component, and ".." or an absolute name cannot leave the directory;
//   - an O_PATH look first: anything but a regular file is refused without
//     being opened, so no device driver's open runs and no FIFO blocks;
//   - then O_RDONLY | O_NONBLOCK | O_NOCTTY, and fstat on that fd: the
//     same inode, still a regular file;
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
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxTOML is the size limit for every TOML file read from a module dir and
// for the node config: far above any real one, far below what would hurt.
const MaxTOML = 1 << 20

// retries bounds openat2's EINTR and EAGAIN retries.
const retries = 8

// Error is a refused or failed open. Err is what it wraps: for a missing
// file an errno that errors.Is matches to fs.ErrNotExist, so callers can
// treat absence as absence.
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
		return nil, &Error{Path: path, Reason: "open directory: " + errnoText(err), Err: err}
	}
	return &Dir{fd: fd, path: path}, nil
}

// Close releases the directory fd.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Open opens name (relative, may have several components) beneath d as a
// regular file and returns it with its fstat. The caller reads from the
// returned file, never from the path again.
//
// What is there is looked at first through an O_PATH fd, which opens
// nothing: a device is never opened at all (opening /dev/watchdog arms a
// reboot), a FIFO's writer is never woken. The file opened for reading must
// then be that same inode. Swapping a device in between would take
// CAP_MKNOD at load time, which is root's already.
func (d *Dir) Open(name string) (*os.File, fs.FileInfo, error) {
	path := filepath.Join(d.path, name)
	if !filepath.IsLocal(name) {
		path = fmt.Sprintf("%q beneath %s", name, d.path) // Join would hide the escape
	}
	pfd, err := d.openat2(name, unix.O_PATH)
	if err != nil {
		return nil, nil, d.openError(path, err)
	}
	var pst unix.Stat_t
	err = unix.Fstat(pfd, &pst)
	unix.Close(pfd)
	if err != nil {
		return nil, nil, &Error{Path: path, Reason: "fstat: " + errnoText(err), Err: err}
	}
	if pst.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, &Error{Path: path, Reason: "is " + kindOf(pst.Mode) + ", not a regular file", Err: errNotRegular}
	}
	fd, err := d.openat2(name, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
	if err != nil {
		return nil, nil, d.openError(path, err)
	}
	// From here on, only the fd: the path may have changed already.
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, &Error{Path: path, Reason: "fstat: " + err.Error(), Err: err}
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || st == nil || st.Dev != pst.Dev || st.Ino != pst.Ino {
		f.Close()
		return nil, nil, &Error{Path: path, Reason: "was replaced while it was being opened", Err: errNotRegular}
	}
	return f, fi, nil
}

// openat2 opens name beneath d with flags, never following a symlink.
// EINTR and EAGAIN (a rename racing RESOLVE_BENEATH) are retried a few
// times: a directory that keeps changing is refused, not waited on.
func (d *Dir) openat2(name string, flags uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   flags | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(d.fd, name, &how)
	for i := 0; i < retries && (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)); i++ {
		fd, err = unix.Openat2(d.fd, name, &how)
	}
	return fd, err
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

// openError explains a failed openat2.
func (d *Dir) openError(path string, err error) error {
	reason := errnoText(err)
	switch {
	case errors.Is(err, unix.ELOOP):
		reason = "is a symlink, or a path component is; symlinks are refused here"
	case errors.Is(err, unix.EXDEV):
		reason = "resolves outside " + d.path
	case errors.Is(err, unix.ENOSYS):
		reason = "openat2 is unavailable (Linux 5.6 or later is required to open it without following symlinks); refusing to fall back to a racy open"
	case errors.Is(err, unix.EAGAIN):
		reason = "the directory kept changing while it was opened"
	}
	return &Error{Path: path, Reason: reason, Err: err} // unix.ENOENT is fs.ErrNotExist
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
	case unix.S_IFLNK:
		return "a symlink"
	}
	return fmt.Sprintf("a special file (mode %#o)", mode&unix.S_IFMT)
}
