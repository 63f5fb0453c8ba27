package admin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// chainManager is a fake Manager that also reports a chain.
type chainManager struct {
	*fakeManager
	chain Chain
	err   error
}

func (c *chainManager) Chain(context.Context) (Chain, error) { return c.chain, c.err }

func scrape(t *testing.T, c *Client) map[string]*dto.MetricFamily {
	t.Helper()
	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return fams
}

// sample finds the one sample of family name whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	fam := fams[name]
	if fam == nil {
		return 0, false
	}
metrics:
	for _, mt := range fam.Metric {
		have := map[string]string{}
		for _, l := range mt.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue metrics
			}
		}
		switch {
		case mt.Gauge != nil:
			return mt.Gauge.GetValue(), true
		case mt.Counter != nil:
			return mt.Counter.GetValue(), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	m := twoModules()
	m.mods[0].ThrottledPeriods, m.mods[0].ThrottledNanos = 11, 2_500_000_000
	m.mods[0].HandshakeFailures, m.mods[0].Connections, m.mods[0].ConnectionsOpen = 3, 4, 1
	m.mods[0].LogBytes, m.mods[0].LogDropped, m.mods[0].KernelMemoryBytes = 777, 8, 1<<20
	m.mods[0].HubCalls = []HubCall{{"chain.GetChainTip", "OK", 90}, {"chain.GetChainTip", "RATE_LIMITED", 5}, {"other", "INVALID", 4}}
	m.mods = append(m.mods, ModuleInfo{Name: "odd", Version: "1.0.0", State: "quarantined"})
	tip := time.Now().Add(-90 * time.Second).Truncate(time.Second)
	cm := &chainManager{fakeManager: m, chain: Chain{Network: "regtest", Height: 321, TipTime: tip}}
	c, _ := serve(t, cm)
	fams := scrape(t, c)
	s := "stratum-v2"
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"blvm_module_up", []string{"module", s}, 1},
		{"blvm_module_up", []string{"module", "merge-mining"}, 0},
		{"blvm_module_info", []string{"module", s, "version", "1.2.0"}, 1},
		{"blvm_module_state", []string{"module", s, "state", "running"}, 1},
		{"blvm_module_state", []string{"module", s, "state", "failed"}, 0},
		{"blvm_module_state", []string{"module", "merge-mining", "state", "stopped"}, 1},
		{"blvm_module_state", []string{"module", "odd", "state", "quarantined"}, 1},
		{"blvm_module_start_time_seconds", []string{"module", s}, float64(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix())},
		{"blvm_module_memory_bytes", []string{"module", s}, 12 << 20},
		{"blvm_module_kernel_memory_bytes", []string{"module", s}, 1 << 20},
		{"blvm_module_memory_limit_bytes", []string{"module", s}, 256 << 20},
		{"blvm_module_cpu_seconds_total", []string{"module", s}, 1.5},
		{"blvm_module_cpu_throttled_periods_total", []string{"module", s}, 11},
		{"blvm_module_cpu_throttled_seconds_total", []string{"module", s}, 2.5},
		{"blvm_module_pids", []string{"module", s}, 3},
		{"blvm_module_pids_limit", []string{"module", s}, 64},
		{"blvm_module_oom_kills_total", []string{"module", s}, 1},
		{"blvm_module_restarts_total", []string{"module", s}, 2},
		{"blvm_hub_requests_total", []string{"module", s, "method", "chain.GetChainTip", "code", "OK"}, 90},
		{"blvm_hub_requests_total", []string{"module", s, "method", "chain.GetChainTip", "code", "RATE_LIMITED"}, 5},
		{"blvm_hub_requests_total", []string{"module", s, "method", "other", "code", "INVALID"}, 4},
		{"blvm_hub_denied_total", []string{"module", s}, 7},
		{"blvm_hub_rate_limited_total", []string{"module", s}, 5},
		{"blvm_hub_invalid_total", []string{"module", s}, 4},
		{"blvm_hub_events_delivered_total", []string{"module", s}, 50},
		{"blvm_hub_events_dropped_total", []string{"module", s}, 3},
		{"blvm_hub_bad_frames_total", []string{"module", s}, 2},
		{"blvm_hub_handshake_failures_total", []string{"module", s}, 3},
		{"blvm_hub_connections_total", []string{"module", s}, 4},
		{"blvm_hub_connections_open", []string{"module", s}, 1},
		{"blvm_hub_peer_refused_total", []string{"module", s}, 6},
		{"blvm_hub_log_bytes_total", []string{"module", s}, 777},
		{"blvm_hub_log_dropped_total", []string{"module", s}, 8},
		{"blvm_hub_log_suppressed_total", []string{"module", s}, 9},
		{"blvm_module_disk_bytes", []string{"module", s}, 4096},
		{"blvm_module_disk_limit_bytes", []string{"module", s}, 1 << 30},
		{"blvm_module_disk_inodes", []string{"module", s}, 12},
		{"blvm_module_disk_inodes_limit", []string{"module", s}, 262144},
		{"blvm_hub_events_dropped_total", []string{"module", "merge-mining"}, 0},
		{"blvm_module_restarts_total", []string{"module", "merge-mining"}, 0},
		{"blvm_chain_up", nil, 1},
		{"blvm_chain_height", []string{"network", "regtest"}, 321},
		{"blvm_chain_tip_timestamp_seconds", []string{"network", "regtest"}, float64(tip.Unix())},
		{"blvm_build_info", nil, 1},
	} {
		got, ok := sample(fams, tt.name, tt.labels...)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (found %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if age, _ := sample(fams, "blvm_chain_tip_age_seconds", "network", "regtest"); age < 89 || age > 120 {
		t.Errorf("tip age = %v s, want about 90", age)
	}
	// A module with no cgroup reports no cgroup figures: no memory limit
	// of 0, no start time, no memory use.
	for _, name := range []string{"blvm_module_start_time_seconds", "blvm_module_memory_limit_bytes", "blvm_module_memory_bytes", "blvm_module_pids_limit", "blvm_module_disk_bytes"} {
		if v, ok := sample(fams, name, "module", "merge-mining"); ok {
			t.Errorf("stopped module reports %s = %v", name, v)
		}
	}
	for _, fam := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_start_time_seconds"} {
		if fams[fam] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", fam)
		}
	}
	if fams["blvm_module_cpu_seconds_total"].GetType() != dto.MetricType_COUNTER || fams["blvm_module_memory_bytes"].GetType() != dto.MetricType_GAUGE {
		t.Error("metric types are wrong")
	}
	if n := len(fams["blvm_module_state"].Metric); n != 3*len(States())+1 {
		t.Errorf("blvm_module_state has %d series, want %d", n, 3*len(States())+1)
	}

	// Scrape time, not cache: a change in the manager shows at once. The
	// supervisor's count starting again after a stop and start does not
	// make the counter go down, and a stopped module keeps its configured
	// limit.
	m.mu.Lock()
	m.mods[0].EventsDropped = 8
	m.mods[0].Restarts = 0
	m.mods[1].MemoryLimit = 64 << 20
	m.mu.Unlock()
	cm.chain.TipTime = time.Now().Add(time.Hour) // a tip ahead of the clock
	if age, _ := sample(scrape(t, c), "blvm_chain_tip_age_seconds", "network", "regtest"); age != 0 {
		t.Errorf("tip age of a tip ahead of the clock = %v, want 0", age)
	}
	cm.err = errors.New("backend down")
	fams = scrape(t, c)
	if v, _ := sample(fams, "blvm_hub_events_dropped_total", "module", s); v != 8 {
		t.Errorf("second scrape: events dropped = %v, want 8", v)
	}
	if v, _ := sample(fams, "blvm_module_restarts_total", "module", s); v != 2 {
		t.Errorf("restarts_total after the count started again = %v, want 2 (it must not decrease)", v)
	}
	m.mu.Lock()
	m.mods[0].Restarts = 1
	m.mu.Unlock()
	if v, _ := sample(scrape(t, c), "blvm_module_restarts_total", "module", s); v != 3 {
		t.Errorf("restarts_total after one more restart = %v, want 3", v)
	}
	if v, ok := sample(fams, "blvm_module_memory_limit_bytes", "module", "merge-mining"); !ok || v != 64<<20 {
		t.Errorf("stopped module's configured memory limit = %v (found %v), want %d", v, ok, 64<<20)
	}
	if v, ok := sample(fams, "blvm_chain_up"); !ok || v != 0 {
		t.Errorf("blvm_chain_up with the backend down = %v (found %v), want 0", v, ok)
	}
	if _, ok := sample(fams, "blvm_chain_height"); ok {
		t.Error("a chain height is reported while the backend cannot be read")
	}
}

// A module cannot make the exposition grow by naming methods: the hub
// maps them to "other" before they reach ModuleInfo, and the labels here
// are what it sends. Labels that are not UTF-8 fail their sample, not
// the scrape.
func TestMetricsSurviveABadLabel(t *testing.T) {
	m := twoModules()
	m.mods[0].Version = "1.0.0\xff"
	c, _ := serve(t, m)
	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), `blvm_module_up{module="merge-mining"} 0`) {
		t.Errorf("a bad label took the whole scrape down:\n%.2000s", text)
	}
}
