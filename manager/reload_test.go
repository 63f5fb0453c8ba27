package manager

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/verify"
)

func TestKeepDaemonWide(t *testing.T) {
	old := nodeconfig.Default()
	next := nodeconfig.Default()
	next.Paths.Root = "/elsewhere"
	next.Sandbox.StopGrace = 9 * time.Second
	next.Sandbox.DiskBytes = 1 << 30 // per module: applied, not kept
	next.Limits.Pids = 7             // per module too
	warns := keepDaemonWide(old, next)
	if next.Paths.Root != old.Paths.Root || next.Sandbox.StopGrace != old.Sandbox.StopGrace {
		t.Errorf("daemon-wide settings not kept: root %q, stop_grace %s", next.Paths.Root, next.Sandbox.StopGrace)
	}
	if next.Sandbox.DiskBytes != 1<<30 || next.Limits.Pids != 7 {
		t.Errorf("per-module settings were reverted: disk %d, pids %d", next.Sandbox.DiskBytes, next.Limits.Pids)
	}
	if len(warns) != 2 || !strings.Contains(warns[0], "[paths] root") || !strings.Contains(warns[1], "[sandbox] stop_grace") {
		t.Errorf("warnings: %q", warns)
	}
	if w := keepDaemonWide(old, nodeconfig.Default()); len(w) != 0 {
		t.Errorf("an unchanged config warns: %q", w)
	}
}

func prepared(version, store string, config string, mem int64, disk int64) *loader.Prepared {
	p := &policy.Policy{Module: policy.Module{Name: "m", Version: version}}
	p.Cgroup.MemoryBytes.Value = mem
	p.Storage.Bytes.Value = disk
	return &loader.Prepared{
		Manifest: &manifest.Manifest{Name: "m", Version: version},
		Verified: &verify.Result{StorePath: store}, Config: []byte(config), Policy: p,
	}
}

func TestChanged(t *testing.T) {
	base := prepared("1.0.0", "/s/a", "x = 1\n", 64<<20, 1<<30)
	for _, c := range []struct {
		name string
		now  *loader.Prepared
		want []string
	}{
		{"nothing", prepared("1.0.0", "/s/a", "x = 1\n", 64<<20, 1<<30), nil},
		{"config", prepared("1.0.0", "/s/a", "x = 2\n", 64<<20, 1<<30), []string{"config"}},
		{"memory limit", prepared("1.0.0", "/s/a", "x = 1\n", 128<<20, 1<<30), []string{"policy cgroup"}},
		{"disk quota", prepared("1.0.0", "/s/a", "x = 1\n", 64<<20, 2<<30), []string{"policy storage"}},
		{"new version", prepared("1.1.0", "/s/b", "x = 1\n", 64<<20, 1<<30), []string{"version 1.0.0 -> 1.1.0", "binary", "policy module"}},
	} {
		got := changed(base, c.now)
		var parts []string
		if got != "" {
			parts = strings.Split(got, ", ")
		}
		if !slices.Equal(parts, c.want) {
			t.Errorf("%s: changed = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestRediscoveredKeepsARefusalUnlessChanged(t *testing.T) {
	v1 := &manifest.Manifest{Name: "m", Version: "1.0.0"}
	e := &entry{cand: Candidate{Dir: "/mods/m", Manifest: v1}, state: StateRefused, reason: "threshold not met"}
	e.rediscovered(Candidate{Dir: "/mods/m", Manifest: &manifest.Manifest{Name: "m", Version: "1.0.0"}})
	if e.state != StateRefused || e.reason != "threshold not met" {
		t.Errorf("same module: %s %q, want the refusal kept", e.state, e.reason)
	}
	e.rediscovered(Candidate{Dir: "/mods/m", Manifest: &manifest.Manifest{Name: "m", Version: "1.1.0"}})
	if e.state != "stopped" || e.reason != "" || e.cand.Manifest.Version != "1.1.0" {
		t.Errorf("new version: %s %q %s, want stopped with no reason", e.state, e.reason, e.cand.Manifest.Version)
	}
}
