package hub

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// errNoCredentials: the connection has no socket under it to ask.
var errNoCredentials = errors.New("connection has no Unix socket to read SO_PEERCRED from")

// peerUID is the uid of the process at the other end of nc (SO_PEERCRED:
// the credentials it had when it connected). A listener may wrap its
// connections; a wrapper that exposes the one it wraps with NetConn (as
// crypto/tls does) is looked through.
func peerUID(nc net.Conn) (int, error) {
	for range 8 {
		if sc, ok := nc.(syscall.Conn); ok {
			rc, err := sc.SyscallConn()
			if err != nil {
				return -1, fmt.Errorf("SO_PEERCRED: %w", err)
			}
			var cred *unix.Ucred
			var cerr error
			if err := rc.Control(func(fd uintptr) {
				cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
			}); err != nil {
				return -1, fmt.Errorf("SO_PEERCRED: %w", err)
			}
			if cerr != nil {
				return -1, fmt.Errorf("SO_PEERCRED: %w", cerr)
			}
			return int(cred.Uid), nil
		}
		w, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = w.NetConn()
	}
	return -1, errNoCredentials
}
