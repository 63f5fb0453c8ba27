// Package launch is what crosses between the runtime and blvm-sandbox-init:
// create this container and start its init, up to the exec fifo; and, later,
// how that init ended. libcontainer re-executes the binary that calls Start
// as the container's init, so the runtime does not call it itself: the
// small init binary does, and the init that runs in every container is that
// binary, whose package initialisers are libcontainer's and little else (the
// daemon's CLI, hub, metrics and chain clients never run there).
//
// The runtime starts one `blvm-sandbox-init serve` and keeps it: a stream
// socket at its fd 3 carries frames (a 4-byte big-endian length, then JSON).
// A Request carries the module's stdout and stderr as SCM_RIGHTS; the server
// answers a Message with the same Seq and the init's pid, and when that init
// ends, a Message with its Exit. The inits are the server's children; it
// reaps them. It exits when the socket closes.
package launch

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// ServeArg is the init binary's argument for serving the runtime on fd 3;
// libcontainer's own is "init".
const ServeArg = "serve"

// SocketFd is the server's end of the runtime's socket.
const SocketFd = 3

// Request is one container to create. Its frame carries two fds: the
// module's stdout and stderr.
type Request struct {
	Seq      uint64          `json:"seq"`
	StateDir string          `json:"state_dir"` // libcontainer's state root
	ID       string          `json:"id"`
	Config   *configs.Config `json:"config"`
	Process  Process         `json:"process"`
}

// Process is what the container's init execs (the shim, with the module's
// command line after it).
type Process struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	UID  int      `json:"uid"`
	GID  int      `json:"gid"`
	Cwd  string   `json:"cwd"`
}

// Message is the server's answer to Request Seq (Pid or Error), or, with
// Exit set, the end of an init it started.
type Message struct {
	Seq   uint64 `json:"seq,omitempty"`
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	Exit  *Exit  `json:"exit,omitempty"`
}

// Exit is how an init ended: its wait status, or why there is none.
type Exit struct {
	Pid    int    `json:"pid"`
	Status int    `json:"status"` // the raw wait status
	Err    string `json:"err,omitempty"`
}

// idleFree is how long after a create the server returns its garbage to
// the kernel, if no other create is running then.
const idleFree = 2 * time.Second

// gcPercent is the server's GOGC.
const gcPercent = 400

// maxFrame bounds a frame: a policy's libcontainer config is tens of KiB.
const maxFrame = 8 << 20

// WriteFrame writes v as one frame, with fds (if any) attached to its
// header. The caller serialises writers.
func WriteFrame(c *net.UnixConn, v any, fds ...int) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(body) > maxFrame {
		return fmt.Errorf("frame of %d bytes, more than %d", len(body), maxFrame)
	}
	hdr := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(hdr, oob, nil); err != nil {
		return err
	}
	_, err = c.Write(body)
	return err
}

// ReadFrame reads one frame into v and returns the fds attached to it,
// which the caller owns.
func ReadFrame(c *net.UnixConn, v any) ([]int, error) {
	hdr := make([]byte, 4)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(hdr, oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err != nil {
				return nil, err
			}
			fds = append(fds, got...)
		}
	}
	fail := func(err error) ([]int, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	if _, err := io.ReadFull(c, hdr[n:]); err != nil {
		return fail(err)
	}
	size := binary.BigEndian.Uint32(hdr)
	if size > maxFrame {
		return fail(fmt.Errorf("frame of %d bytes, more than %d", size, maxFrame))
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fail(err)
	}
	return fds, nil
}

// Serve answers the runtime on c until it closes: each Request is created
// in its own goroutine, and each init it starts is waited for.
func Serve(c *net.UnixConn) error {
	// A create is a burst of garbage on a small heap: collected at Go's
	// default pace it would be collected several times per create, on the
	// start path. The server lets its heap grow to five times what is live
	// (a bound, unlike no pacing at all, however many modules it holds),
	// and hands the garbage back once idle (idleFree).
	debug.SetGCPercent(gcPercent)
	var wmu sync.Mutex
	send := func(m Message) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = WriteFrame(c, m) // a runtime gone closes the socket: the read ends
	}
	var running sync.WaitGroup
	var inFlight atomic.Int32 // creates not yet answered
	defer running.Wait()
	for {
		var req Request
		fds, err := ReadFrame(c, &req)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		running.Add(1)
		inFlight.Add(1)
		go func() {
			defer running.Done()
			pid, err := create(req, fds)
			if err != nil {
				inFlight.Add(-1)
				send(Message{Seq: req.Seq, Error: err.Error()})
				return
			}
			// The pid goes first: the runtime waits for an exit only
			// after it knows the pid.
			send(Message{Seq: req.Seq, Pid: pid})
			// A create leaves megabytes of garbage (the decoded config,
			// libcontainer's setup). Once idle for a while (not while
			// the module it made starts) the server hands it back: it
			// lives as long as the daemon.
			inFlight.Add(-1)
			time.AfterFunc(idleFree, func() {
				if inFlight.Load() == 0 {
					debug.FreeOSMemory()
				}
			})
			exit := WaitPid(pid)
			send(Message{Exit: &exit})
		}()
	}
}

// create returns only the init's pid: holding libcontainer's Process (and
// through it the container's config and setup) for the container's life
// would cost the server about 150 KiB per module.
func create(req Request, fds []int) (int, error) {
	if len(fds) != 2 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return 0, fmt.Errorf("create %s: want the module's stdout and stderr, got %d fds", req.ID, len(fds))
	}
	stdout, stderr := os.NewFile(uintptr(fds[0]), "stdout"), os.NewFile(uintptr(fds[1]), "stderr")
	// The init holds its own copies once started; ours would keep the
	// runtime from ever seeing the end of the module's output.
	defer stdout.Close()
	defer stderr.Close()
	if req.Config == nil || req.ID == "" || req.StateDir == "" {
		return 0, errors.New("create: state_dir, id and config are required")
	}
	c, err := libcontainer.Create(req.StateDir, req.ID, req.Config)
	if err != nil {
		return 0, fmt.Errorf("create container: %w", err)
	}
	p := &libcontainer.Process{
		Args:   req.Process.Args,
		Env:    req.Process.Env,
		UID:    req.Process.UID,
		GID:    req.Process.GID,
		Cwd:    req.Process.Cwd,
		Stdout: stdout,
		Stderr: stderr,
		Init:   true,
	}
	if err := c.Start(p); err != nil {
		return 0, errors.Join(fmt.Errorf("start container: %w", err), c.Destroy())
	}
	pid, err := p.Pid()
	if err != nil {
		_ = c.Signal(unix.SIGKILL)
		return 0, errors.Join(fmt.Errorf("start container: %w", err), c.Destroy())
	}
	return pid, nil
}

// WaitPid reaps pid, a child of the caller, and reports how it ended: the
// server for its inits, the runtime for those a dead server left it.
func WaitPid(pid int) Exit {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Exit{Pid: pid, Err: err.Error()}
		}
		return Exit{Pid: pid, Status: int(ws)}
	}
}
