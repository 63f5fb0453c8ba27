package runtime

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
)

// listenSocket creates the module's hub socket in its private directory.
// The socket is bound while the directory is root's alone (0700), so that
// whatever the umask, nobody can connect to it before it is owned by the
// module's host uid with mode 0600; only then is the directory handed to
// that uid. What an earlier run left there is removed first.
func listenSocket(dir, path string, uid int) (*net.UnixListener, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := mkdirOwned(dir, 0, 0o700); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// Closing must not unlink: the runtime removes the file itself, after
	// the container that has it mounted is gone.
	ln.SetUnlinkOnClose(false)
	if err := ownSocket(dir, path, uid); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ownSocket sets the socket's owner and mode (uid, 0600) and its
// directory's (uid, 0700). The directory is taken back by root first: chmod
// follows symlinks, and in a directory only root can enter nobody can swap
// the socket for one.
func ownSocket(dir, path string, uid int) error {
	if err := ownDir(dir, 0, 0o700); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket %s: not a socket (%s)", path, st.Mode().Type())
	}
	if err := os.Lchown(path, uid, uid); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if err := ownDir(dir, uid, 0o700); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	return nil
}

// readySignal is how the hub tells the supervisor that a start came up:
// the Serve callback's ready, called once the module has spoken the
// protocol. Each start arms a fresh one. One window is left: a Hello an
// ended run wrote just before it died, read by the hub only after the next
// start was armed, counts for that start (as first bytes did before).
type readySignal struct {
	mu    sync.Mutex
	ready chan struct{}
	once  *sync.Once
}

func newReadySignal() *readySignal {
	r := &readySignal{}
	r.reset()
	return r
}

// reset arms a fresh signal for the next start and returns it.
func (r *readySignal) reset() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready, r.once = make(chan struct{}), new(sync.Once)
	return r.ready
}

func (r *readySignal) signal() {
	r.mu.Lock()
	ch, once := r.ready, r.once
	r.mu.Unlock()
	once.Do(func() { close(ch) })
}
