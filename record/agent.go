//go:build cgo

package record

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/ownedpath"
)

// Agent is the seccomp agent of one record-mode container: it listens where
// libcontainer sends the filter's notify fd (configs.Seccomp.ListenerPath;
// the process that creates the container connects there during Start),
// then answers every notification through its Decider and logs what the
// normal filter would refuse.
type Agent struct {
	ln        *net.UnixListener
	path      string
	container string
	dec       *Decider
	log       *SyscallLog
	// module and shim are the executables' paths inside the container,
	// which tell the module's calls from the sandbox's own.
	module, shim string

	done chan struct{}
	err  error

	mu     sync.Mutex
	cancel context.CancelFunc
}

// pollMillis bounds a wait for a notification, so the loop sees its
// context end.
const pollMillis = 200

// Listen creates the agent's socket at path (its directory made 0700) for
// the container called container, whose module runs from module (the path
// inside the container) started by the shim at shim.
func Listen(path, container, module, shim string, dec *Decider, log *SyscallLog) (*Agent, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("record: agent socket: %w", err)
	}
	// libcontainer hands the filter's notify fd to whatever listens at
	// path, without asking who: a user who could swap a directory on it
	// could put their own socket there and answer the module's syscalls,
	// the deny list's too.
	if err := ownedpath.Check(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("record: agent socket %s: %w: they could put another socket where the filter is handed over", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("record: agent socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("record: agent socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("record: agent socket: %w", err)
	}
	return &Agent{ln: ln, path: path, container: container, module: module, shim: shim, dec: dec, log: log, done: make(chan struct{})}, nil
}

// Serve takes the first notify fd handed over and answers its
// notifications until every process under the filter is gone (the fd
// hangs up), ctx ends or Close is called. Run it in its own goroutine;
// Wait gives its error.
func (a *Agent) Serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.cancel = cancel
	a.mu.Unlock()
	defer close(a.done)
	defer cancel()
	go func() {
		<-ctx.Done()
		a.ln.Close() // ends a pending Accept
	}()
	fd, err := a.receive()
	a.ln.Close()
	if err != nil {
		if ctx.Err() == nil {
			a.err = err
		}
		return
	}
	defer unix.Close(fd)
	a.err = a.loop(ctx, fd)
}

// Wait blocks until Serve returns and gives its error.
func (a *Agent) Wait() error {
	<-a.done
	return a.err
}

// Close stops the agent and removes its socket.
func (a *Agent) Close() {
	a.mu.Lock()
	cancel := a.cancel
	a.mu.Unlock()
	if cancel != nil {
		cancel()
		<-a.done
	} else {
		a.ln.Close()
	}
	os.Remove(a.path)
}

// receive accepts libcontainer's connection and takes the notify fd from it:
// one message of the container's state as JSON with the fd attached.
func (a *Agent) receive() (int, error) {
	c, err := a.ln.AcceptUnix()
	if err != nil {
		return -1, fmt.Errorf("record: agent: accept: %w", err)
	}
	defer c.Close()
	if err := rootPeer(c); err != nil {
		return -1, err
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return -1, fmt.Errorf("record: agent: read the container state: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, fmt.Errorf("record: agent: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("record: agent: want one notify fd with the container state, got %d", len(fds))
	}
	var st specs.ContainerProcessState
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		unix.Close(fds[0])
		return -1, fmt.Errorf("record: agent: container state: %w", err)
	}
	if st.State.ID != a.container {
		unix.Close(fds[0])
		return -1, fmt.Errorf("record: agent: got the filter of container %q, want %q", st.State.ID, a.container)
	}
	return fds[0], nil
}

// rootPeer refuses a connection from anyone but root: the one who hands
// over a filter is libcontainer in the runtime's own init server.
func rootPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("record: agent: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("record: agent: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("record: agent: peer credentials: %w", credErr)
	}
	if cred.Uid != 0 {
		return fmt.Errorf("record: agent: refused a connection from uid %d", cred.Uid)
	}
	return nil
}

// loop answers notifications on fd. It polls rather than blocking in
// NotifReceive: a blocking receive never returns once the last process
// under the filter has exited, while poll reports the hang-up.
func (a *Agent) loop(ctx context.Context, fd int) error {
	sfd := libseccomp.ScmpFd(fd)
	for ctx.Err() == nil {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, pollMillis)
		if errors.Is(err, unix.EINTR) || n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("record: agent: poll: %w", err)
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				return nil // nothing runs under the filter any more
			}
			continue
		}
		req, err := libseccomp.NotifReceive(sfd)
		if errors.Is(err, unix.ENOENT) {
			continue // the caller went away between poll and receive
		}
		if err != nil {
			return fmt.Errorf("record: agent: receive: %w", err)
		}
		a.answer(sfd, req)
	}
	return nil
}

func (a *Agent) answer(fd libseccomp.ScmpFd, req *libseccomp.ScmpNotifReq) {
	var args [6]uint64
	copy(args[:], req.Data.Args)
	nr := int32(req.Data.Syscall)
	d := a.dec.Decide(nr, args)
	by := ""
	if d.Record {
		by = a.caller(fd, req)
		a.log.Add(nr, a.dec.Name(nr), by, d)
	}
	resp := &libseccomp.ScmpNotifResp{ID: req.ID}
	if d.Errno != 0 {
		resp.Error = int32(d.Errno)
	} else {
		resp.Flags = libseccomp.NotifRespFlagContinue
	}
	if err := libseccomp.NotifRespond(fd, resp); errors.Is(err, unix.ENOENT) && d.Record {
		// The call was interrupted (Go's preemption signal) and will be
		// restarted and notified again: count it once.
		a.log.Undo(nr, by, d)
	}
}

// caller tells who made the notified call from the executable of the
// calling process, as its own mount namespace names it. The caller waits
// for our answer, so its pid is its own until then; NotifIDValid after the
// read proves it still is.
func (a *Agent) caller(fd libseccomp.ScmpFd, req *libseccomp.ScmpNotifReq) string {
	exe, err := os.Readlink(filepath.Join("/proc", strconv.FormatUint(uint64(req.Pid), 10), "exe"))
	if err != nil || libseccomp.NotifIDValid(fd, req.ID) != nil {
		return ByRuntime
	}
	switch exe {
	case a.module:
		return ByModule
	case a.shim:
		return ByShim
	}
	return ByRuntime
}

// Loadable keeps the syscall names libseccomp knows on goarch: libcontainer
// skips a rule for any other name, so those numbers keep the default
// (ENOSYS) and never reach the recorder.
func Loadable(goarch string, names []string) []string {
	arch, err := libseccomp.GetArchFromString(goarch)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range names {
		if _, err := libseccomp.GetSyscallFromNameByArch(n, arch); err == nil {
			out = append(out, n)
		}
	}
	return out
}
