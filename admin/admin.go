// Package admin is the daemon's operator interface: an HTTP API on a
// root-only Unix socket (list, load, unload, start, stop, restart, logs,
// module CLIs, the event stream and Prometheus /metrics) and the client the
// operator CLI uses to talk to it. It decides nothing about modules: every
// action is the Manager's.
package admin

import (
	"context"
	"errors"
	"time"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// DefaultSocket is where the daemon listens unless configured otherwise.
const DefaultSocket = "/run/blvm-sandbox/admin.sock"

// Errors a Manager wraps so that the API can answer with the right status;
// the Client's errors match them with errors.Is.
var (
	// ErrUnknownModule: no module by that name (HTTP 404).
	ErrUnknownModule = errors.New("unknown module")
	// ErrConflict: the module's state does not allow the action, for
	// example starting a module whose dependency is not loaded (HTTP 409).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is wrong, for example a CLI command
	// the module does not offer (HTTP 400).
	ErrInvalid = errors.New("invalid")
	// ErrUnreachable: nothing answers on the admin socket (Client only).
	ErrUnreachable = errors.New("daemon unreachable")
)

// Manager is what the admin API needs from the module manager.
type Manager interface {
	// Modules lists every module the daemon knows, loaded or not.
	Modules() []ModuleInfo
	// Load verifies and starts a module; its dependencies must be loaded.
	Load(ctx context.Context, name string) error
	// Unload stops the modules that require name, then name, and publishes
	// ModuleUnloaded for each.
	Unload(ctx context.Context, name string) error
	// Start is Load for a stopped module.
	Start(ctx context.Context, name string) error
	// Stop is Unload, but the module stays listed as stopped.
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	// LogPath is the module's captured output, ROOT/logs/<name>.log.
	LogPath(name string) (string, error)
	// CliSpecs is getmoduleclispecs: the spec of each module that
	// registered one, by module name.
	CliSpecs() map[string]*pb.RegisterCliSpec
	// RunCli is runmodulecli.
	RunCli(ctx context.Context, module, command string, args []string) (*pb.CliResult, error)
	// Subscribe delivers lifecycle and state events until ctx ends. A slow
	// reader loses events; it never blocks the manager.
	Subscribe(ctx context.Context) <-chan Event
}

// Module states, as ModuleInfo.State reports them.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	StateStopping   = "stopping"
	StateStopped    = "stopped"
	StateFailed     = "failed"
	StateExpired    = "expired" // its signatures expired; stopped, not restarted
	StateRefused    = "refused"
)

// States lists every module state, in lifecycle order.
func States() []string {
	return []string{StateStarting, StateRunning, StateRestarting, StateStopping, StateStopped, StateFailed, StateExpired, StateRefused}
}

// ModuleInfo is one row of `ps`: a module's state and its live figures.
type ModuleInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// State is one of the State constants.
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Restarts  int       `json:"restarts"`
	// LastExit is how the module's last run ended, in words ("exited with
	// code 1", "killed by SIGKILL (out of memory: ...)"); Exit is the same
	// as fields. Both are empty while the module never ended.
	LastExit string `json:"last_exit,omitempty"`
	Exit     *Exit  `json:"exit,omitempty"`
	// Error says why the module is refused or failed.
	Error        string   `json:"error,omitempty"`
	Dependencies []string `json:"dependencies,omitempty"`
	Pid          int      `json:"pid,omitempty"`

	// cgroup figures, read while the module runs; a limit of 0 means
	// none. MemoryLimit and PidsLimit hold the configured limits while the
	// module has no cgroup (stopped, failed) but has been loaded.
	MemoryBytes uint64 `json:"memory_bytes"`
	// KernelMemoryBytes is the part of MemoryBytes that is kernel memory
	// (the module's slab objects, stacks, page tables).
	KernelMemoryBytes uint64 `json:"kernel_memory_bytes"`
	MemoryLimit       uint64 `json:"memory_limit"`
	CPUNanos          uint64 `json:"cpu_nanos"`
	Pids              uint64 `json:"pids"`
	PidsLimit         uint64 `json:"pids_limit"`
	OOMKills          uint64 `json:"oom_kills"`
	// CPU throttling by the cgroup's CFS quota: periods throttled and the
	// time spent throttled.
	ThrottledPeriods uint64 `json:"throttled_periods"`
	ThrottledNanos   uint64 `json:"throttled_nanos"`

	// disk quota on /data, from statfs on its mount (the limits that hold,
	// not the requested ones); zero while the module is not loaded.
	DiskBytes       uint64 `json:"disk_bytes"`
	DiskBytesLimit  uint64 `json:"disk_bytes_limit"`
	DiskInodes      uint64 `json:"disk_inodes"`
	DiskInodesLimit uint64 `json:"disk_inodes_limit"`

	// hub figures
	HubRequests     uint64 `json:"hub_requests"`
	HubDenied       uint64 `json:"hub_denied"`
	HubRateLimited  uint64 `json:"hub_rate_limited"`
	HubInvalid      uint64 `json:"hub_invalid"`
	EventsDelivered uint64 `json:"events_delivered"`
	EventsDropped   uint64 `json:"events_dropped"`
	BadFrames       uint64 `json:"bad_frames"`
	PeerRefused     uint64 `json:"peer_refused"`   // connections from another uid, closed at accept
	LogSuppressed   uint64 `json:"log_suppressed"` // log lines over the module's budget
	// HandshakeFailures: connections closed for no Hello in time, a wrong
	// name or version, or a request first.
	HandshakeFailures uint64 `json:"handshake_failures"`
	Connections       uint64 `json:"connections"`      // accepted since the hub first saw the module
	ConnectionsOpen   uint64 `json:"connections_open"` // open now
	LogBytes          uint64 `json:"log_bytes"`        // log bytes the hub accepted from the module
	LogDropped        uint64 `json:"log_dropped"`      // the module's own log lines dropped over budget
	// HubCalls counts answered requests by method and code; methods the
	// hub does not serve count as "other".
	HubCalls []HubCall `json:"hub_calls,omitempty"`
}

// Exit is how a module's last run ended, as fields.
type Exit struct {
	// Code is the exit status when the module exited by itself; -1 when a
	// signal killed it or it never ran.
	Code int `json:"code"`
	// Signal is the number of the signal that killed it, 0 if none.
	Signal    int  `json:"signal"`
	OOMKilled bool `json:"oom_killed"`
	// Error says why the container could not start or never became ready.
	Error string `json:"error,omitempty"`
}

// HubCall is how many requests for Method ended with Code.
type HubCall struct {
	Method string `json:"method"`
	Code   string `json:"code"`
	Count  uint64 `json:"count"`
}

// Chain is the node backend's best chain, as /metrics shows it.
type Chain struct {
	Network string    `json:"network"`
	Height  uint64    `json:"height"`
	TipTime time.Time `json:"tip_time"`
}

// ChainReporter is implemented by a Manager that can read the backend's
// chain; /metrics then exports its height and tip age.
type ChainReporter interface {
	Chain(ctx context.Context) (Chain, error)
}

// Event kinds.
const (
	EventLoaded   = "loaded"   // ModuleLoaded
	EventUnloaded = "unloaded" // ModuleUnloaded
	EventState    = "state"    // any other state change: crash, restart, failed
)

// Event is one lifecycle or state event, as the event stream carries it.
type Event struct {
	Time   time.Time `json:"time"`
	Module string    `json:"module"`
	Kind   string    `json:"kind"`
	State  string    `json:"state,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// cliRequest and cliResponse are the body of POST /v1/modules/{name}/cli.
type cliRequest struct {
	Command string   `json:"command"`
	Args    []string `json:"args"`
}

type cliResponse struct {
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
	ExitCode int32  `json:"exit_code"`
}

// errorResponse is the body of every error the API answers.
type errorResponse struct {
	Error string `json:"error"`
}
