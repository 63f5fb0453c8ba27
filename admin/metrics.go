package admin

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector turns Manager.Modules into metrics at scrape time, so the
// figures are as fresh as the manager's and nothing is cached here.
type collector struct {
	m       Manager
	info    *prometheus.Desc
	state   *prometheus.Desc
	up      *prometheus.Desc
	started *prometheus.Desc
	figures []figure
}

// figure is one per-module metric read from a ModuleInfo field.
type figure struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(ModuleInfo) float64
}

func newCollector(m Manager) *collector {
	mod := []string{"module"}
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, mod, nil) }
	gauge := func(name, help string, v func(ModuleInfo) float64) figure {
		return figure{desc(name, help), prometheus.GaugeValue, v}
	}
	counter := func(name, help string, v func(ModuleInfo) float64) figure {
		return figure{desc(name, help), prometheus.CounterValue, v}
	}
	return &collector{
		m:       m,
		info:    prometheus.NewDesc("blvm_module_info", "A module the daemon knows, with its version.", []string{"module", "version"}, nil),
		state:   prometheus.NewDesc("blvm_module_state", "1 for the module's current state, 0 for the others.", []string{"module", "state"}, nil),
		up:      desc("blvm_module_up", "1 if the module is running."),
		started: desc("blvm_module_start_time_seconds", "When the module's current run started, in Unix seconds."),
		figures: []figure{
			gauge("blvm_module_memory_bytes", "Memory the module's cgroup uses.", func(mi ModuleInfo) float64 { return float64(mi.MemoryBytes) }),
			gauge("blvm_module_memory_limit_bytes", "The module's cgroup memory limit (0: none).", func(mi ModuleInfo) float64 { return float64(mi.MemoryLimit) }),
			counter("blvm_module_cpu_seconds_total", "CPU time the module's cgroup used.", func(mi ModuleInfo) float64 { return float64(mi.CPUNanos) / 1e9 }),
			gauge("blvm_module_pids", "Processes in the module's cgroup.", func(mi ModuleInfo) float64 { return float64(mi.Pids) }),
			gauge("blvm_module_pids_limit", "The module's cgroup pids limit (0: none).", func(mi ModuleInfo) float64 { return float64(mi.PidsLimit) }),
			counter("blvm_module_oom_kills_total", "OOM kills in the module's cgroup.", func(mi ModuleInfo) float64 { return float64(mi.OOMKills) }),
			counter("blvm_module_restarts_total", "Restarts of the module by the supervisor.", func(mi ModuleInfo) float64 { return float64(mi.Restarts) }),
			counter("blvm_hub_requests_total", "Requests the module made to the hub.", func(mi ModuleInfo) float64 { return float64(mi.HubRequests) }),
			counter("blvm_hub_denied_total", "Hub requests refused with PERMISSION_DENIED.", func(mi ModuleInfo) float64 { return float64(mi.HubDenied) }),
			counter("blvm_hub_rate_limited_total", "Hub requests refused with RATE_LIMITED.", func(mi ModuleInfo) float64 { return float64(mi.HubRateLimited) }),
			counter("blvm_hub_invalid_total", "Hub requests refused with INVALID.", func(mi ModuleInfo) float64 { return float64(mi.HubInvalid) }),
			counter("blvm_hub_events_delivered_total", "Events the hub delivered to the module.", func(mi ModuleInfo) float64 { return float64(mi.EventsDelivered) }),
			counter("blvm_hub_events_dropped_total", "Events dropped because the module's queue was full.", func(mi ModuleInfo) float64 { return float64(mi.EventsDropped) }),
			counter("blvm_hub_bad_frames_total", "Malformed or oversized frames from the module.", func(mi ModuleInfo) float64 { return float64(mi.BadFrames) }),
			counter("blvm_hub_peer_refused_total", "Connections to the module's socket from another uid, closed at accept.", func(mi ModuleInfo) float64 { return float64(mi.PeerRefused) }),
			counter("blvm_hub_log_suppressed_total", "Log lines about the module suppressed over its log budget.", func(mi ModuleInfo) float64 { return float64(mi.LogSuppressed) }),
			gauge("blvm_module_disk_bytes", "Bytes used on the module's /data quota (statfs).", func(mi ModuleInfo) float64 { return float64(mi.DiskBytes) }),
			gauge("blvm_module_disk_bytes_limit", "The byte limit that holds on the module's /data (0: not loaded).", func(mi ModuleInfo) float64 { return float64(mi.DiskBytesLimit) }),
			gauge("blvm_module_disk_inodes", "Inodes used on the module's /data quota.", func(mi ModuleInfo) float64 { return float64(mi.DiskInodes) }),
			gauge("blvm_module_disk_inodes_limit", "The inode limit that holds on the module's /data (0: not loaded).", func(mi ModuleInfo) float64 { return float64(mi.DiskInodesLimit) }),
		},
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.info
	ch <- c.state
	ch <- c.up
	ch <- c.started
	for _, f := range c.figures {
		ch <- f.desc
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, mi := range c.m.Modules() {
		emit(ch, c.info, prometheus.GaugeValue, 1, mi.Name, mi.Version)
		// Every state, so that an alert on state="failed" sees 0 rather
		// than no series at all.
		known := false
		for _, st := range States() {
			emit(ch, c.state, prometheus.GaugeValue, boolValue(st == mi.State), mi.Name, st)
			known = known || st == mi.State
		}
		if !known && mi.State != "" {
			emit(ch, c.state, prometheus.GaugeValue, 1, mi.Name, mi.State)
		}
		emit(ch, c.up, prometheus.GaugeValue, boolValue(mi.State == StateRunning), mi.Name)
		if !mi.StartedAt.IsZero() {
			emit(ch, c.started, prometheus.GaugeValue, float64(mi.StartedAt.UnixNano())/1e9, mi.Name)
		}
		for _, f := range c.figures {
			emit(ch, f.desc, f.typ, f.value(mi), mi.Name)
		}
	}
}

// emit sends one sample; a sample that cannot be built (a label that is
// not UTF-8) fails that sample in the scrape instead of panicking.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
