package main

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/admin"
)

// psSchemaVersion is the version of `ps --json`'s output (docs/cli.md).
// Adding a field keeps the version; renaming, removing or changing the
// meaning of one raises it.
const psSchemaVersion = 1

// psOutput is `ps --json`: every field is present for every module in
// every state, so that a script never tests for a key.
type psOutput struct {
	SchemaVersion int        `json:"schema_version"`
	Modules       []psModule `json:"modules"`
}

type psModule struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	State   string `json:"state"`
	// Error says why the module is refused or failed; "" otherwise.
	Error        string   `json:"error"`
	Dependencies []string `json:"dependencies"`
	// Pid is the module's init process on the host; 0 while it has none.
	Pid int `json:"pid"`
	// StartedAt is when its current run started (RFC 3339); null while
	// it is not running.
	StartedAt *time.Time `json:"started_at"`
	Restarts  int        `json:"restarts"`
	LastExit  psExit     `json:"last_exit"`

	// cgroup figures: 0 while the module has no cgroup. A limit of 0 is
	// no limit (or, for a module never loaded, not known yet).
	MemoryBytes             uint64 `json:"memory_bytes"`
	KernelMemoryBytes       uint64 `json:"kernel_memory_bytes"`
	MemoryLimitBytes        uint64 `json:"memory_limit_bytes"`
	CPUNanoseconds          uint64 `json:"cpu_nanoseconds"`
	CPUThrottledPeriods     uint64 `json:"cpu_throttled_periods"`
	CPUThrottledNanoseconds uint64 `json:"cpu_throttled_nanoseconds"`
	Pids                    uint64 `json:"pids"`
	PidsLimit               uint64 `json:"pids_limit"`
	OOMKills                uint64 `json:"oom_kills"`

	// the /data quota: 0 while the module is not loaded.
	DiskBytes       uint64 `json:"disk_bytes"`
	DiskLimitBytes  uint64 `json:"disk_limit_bytes"`
	DiskInodes      uint64 `json:"disk_inodes"`
	DiskInodesLimit uint64 `json:"disk_inodes_limit"`

	Hub psHub `json:"hub"`
}

// psExit is how the last run ended. Reason is one of "none" (it never
// ended), "exited", "signaled", "oom-killed", "start-failed".
type psExit struct {
	Reason string `json:"reason"`
	// Code is the exit status when Reason is "exited"; -1 otherwise.
	Code int `json:"code"`
	// Signal is the killing signal's number, 0 if none; SignalName its
	// name ("SIGKILL"), "" if none.
	Signal     int    `json:"signal"`
	SignalName string `json:"signal_name"`
	// Message is the daemon's sentence for people; do not parse it.
	Message string `json:"message"`
}

// psHub is the module's hub counters since the daemon first saw it.
type psHub struct {
	Requests          uint64 `json:"requests"`
	Denied            uint64 `json:"denied"`
	RateLimited       uint64 `json:"rate_limited"`
	Invalid           uint64 `json:"invalid"`
	EventsDelivered   uint64 `json:"events_delivered"`
	EventsDropped     uint64 `json:"events_dropped"`
	BadFrames         uint64 `json:"bad_frames"`
	HandshakeFailures uint64 `json:"handshake_failures"`
	PeerRefused       uint64 `json:"peer_refused"`
	Connections       uint64 `json:"connections"`
	ConnectionsOpen   uint64 `json:"connections_open"`
	LogBytes          uint64 `json:"log_bytes"`
	LogDropped        uint64 `json:"log_dropped"`
	LogSuppressed     uint64 `json:"log_suppressed"`
}

func psJSON(mods []admin.ModuleInfo) psOutput {
	out := psOutput{SchemaVersion: psSchemaVersion, Modules: make([]psModule, 0, len(mods))}
	for _, m := range mods {
		p := psModule{
			Name: m.Name, Version: m.Version, State: m.State, Error: m.Error,
			Dependencies: m.Dependencies, Restarts: m.Restarts, LastExit: psLastExit(m),
			MemoryLimitBytes: m.MemoryLimit, PidsLimit: m.PidsLimit,
			DiskBytes: m.DiskBytes, DiskLimitBytes: m.DiskBytesLimit, DiskInodes: m.DiskInodes, DiskInodesLimit: m.DiskInodesLimit,
			Hub: psHub{
				Requests: m.HubRequests, Denied: m.HubDenied, RateLimited: m.HubRateLimited, Invalid: m.HubInvalid,
				EventsDelivered: m.EventsDelivered, EventsDropped: m.EventsDropped, BadFrames: m.BadFrames,
				HandshakeFailures: m.HandshakeFailures, PeerRefused: m.PeerRefused,
				Connections: m.Connections, ConnectionsOpen: m.ConnectionsOpen,
				LogBytes: m.LogBytes, LogDropped: m.LogDropped, LogSuppressed: m.LogSuppressed,
			},
		}
		if p.Dependencies == nil {
			p.Dependencies = []string{}
		}
		if live(m.State) {
			p.Pid = m.Pid
			if !m.StartedAt.IsZero() {
				t := m.StartedAt.UTC()
				p.StartedAt = &t
			}
			p.MemoryBytes, p.KernelMemoryBytes, p.CPUNanoseconds = m.MemoryBytes, m.KernelMemoryBytes, m.CPUNanos
			p.CPUThrottledPeriods, p.CPUThrottledNanoseconds = m.ThrottledPeriods, m.ThrottledNanos
			p.Pids, p.OOMKills = m.Pids, m.OOMKills
		}
		out.Modules = append(out.Modules, p)
	}
	return out
}

func psLastExit(m admin.ModuleInfo) psExit {
	e := psExit{Reason: "none", Code: -1, Message: m.LastExit}
	x := m.Exit
	switch {
	case x == nil:
		if m.LastExit != "" {
			// A daemon older than the fields: only the sentence is known.
			e.Reason = "unknown"
		}
	case x.Error != "":
		e.Reason = "start-failed"
	case x.OOMKilled:
		e.Reason = "oom-killed"
	case x.Signal != 0:
		e.Reason = "signaled"
	default:
		e.Reason, e.Code = "exited", x.Code
	}
	if x != nil && x.Signal != 0 {
		e.Signal, e.SignalName = x.Signal, unix.SignalName(unix.Signal(x.Signal))
	}
	return e
}
