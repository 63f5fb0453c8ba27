package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/blvm/blvm-sandbox/admin"
)

// /metrics as Prometheus users expect (issue 13, item 7): the real
// daemon's exposition, read over its admin socket.

// addSprayer adds a module running the hostile metrics-spray attack under
// a CPU quota of a tenth of a core, signed like the others.
func (d *daemon) addSprayer() {
	d.t.Helper()
	dir := filepath.Join(d.dir, "modules", "sprayer")
	os.MkdirAll(dir, 0o755)
	copyFile(d.t, binaries.Hostile, filepath.Join(dir, "sprayer"), 0o755)
	os.WriteFile(filepath.Join(dir, "module.toml"), []byte("name = \"sprayer\"\nversion = \"1.0.0\"\nentry_point = \"sprayer\"\ncapabilities = [\"read_blockchain\"]\n[config_schema]\nattack = \"\"\narg = \"\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("attack = \"metrics-spray\"\narg = \"50\"\n"), 0o644)
	for _, k := range []string{"alice", "bob"} {
		if r := runCLI(d.t, d.bin, "sign", "--key", filepath.Join(d.dir, k+".key"), "--binary", filepath.Join(dir, "sprayer"), "--threshold", "2-of-3", dir); r.code != 0 {
			d.t.Fatalf("sign sprayer: %+v", r)
		}
	}
	cfg := filepath.Join(d.dir, "node.toml")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, "\n[modules.sprayer.limits]\ncpus = 0.1\n"...), 0o644)
}

func (d *daemon) scrape() (map[string]*dto.MetricFamily, []byte) {
	d.t.Helper()
	text, err := d.client.Metrics(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		d.t.Fatalf("parse /metrics: %v\n%s", err, text)
	}
	return fams, text
}

// series returns the samples of name whose labels include want, as
// label-set → value.
func series(fams map[string]*dto.MetricFamily, name string, want ...string) []float64 {
	var out []float64
	fam := fams[name]
	if fam == nil {
		return nil
	}
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			out = append(out, m.Counter.GetValue())
		case m.Gauge != nil:
			out = append(out, m.Gauge.GetValue())
		default:
			out = append(out, 0)
		}
	}
	return out
}

func one(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	s := series(fams, name, labels...)
	if len(s) != 1 {
		t.Errorf("%s%v: %d series, want 1", name, labels, len(s))
		return 0
	}
	return s[0]
}

// promtool is the path of promtool: $PROMTOOL, or on PATH ("" if none).
func promtool() string {
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, _ := exec.LookPath("promtool")
	return p
}

func TestRootMetrics(t *testing.T) {
	d := newDaemon(t)
	d.addSprayer()
	d.start()
	d.waitFor("the crasher failed and the sprayer runs", func(mods []admin.ModuleInfo) bool {
		return state(mods, "crasher").State == admin.StateFailed && state(mods, "sprayer").State == admin.StateRunning
	})
	// The sprayer prints its result once its requests are answered.
	logPath := filepath.Join(d.root, "logs", "sprayer.log")
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte(`"attack":"metrics-spray"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sprayer never finished: %q\n%s", b, d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	fams, text := d.scrape()

	t.Run("promtool check metrics", func(t *testing.T) {
		p := promtool()
		if p == "" {
			t.Skip("promtool not found (Debian's prometheus package; or set PROMTOOL)")
		}
		cmd := exec.Command(p, "check", "metrics")
		cmd.Stdin = bytes.NewReader(text)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})

	t.Run("standard collectors and build info", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "go_gc_duration_seconds", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"} {
			if fams[name] == nil {
				t.Errorf("no %s", name)
			}
		}
		bi := fams["blvm_build_info"]
		if bi == nil || len(bi.Metric) != 1 {
			t.Fatalf("blvm_build_info: %v", bi)
		}
		labels := map[string]string{}
		for _, l := range bi.Metric[0].Label {
			labels[l.GetName()] = l.GetValue()
		}
		if !strings.HasPrefix(labels["goversion"], "go1.") || labels["version"] == "" {
			t.Errorf("blvm_build_info labels = %v", labels)
		}
	})

	t.Run("hub requests by method and code", func(t *testing.T) {
		// 50 invented methods are one series, 50 invented providers another.
		if v := one(t, fams, "blvm_hub_requests_total", "module", "sprayer", "method", "other", "code", "INVALID"); v != 50 {
			t.Errorf("invented methods: %v requests, want 50", v)
		}
		if v := one(t, fams, "blvm_hub_requests_total", "module", "sprayer", "method", "chain.GetChainTip", "code", "OK"); v != 5 {
			t.Errorf("chain.GetChainTip OK: %v, want 5", v)
		}
		if s := series(fams, "blvm_hub_requests_total", "module", "sprayer", "method", "modules.Call"); len(s) != 1 || s[0] != 50 {
			t.Errorf("modules.Call to invented providers: %v, want one series of 50", s)
		}
		if n := len(series(fams, "blvm_hub_requests_total", "module", "sprayer")); n > 4 {
			t.Errorf("the sprayer has %d request series; invented names must not add series", n)
		}
		if v := one(t, fams, "blvm_hub_handshake_failures_total", "module", "sprayer"); v < 1 {
			t.Errorf("handshake failures = %v, want >= 1", v)
		}
		if v := one(t, fams, "blvm_hub_connections_total", "module", "sprayer"); v < 3 {
			t.Errorf("connections = %v, want >= 3 (greeting, spray, bad handshake)", v)
		}
		if v := one(t, fams, "blvm_hub_connections_open", "module", "sprayer"); v < 1 {
			t.Errorf("open connections = %v, want >= 1", v)
		}
		// block-logger reads the chain as it logs blocks.
		if s := series(fams, "blvm_hub_requests_total", "module", "block-logger", "code", "OK"); len(s) == 0 {
			t.Error("block-logger has no OK requests")
		}
		one(t, fams, "blvm_hub_events_dropped_total", "module", "block-logger")
		one(t, fams, "blvm_hub_log_bytes_total", "module", "block-logger")
		one(t, fams, "blvm_hub_log_dropped_total", "module", "block-logger")
	})

	t.Run("cgroup figures", func(t *testing.T) {
		if v := one(t, fams, "blvm_module_cpu_throttled_periods_total", "module", "sprayer"); v < 1 {
			t.Errorf("sprayer under 0.1 CPU: %v throttled periods, want > 0", v)
		}
		if v := one(t, fams, "blvm_module_cpu_throttled_seconds_total", "module", "sprayer"); v <= 0 {
			t.Errorf("sprayer under 0.1 CPU: %v s throttled, want > 0", v)
		}
		if v := one(t, fams, "blvm_module_memory_limit_bytes", "module", "stratum-v2"); v <= 0 {
			t.Errorf("running module's memory limit = %v", v)
		}
		// A failed module has no cgroup: no limit of 0, no usage.
		for _, name := range []string{"blvm_module_memory_bytes", "blvm_module_cpu_seconds_total"} {
			if s := series(fams, name, "module", "crasher"); len(s) != 0 {
				t.Errorf("failed module reports %s = %v", name, s)
			}
		}
		for _, v := range series(fams, "blvm_module_memory_limit_bytes") {
			if v == 0 {
				t.Error("a module reports a memory limit of 0")
			}
		}
		if v := one(t, fams, "blvm_module_disk_limit_bytes", "module", "stratum-v2"); v <= 0 {
			t.Errorf("stratum-v2's disk quota = %v", v)
		}
	})

	t.Run("chain", func(t *testing.T) {
		if v := one(t, fams, "blvm_chain_up"); v != 1 {
			t.Errorf("blvm_chain_up = %v", v)
		}
		if h := one(t, fams, "blvm_chain_height", "network", "regtest"); h < 1 {
			t.Errorf("chain height = %v; the dev chain mines every 300 ms", h)
		}
		if age := one(t, fams, "blvm_chain_tip_age_seconds", "network", "regtest"); age < 0 || age > 60 {
			t.Errorf("tip age = %v s", age)
		}
	})

	t.Run("restarts_total never decreases", func(t *testing.T) {
		before := one(t, fams, "blvm_module_restarts_total", "module", "crasher")
		if before < 1 {
			t.Fatalf("crasher restarts_total = %v, want >= 1", before)
		}
		// A stopped module keeps its configured memory limit or none.
		if r := d.cli("stop", "stratum-v2", "merge-mining"); r.code != 0 {
			t.Fatalf("stop: %+v", r)
		}
		// Starting the failed crasher again starts the supervisor's count
		// at 0.
		if r := d.cli("start", "crasher"); r.code != 0 && r.code != 1 {
			t.Fatalf("start crasher: %+v", r)
		}
		time.Sleep(300 * time.Millisecond)
		for i := 0; i < 10; i++ {
			f, _ := d.scrape()
			if v := one(t, f, "blvm_module_restarts_total", "module", "crasher"); v < before {
				t.Fatalf("restarts_total went from %v to %v", before, v)
			}
			for _, v := range series(f, "blvm_module_memory_limit_bytes") {
				if v == 0 {
					t.Fatal("a module reports a memory limit of 0")
				}
			}
			if s := series(f, "blvm_module_memory_limit_bytes", "module", "stratum-v2"); len(s) == 1 && s[0] != 256<<20 {
				t.Errorf("stopped stratum-v2's memory limit = %v, want the configured 256 MiB or none", s[0])
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
