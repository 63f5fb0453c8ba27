package runtime

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ExitReason is why a module's container ended, in the words an operator
// needs: an exit code, a signal, an out-of-memory kill, or a start failure.
type ExitReason struct {
	Code      int         `json:"code"`             // exit status when it exited; -1 otherwise
	Signal    unix.Signal `json:"signal,omitempty"` // the killing signal, 0 if it exited
	OOMKilled bool        `json:"oom_killed,omitempty"`
	// Err is set when the container could not start or was never ready.
	Err string `json:"error,omitempty"`
}

// Clean reports whether the module exited by itself with status 0.
func (e ExitReason) Clean() bool { return e.Err == "" && e.Signal == 0 && e.Code == 0 && !e.OOMKilled }

// ShellCode is the exit code a shell would report: the status, or
// 128+signal, or 125 when the container never ran the module.
func (e ExitReason) ShellCode() int {
	switch {
	case e.Err != "":
		return 125
	case e.Signal != 0:
		return 128 + int(e.Signal)
	}
	return e.Code
}

func (e ExitReason) String() string {
	var s string
	switch {
	case e.Err != "":
		return e.Err
	case e.Signal != 0:
		s = "killed by " + unix.SignalName(e.Signal)
	default:
		s = fmt.Sprintf("exited with code %d", e.Code)
	}
	if e.OOMKilled {
		s += " (out of memory: the cgroup's memory limit was hit)"
	}
	return s
}
