package integration

import (
	"strconv"
	"strings"
	"testing"
)

// TestRootInspectThroughDaemon: `blvm-sandbox inspect NAME` takes the
// policy and pid from the running daemon (no module dir, no node config:
// governance-voter's tier is allowed only by the daemon's config) and
// finds every example module confined as its policy says. A stopped module
// and an unknown one are refused.
func TestRootInspectThroughDaemon(t *testing.T) {
	d := newDaemon(t)
	d.start()
	for _, m := range exampleModules {
		r := d.cli("inspect", m)
		if r.code != 0 || !strings.Contains(r.stdout, "mismatches: 0\n") || strings.Contains(r.stdout, "MISMATCH") || !strings.Contains(r.stdout, "seccomp filters") {
			t.Errorf("inspect %s: exit %d\n%s\n%s", m, r.code, r.stdout, r.stderr)
			continue
		}
		if !strings.Contains(r.stdout, "pid "+strconv.Itoa(d.pid(m))+":") {
			t.Errorf("inspect %s did not inspect the daemon's pid %d:\n%s", m, d.pid(m), r.stdout)
		}
	}
	if r := d.cli("inspect", "no-such-module"); r.code != 2 || !strings.Contains(r.stderr, "no-such-module") {
		t.Errorf("inspect of an unknown module: exit %d: %s", r.code, r.stderr)
	}
	if r := d.cli("stop", "block-logger"); r.code != 0 {
		t.Fatalf("stop: %+v", r)
	}
	if r := d.cli("inspect", "block-logger"); r.code != 1 || !(strings.Contains(r.stderr, "not loaded") || strings.Contains(r.stderr, "not running")) {
		t.Errorf("inspect of a stopped module: exit %d, want 1: %s", r.code, r.stderr)
	}
}
