package hub

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// errNoCredentials: the connection is no socket the kernel can be asked.
var errNoCredentials = errors.New("connection has no Unix socket to read SO_PEERCRED from")

// peerUID is the uid of the process at the other end of nc (SO_PEERCRED:
// the credentials it had when it connected). A connection that is not a
// socket itself (a listener's wrapper) has no answer, and is refused: the
// hub does not guess who is behind it.
func peerUID(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errNoCredentials
	}
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
