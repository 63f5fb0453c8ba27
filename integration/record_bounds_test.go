package integration

import (
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/record"
)

// TestRootRecordBoundsMadeUpEventTypes: a module under record subscribes
// to 2560 event types it made up (10 requests of 256, each type new). The
// recorder runs as root, outside the module's memory limit, so it keeps at
// most record.MaxHubNames of them, says how many it left out, and reports.
func TestRootRecordBoundsMadeUpEventTypes(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostileWith(t, bin, "event-spam", "10", []string{"subscribe_events"})
	r := runCLI(t, bin, "record", "--node-config", nodeConfig, "--duration", "20s", "--format", "json", dir)
	if r.code != 0 {
		t.Fatalf("record: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	mod, rep := splitRecordOutput(t, r.stdout)
	if mod.Errno != "ok" {
		t.Fatalf("module: %+v", mod)
	}
	spam := 0
	for _, e := range rep.Events {
		if strings.HasPrefix(e.Name, "spam.") {
			spam++
		}
	}
	if len(rep.Events) > record.MaxHubNames || spam == 0 {
		t.Errorf("the report lists %d event types (%d made up), want at most %d and some", len(rep.Events), spam, record.MaxHubNames)
	}
	if want := "warning: 2048 hub decisions on names past the first 512"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
}
