package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socketListener is the admin socket: it accepts only connections from
// root or from the daemon's own user, whatever the file's mode says.
type socketListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo // the socket as created, to remove only our own
	log  *slog.Logger
}

// listenSocket creates the socket at path with mode 0600. The socket is
// bound inside a fresh 0700 directory, chmodded there, and only then
// renamed into place, so there is no moment at which path is a socket
// that anyone else could connect to.
func listenSocket(path string, log *slog.Logger) (*socketListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("admin socket %s: %s is not a directory", path, dir)
	}
	// Anyone who can write the directory can swap the socket for their own.
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("admin socket %s: directory %s is writable by group or others (mode %04o); use a private directory", path, dir, st.Mode().Perm())
	}
	// So can its owner, whatever the mode says.
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Geteuid() {
		owner := "unknown"
		if ok {
			owner = fmt.Sprint(sys.Uid)
		}
		return nil, fmt.Errorf("admin socket %s: directory %s is owned by uid %s, not the daemon's uid %d; use a directory the daemon owns", path, dir, owner, os.Geteuid())
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".a")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket: listen: %w", err)
	}
	// The listener would unlink the temporary name; we remove path ourselves.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := renameNoReplace(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &socketListener{UnixListener: ln, path: path, fi: fi, log: log}, nil
}

// removeStale removes a socket left by a daemon that died without cleaning
// up. A socket someone still answers on, or a path that is not a socket,
// is left alone and reported.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("admin socket %s: exists and is not a socket (%s); not removing it", path, fi.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s: another daemon is listening on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("admin socket: remove stale %s: %w", path, err)
	}
	return nil
}

func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A filesystem without RENAME_NOREPLACE; removeStale has just run.
		return os.Rename(from, to)
	}
	if errors.Is(err, unix.EEXIST) {
		return errors.New("appeared while we were binding it: another daemon is starting")
	}
	return err
}

// Accept returns the next connection from root or the daemon's own user;
// it closes any other.
func (l *socketListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == 0 || uid == uint32(os.Geteuid())) {
			return c, nil
		}
		l.log.Warn("admin: refused a connection", "peer_uid", uid, "err", err)
		c.Close()
	}
}

// remove closes the listener and removes the socket if it is still ours.
func (l *socketListener) remove() {
	l.Close()
	if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.fi) {
		os.Remove(l.path)
	}
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return cred.Uid, nil
}
