package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/runtime/launch"
)

// initServer is the runtime's one blvm-sandbox-init, which creates its
// containers (see runtime/launch) and tells how their inits end. It starts
// at the first create and again after it died; a death ends the waits of
// the inits it held, and those inits, reparented to this process (the
// child subreaper), are reaped here instead.
type initServer struct {
	bin string
	log *slog.Logger

	mu      sync.Mutex // everything below, and the socket's writes
	conn    *net.UnixConn
	cmd     *exec.Cmd
	seq     uint64
	pending map[uint64]chan created
	exits   map[int]chan launch.Exit
}

type created struct {
	pid  int
	exit <-chan launch.Exit // gets the init's end; closed, empty, if the server died
	err  error
}

func newInitServer(bin string, log *slog.Logger) *initServer {
	return &initServer{bin: bin, log: log}
}

// startLocked runs the server. Its own process group: a terminal's Ctrl-C
// is for the runtime, which stops the modules in order.
func (s *initServer) startLocked() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container init: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "init-server"), os.NewFile(uintptr(fds[1]), "init-server")
	defer theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return fmt.Errorf("container init: %w", err)
	}
	cmd := exec.Command(s.bin, launch.ServeArg)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.ExtraFiles = []*os.File{theirs} // fd 3: launch.SocketFd
	cmd.Stderr = logLines{s.log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.Close()
		return fmt.Errorf("container init: %w", err)
	}
	s.conn, s.cmd = c.(*net.UnixConn), cmd
	s.pending, s.exits = map[uint64]chan created{}, map[int]chan launch.Exit{}
	go s.read(s.conn, cmd)
	return nil
}

// create has the server create one container and returns its init's pid
// and where its end arrives.
func (s *initServer) create(req launch.Request, stdout, stderr *os.File) (created, error) {
	s.mu.Lock()
	if s.conn == nil {
		if err := s.startLocked(); err != nil {
			s.mu.Unlock()
			return created{}, err
		}
	}
	s.seq++
	req.Seq = s.seq
	reply := make(chan created, 1)
	s.pending[req.Seq] = reply
	err := launch.WriteFrame(s.conn, req, int(stdout.Fd()), int(stderr.Fd()))
	if err != nil {
		delete(s.pending, req.Seq)
	}
	s.mu.Unlock()
	if err != nil {
		return created{}, fmt.Errorf("container init: send: %w", err)
	}
	r := <-reply
	return r, r.err
}

// read hands each answer to its create and each end to its wait, until the
// server's socket ends; then every wait still open is closed.
func (s *initServer) read(c *net.UnixConn, cmd *exec.Cmd) {
	var readErr error
	for {
		var m launch.Message
		fds, err := launch.ReadFrame(c, &m)
		for _, fd := range fds {
			unix.Close(fd) // the server sends none
		}
		if err != nil {
			readErr = err
			break
		}
		s.mu.Lock()
		switch {
		case m.Exit != nil:
			if ch, ok := s.exits[m.Exit.Pid]; ok {
				ch <- *m.Exit
				delete(s.exits, m.Exit.Pid)
			}
		default:
			reply, ok := s.pending[m.Seq]
			delete(s.pending, m.Seq)
			if !ok {
				break
			}
			if m.Error != "" {
				reply <- created{err: errors.New(m.Error)}
				break
			}
			exit := make(chan launch.Exit, 1)
			s.exits[m.Pid] = exit // before the next frame, which may be its end
			reply <- created{pid: m.Pid, exit: exit}
		}
		s.mu.Unlock()
	}
	c.Close()
	waitErr := cmd.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == c {
		s.conn = nil
	}
	for seq, reply := range s.pending {
		reply <- created{err: fmt.Errorf("container init: the server ended (%v, %v)", readErr, waitErr)}
		delete(s.pending, seq)
	}
	for pid, ch := range s.exits {
		close(ch)
		delete(s.exits, pid)
	}
	if s.log != nil && !errors.Is(readErr, net.ErrClosed) {
		s.log.Warn("container init server ended; its containers' inits are reaped by the runtime", "read", readErr, "exit", waitErr)
	}
}

// close ends the server once its containers are gone (it exits when its
// socket closes).
func (s *initServer) close() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.CloseWrite()
	}
}

// logLines writes the server's stderr (libcontainer's messages) to the log.
type logLines struct{ log *slog.Logger }

func (l logLines) Write(p []byte) (int, error) {
	if l.log != nil {
		l.log.Warn("container init", "msg", string(p))
	}
	return len(p), nil
}
