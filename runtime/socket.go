package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
)

// listenSocket creates the module's hub socket: owned by the module's host
// uid, mode 0600, so only that module (and root) can connect to it. A stale
// file from an earlier run is removed first.
func listenSocket(path string, uid int) (*net.UnixListener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// Closing must not unlink: the runtime removes the file itself, after
	// the container that has it mounted is gone.
	ln.SetUnlinkOnClose(false)
	if err := os.Chown(path, uid, uid); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}

// readyListener hands connections to the hub unchanged, and notices the
// first bytes a module sends after each start: that is when the module is
// up. The runtime needs no knowledge of the protocol for it.
type readyListener struct {
	net.Listener
	mu    sync.Mutex
	ready chan struct{}
	once  *sync.Once
}

func newReadyListener(ln net.Listener) *readyListener {
	r := &readyListener{Listener: ln}
	r.reset()
	return r
}

// reset arms a fresh readiness signal for the next start and returns it.
func (r *readyListener) reset() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready, r.once = make(chan struct{}), new(sync.Once)
	return r.ready
}

func (r *readyListener) signal() {
	r.mu.Lock()
	ch, once := r.ready, r.once
	r.mu.Unlock()
	once.Do(func() { close(ch) })
}

func (r *readyListener) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readyConn{Conn: c, l: r}, nil
}

type readyConn struct {
	net.Conn
	l    *readyListener
	seen bool
}

func (c *readyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.seen {
		c.seen = true
		c.l.signal()
	}
	return n, err
}

// NetConn is the connection readyConn wraps: the hub looks through it to
// read the peer's credentials (SO_PEERCRED).
func (c *readyConn) NetConn() net.Conn { return c.Conn }
