// Package launch is the one request that crosses from the runtime to
// blvm-sandbox-init: create this container and start its init, up to the
// exec fifo. libcontainer re-executes the binary that calls Start as the
// container's init, so the runtime does not call it itself: the small init
// binary does, and then the init that runs in every container is that
// binary, whose package initialisers are libcontainer's and little else
// (the daemon's CLI, hub, metrics and chain clients never run there).
//
// The runtime writes a Request as JSON on the init binary's stdin and
// passes the module's stdout and stderr as fds 3 and 4; the init binary
// answers one Reply as JSON on its stdout and exits, leaving the init
// waiting on the exec fifo. The runtime then loads the container from its
// state directory (as `runc start` does) and, as the child subreaper, reaps
// the init when it ends.
package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// CreateArg is the init binary's argument for a Request on stdin;
// libcontainer's own is "init".
const CreateArg = "create"

// Fds of the module's stdout and stderr in the init binary.
const (
	StdoutFd = 3
	StderrFd = 4
)

// Request is one container to create.
type Request struct {
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

// Reply is the init binary's answer: the init's pid, or why there is none.
type Reply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// maxRequest bounds what the init binary reads: a policy's config is tens
// of KiB.
const maxRequest = 8 << 20

// Serve handles one Request from in and writes the Reply to out. It is the
// init binary's "create"; it returns the process exit code.
func Serve(in io.Reader, out io.Writer) int {
	reply := Reply{}
	pid, err := serve(in)
	if err != nil {
		reply.Error = err.Error()
	}
	reply.Pid = pid
	if err := json.NewEncoder(out).Encode(reply); err != nil || reply.Error != "" {
		return 1
	}
	return 0
}

func serve(in io.Reader) (int, error) {
	var req Request
	dec := json.NewDecoder(io.LimitReader(in, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, fmt.Errorf("read the request: %w", err)
	}
	if req.Config == nil || req.ID == "" || req.StateDir == "" {
		return 0, errors.New("read the request: state_dir, id and config are required")
	}
	stdout, stderr := os.NewFile(StdoutFd, "stdout"), os.NewFile(StderrFd, "stderr")
	if stdout == nil || stderr == nil {
		return 0, errors.New("the module's stdout and stderr are not fds 3 and 4")
	}
	// The init gets them as its 1 and 2; no other copy may reach it.
	unix.CloseOnExec(StdoutFd)
	unix.CloseOnExec(StderrFd)
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
