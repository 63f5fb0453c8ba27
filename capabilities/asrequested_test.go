package capabilities

import (
	"reflect"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// TestResolveAsRequested: the operator's refusals are granted anyway and
// reported with the same problem a load prints; names that cannot be
// compiled are still errors. Resolve refuses the same module.
func TestResolveAsRequested(t *testing.T) {
	c := mustCatalog(t)
	cfg := nodeconfig.Default()
	cfg.Capabilities.Deny = []string{"read_mempool"}
	m := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "probe",
		Capabilities: []string{"read_blockchain", "governance_vote", "read_mempool"},
		Lines:        map[string]int{"capabilities[1]": 5, "capabilities[2]": 6}}

	set, refusals, err := c.ResolveAsRequested(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Names(); !reflect.DeepEqual(got, []string{"governance_vote", "read_blockchain", "read_mempool"}) {
		t.Errorf("granted as requested %v, want all three", got)
	}
	if len(refusals) != 2 {
		t.Fatalf("refusals %+v, want governance_vote and read_mempool", refusals)
	}
	gv, rm := refusals[0], refusals[1]
	if gv.Capability.Name != "governance_vote" || gv.Why != `tier "govern" is above the operator ceiling "participate"` ||
		gv.Allow != `[modules.probe] allow = ["governance_vote"]` || gv.Problem.Line != 5 || gv.Problem.Field != "capabilities[1]" {
		t.Errorf("governance_vote refusal %+v", gv)
	}
	if rm.Capability.Name != "read_mempool" || !strings.Contains(rm.Why, "[capabilities] deny") || rm.Allow != "remove it from [capabilities] deny" {
		t.Errorf("read_mempool refusal %+v", rm)
	}

	// The load's answer for the same module: both refusals, same words.
	_, err = c.Resolve(m, cfg)
	ps, ok := err.(manifest.Problems)
	if !ok || len(ps) != 2 || ps[0] != gv.Problem || ps[1] != rm.Problem {
		t.Errorf("Resolve = %v, want exactly the two refusals' problems", err)
	}

	// Allowed per module, nothing is refused.
	cfg.Capabilities.Deny = nil
	cfg.Modules = map[string]*nodeconfig.Module{"probe": {Allow: []string{"governance_vote"}}}
	if _, refusals, err := c.ResolveAsRequested(m, cfg); err != nil || len(refusals) != 0 {
		t.Errorf("allowed: refusals %v, err %v", refusals, err)
	}

	// Nothing to compile for an unknown or future name.
	for _, name := range []string{"read_blockchian", "send_transactions"} {
		bad := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "probe", Capabilities: []string{"governance_vote", name}}
		if set, _, err := c.ResolveAsRequested(bad, nodeconfig.Default()); err == nil || set != nil || !strings.Contains(err.Error(), name) ||
			strings.Contains(err.Error(), "governance_vote") {
			t.Errorf("%s: set %v, err %v; want only %s named", name, set, err, name)
		}
	}
}
