package admin

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// chainTimeout bounds the backend read a scrape makes; a slow node must
// not hold the scrape up past Prometheus's own timeout.
const chainTimeout = 2 * time.Second

// collector turns Manager.Modules into metrics at scrape time, so the
// figures are as fresh as the manager's and nothing is cached here, except
// what keeps restarts_total from going down (see restarts). It also carries
// the Go runtime's and the process's collectors and blvm_build_info, so
// that one registration gives the whole exposition.
type collector struct {
	m       Manager
	std     []prometheus.Collector // Go runtime and process
	build   prometheus.Metric
	info    *prometheus.Desc
	state   *prometheus.Desc
	up      *prometheus.Desc
	started *prometheus.Desc
	calls   *prometheus.Desc
	// live figures are read from the module's cgroup: only a module that
	// has one reports them.
	live []figure
	// always figures come from the hub and the supervisor and are reported
	// in every state.
	always []figure
	// limits are reported while they are known (not 0): a module without a
	// cgroup keeps its configured limits, or reports none.
	limits []figure
	// disk figures are the quota's: reported while a quota holds.
	disk     []figure
	restarts *prometheus.Desc

	chainUp, chainHeight, chainTip, chainAge *prometheus.Desc

	mu   sync.Mutex
	seen map[string]*restartCount
}

// restartCount turns the supervisor's per-run restart count, which starts
// again at 0 after an operator's stop and start, into a counter that only
// grows while the daemon runs.
type restartCount struct{ base, last int }

func (r *restartCount) total(now int) int {
	if now < r.last {
		r.base += r.last
	}
	r.last = now
	return r.base + now
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
	b := ReadBuild()
	build := prometheus.MustNewConstMetric(
		prometheus.NewDesc("blvm_build_info", "The daemon's build: version, VCS revision and Go version.", []string{"version", "revision", "goversion"}, nil),
		prometheus.GaugeValue, 1, b.Version, b.Commit, b.GoVersion)
	network := []string{"network"}
	return &collector{
		m: m,
		std: []prometheus.Collector{
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		},
		build:    build,
		info:     prometheus.NewDesc("blvm_module_info", "A module the daemon knows, with its version.", []string{"module", "version"}, nil),
		state:    prometheus.NewDesc("blvm_module_state", "1 for the module's current state, 0 for the others.", []string{"module", "state"}, nil),
		up:       desc("blvm_module_up", "1 if the module is running."),
		started:  desc("blvm_module_start_time_seconds", "When the module's current run started, in Unix seconds."),
		calls:    prometheus.NewDesc("blvm_hub_requests_total", "Requests the module made to the hub, by method and the code of the answer; methods the hub does not serve are \"other\".", []string{"module", "method", "code"}, nil),
		restarts: desc("blvm_module_restarts_total", "Restarts of the module by the supervisor since the daemon started."),
		live: []figure{
			gauge("blvm_module_memory_bytes", "Memory the module's cgroup uses.", func(mi ModuleInfo) float64 { return float64(mi.MemoryBytes) }),
			gauge("blvm_module_kernel_memory_bytes", "Kernel memory charged to the module's cgroup (part of blvm_module_memory_bytes).", func(mi ModuleInfo) float64 { return float64(mi.KernelMemoryBytes) }),
			counter("blvm_module_cpu_seconds_total", "CPU time the module's cgroup used in its current run.", func(mi ModuleInfo) float64 { return float64(mi.CPUNanos) / 1e9 }),
			counter("blvm_module_cpu_throttled_periods_total", "CFS periods in which the module's cgroup was throttled by its CPU quota.", func(mi ModuleInfo) float64 { return float64(mi.ThrottledPeriods) }),
			counter("blvm_module_cpu_throttled_seconds_total", "Time the module's cgroup spent throttled by its CPU quota.", func(mi ModuleInfo) float64 { return float64(mi.ThrottledNanos) / 1e9 }),
			gauge("blvm_module_pids", "Processes in the module's cgroup.", func(mi ModuleInfo) float64 { return float64(mi.Pids) }),
			counter("blvm_module_oom_kills_total", "OOM kills in the module's cgroup in its current run.", func(mi ModuleInfo) float64 { return float64(mi.OOMKills) }),
		},
		limits: []figure{
			gauge("blvm_module_memory_limit_bytes", "The module's cgroup memory limit; absent when there is none.", func(mi ModuleInfo) float64 { return float64(mi.MemoryLimit) }),
			gauge("blvm_module_pids_limit", "The module's cgroup pids limit; absent when there is none.", func(mi ModuleInfo) float64 { return float64(mi.PidsLimit) }),
			gauge("blvm_module_disk_limit_bytes", "The byte limit that holds on the module's /data quota; absent while it is not loaded.", func(mi ModuleInfo) float64 { return float64(mi.DiskBytesLimit) }),
			gauge("blvm_module_disk_inodes_limit", "The inode limit that holds on the module's /data quota; absent while it is not loaded.", func(mi ModuleInfo) float64 { return float64(mi.DiskInodesLimit) }),
		},
		disk: []figure{
			gauge("blvm_module_disk_bytes", "Bytes used on the module's /data quota (statfs).", func(mi ModuleInfo) float64 { return float64(mi.DiskBytes) }),
			gauge("blvm_module_disk_inodes", "Inodes used on the module's /data quota.", func(mi ModuleInfo) float64 { return float64(mi.DiskInodes) }),
		},
		always: []figure{
			// These count every refusal, also those that answer nothing (a
			// Log frame over the ACL, a stray invocation result);
			// blvm_hub_requests_total{code} has the answered requests.
			counter("blvm_hub_denied_total", "Refusals by the module's ACL (PERMISSION_DENIED), answered or not.", func(mi ModuleInfo) float64 { return float64(mi.HubDenied) }),
			counter("blvm_hub_rate_limited_total", "Requests refused by the rate or in-flight limits.", func(mi ModuleInfo) float64 { return float64(mi.HubRateLimited) }),
			counter("blvm_hub_invalid_total", "Invalid requests, bad params and stray invocation results.", func(mi ModuleInfo) float64 { return float64(mi.HubInvalid) }),
			counter("blvm_hub_events_delivered_total", "Events the hub delivered to the module.", func(mi ModuleInfo) float64 { return float64(mi.EventsDelivered) }),
			counter("blvm_hub_events_dropped_total", "Events dropped because the module's queue was full.", func(mi ModuleInfo) float64 { return float64(mi.EventsDropped) }),
			counter("blvm_hub_bad_frames_total", "Malformed or oversized frames from the module.", func(mi ModuleInfo) float64 { return float64(mi.BadFrames) }),
			counter("blvm_hub_handshake_failures_total", "Connections closed for a failed handshake: no Hello in time, a wrong name or version, a request first.", func(mi ModuleInfo) float64 { return float64(mi.HandshakeFailures) }),
			counter("blvm_hub_peer_refused_total", "Connections to the module's socket from another uid, closed at accept.", func(mi ModuleInfo) float64 { return float64(mi.PeerRefused) }),
			counter("blvm_hub_connections_total", "Connections the hub accepted on the module's socket.", func(mi ModuleInfo) float64 { return float64(mi.Connections) }),
			gauge("blvm_hub_connections_open", "Connections open on the module's socket now.", func(mi ModuleInfo) float64 { return float64(mi.ConnectionsOpen) }),
			counter("blvm_hub_log_bytes_total", "Log bytes the hub accepted from the module.", func(mi ModuleInfo) float64 { return float64(mi.LogBytes) }),
			counter("blvm_hub_log_dropped_total", "The module's log lines dropped over its log budget.", func(mi ModuleInfo) float64 { return float64(mi.LogDropped) }),
			counter("blvm_hub_log_suppressed_total", "Hub log lines about the module suppressed over its log budget.", func(mi ModuleInfo) float64 { return float64(mi.LogSuppressed) }),
		},
		chainUp:     prometheus.NewDesc("blvm_chain_up", "1 if the last scrape could read the node backend's chain tip.", nil, nil),
		chainHeight: prometheus.NewDesc("blvm_chain_height", "Height of the node backend's best chain.", network, nil),
		chainTip:    prometheus.NewDesc("blvm_chain_tip_timestamp_seconds", "Header time of the best chain's tip, in Unix seconds.", network, nil),
		chainAge:    prometheus.NewDesc("blvm_chain_tip_age_seconds", "Seconds since the header time of the best chain's tip; 0 when that time is ahead of this host's clock.", network, nil),
		seen:        map[string]*restartCount{},
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.std {
		s.Describe(ch)
	}
	ch <- c.build.Desc()
	for _, d := range []*prometheus.Desc{c.info, c.state, c.up, c.started, c.calls, c.restarts, c.chainUp, c.chainHeight, c.chainTip, c.chainAge} {
		ch <- d
	}
	for _, fs := range [][]figure{c.live, c.limits, c.always, c.disk} {
		for _, f := range fs {
			ch <- f.desc
		}
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.std {
		s.Collect(ch)
	}
	ch <- c.build
	c.collectChain(ch)
	mods := c.m.Modules()
	for _, mi := range mods {
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
		emit(ch, c.restarts, prometheus.CounterValue, float64(c.restartsTotal(mi.Name, mi.Restarts)), mi.Name)
		if hasCgroup(mi.State) {
			if !mi.StartedAt.IsZero() {
				emit(ch, c.started, prometheus.GaugeValue, float64(mi.StartedAt.UnixNano())/1e9, mi.Name)
			}
			for _, f := range c.live {
				emit(ch, f.desc, f.typ, f.value(mi), mi.Name)
			}
		}
		for _, f := range c.limits {
			if v := f.value(mi); v > 0 {
				emit(ch, f.desc, f.typ, v, mi.Name)
			}
		}
		if mi.DiskBytesLimit > 0 {
			for _, f := range c.disk {
				emit(ch, f.desc, f.typ, f.value(mi), mi.Name)
			}
		}
		for _, f := range c.always {
			emit(ch, f.desc, f.typ, f.value(mi), mi.Name)
		}
		for _, hc := range mi.HubCalls {
			emit(ch, c.calls, prometheus.CounterValue, float64(hc.Count), mi.Name, hc.Method, hc.Code)
		}
	}
}

// restartsTotal is the module's restart counter; see restartCount.
func (c *collector) restartsTotal(name string, now int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.seen[name]
	if r == nil {
		r = &restartCount{}
		c.seen[name] = r
	}
	return r.total(now)
}

// collectChain exports the backend's chain when the manager can read it.
func (c *collector) collectChain(ch chan<- prometheus.Metric) {
	cr, ok := c.m.(ChainReporter)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), chainTimeout)
	defer cancel()
	chain, err := cr.Chain(ctx)
	if err != nil {
		emit(ch, c.chainUp, prometheus.GaugeValue, 0)
		return
	}
	emit(ch, c.chainUp, prometheus.GaugeValue, 1)
	emit(ch, c.chainHeight, prometheus.GaugeValue, float64(chain.Height), chain.Network)
	emit(ch, c.chainTip, prometheus.GaugeValue, float64(chain.TipTime.UnixNano())/1e9, chain.Network)
	// A tip stamped ahead of this host's clock (a dev chain mining faster
	// than a block a second, or a real one within consensus's two hours)
	// is 0 seconds old, not negative.
	emit(ch, c.chainAge, prometheus.GaugeValue, max(time.Since(chain.TipTime).Seconds(), 0), chain.Network)
}

// hasCgroup reports whether a module in this state has a cgroup to read.
func hasCgroup(state string) bool {
	switch state {
	case StateStarting, StateRunning, StateRestarting, StateStopping:
		return true
	}
	return false
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
