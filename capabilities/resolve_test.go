package capabilities

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

func mustCatalog(t *testing.T) *Catalog {
	t.Helper()
	c, err := Default()
	if err != nil {
		t.Fatalf("load the embedded catalog: %v", err)
	}
	return c
}

func TestCatalogCoversTheSeedAndTheHub(t *testing.T) {
	c := mustCatalog(t)
	for _, name := range []string{
		"read_blockchain", "subscribe_events", "governance_vote", "send_transactions", // the seed's
		"read_utxo", "read_mempool", "publish_events", "register_module_api", "register_cli", "governance_read",
		"read_lightning", // module-provided
	} {
		if c.Capabilities[name] == nil {
			t.Errorf("catalog lacks %q", name)
		}
	}
	if c.Capabilities["send_transactions"].Status != StatusFuture {
		t.Error("send_transactions must be known but future")
	}
	for _, g := range []string{"base-static", "runc-init-tail", "landlock-shim", "unix-client"} {
		if c.Groups[g] == nil || !c.Groups[g].Base {
			t.Errorf("base syscall group %q missing", g)
		}
	}
	if got := c.Capabilities["read_lightning"].HubMethods; len(got) != 1 || got[0] != "modules.Call:lightning-network" {
		t.Errorf("read_lightning grants %v, want only calls to its provider", got)
	}
}

func TestResolve(t *testing.T) {
	c := mustCatalog(t)
	tests := []struct {
		name    string
		caps    []string
		config  func(*nodeconfig.Config)
		granted []string
		errHas  string
	}{
		{name: "seed capabilities", caps: []string{"subscribe_events", "read_blockchain"},
			granted: []string{"read_blockchain", "subscribe_events"}},
		{name: "module-provided", caps: []string{"read_lightning"}, granted: []string{"read_lightning"}},
		{name: "typo gets a suggestion", caps: []string{"read_lightnin"},
			errHas: `module.toml: capabilities[0]: unknown capability "read_lightnin" (did you mean "read_lightning"?)`},
		{name: "future is refused by name", caps: []string{"send_transactions"},
			config: func(c *nodeconfig.Config) { c.Capabilities.MaxTier = "transact" },
			errHas: `capability "send_transactions" is known but not available yet`},
		{name: "above the ceiling", caps: []string{"governance_vote"},
			errHas: `tier "govern" above the operator ceiling "participate"`},
		{name: "per-module allowance", caps: []string{"governance_vote"},
			config: func(c *nodeconfig.Config) {
				c.Modules = map[string]*nodeconfig.Module{"probe": {Allow: []string{"governance_vote"}}}
			},
			granted: []string{"governance_vote"}},
		{name: "operator deny wins over tier", caps: []string{"read_mempool"},
			config: func(c *nodeconfig.Config) { c.Capabilities.Deny = []string{"read_mempool"} },
			errHas: `denied by the operator ([capabilities] deny)`},
		{name: "per-module deny", caps: []string{"read_mempool"},
			config: func(c *nodeconfig.Config) {
				c.Modules = map[string]*nodeconfig.Module{"probe": {Deny: []string{"read_mempool"}}}
			},
			errHas: `denied by the operator ([modules.probe] deny)`},
		{name: "operator-provided capability", caps: []string{"read_oracle"},
			config: func(c *nodeconfig.Config) {
				c.Provided = map[string]nodeconfig.Provided{"read_oracle": {Provider: "oracle", Tier: "observe", Danger: "low"}}
			},
			granted: []string{"read_oracle"}},
		{name: "every refusal at once", caps: []string{"nope", "governance_vote"},
			errHas: "capabilities[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nodeconfig.Default()
			if tc.config != nil {
				tc.config(cfg)
			}
			m := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "probe", Capabilities: tc.caps}
			set, err := c.Resolve(m, cfg)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want it to contain %q", err, tc.errHas)
				}
				if set != nil {
					t.Fatal("a refused module still got a capability set")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected refusal: %v", err)
			}
			if got := strings.Join(set.Names(), ","); got != strings.Join(tc.granted, ",") {
				t.Fatalf("granted %s, want %s", got, strings.Join(tc.granted, ","))
			}
		})
	}
}

func TestOperatorCannotRedefineCatalogNames(t *testing.T) {
	cfg := nodeconfig.Default()
	cfg.Provided = map[string]nodeconfig.Provided{"read_blockchain": {Provider: "evil", Tier: "observe", Danger: "low"}}
	m := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "probe", Capabilities: []string{"read_blockchain"}}
	if _, err := mustCatalog(t).Resolve(m, cfg); err == nil || !strings.Contains(err.Error(), "redefines") {
		t.Fatalf("error %v, want a refusal to redefine read_blockchain", err)
	}
}

func TestLoadRejectsBadCatalogs(t *testing.T) {
	for name, content := range map[string]string{
		"unknown key":    "[capabilities.x]\ntier = \"observe\"\ndanger = \"low\"\nstatus = \"available\"\ncolour = \"red\"\n",
		"bad tier":       "[capabilities.x]\ntier = \"god\"\ndanger = \"low\"\nstatus = \"available\"\n",
		"bad danger":     "[capabilities.x]\ntier = \"observe\"\ndanger = \"meh\"\nstatus = \"available\"\n",
		"dangling group": "[capabilities.x]\ntier = \"observe\"\ndanger = \"low\"\nstatus = \"available\"\nseccomp_groups = [\"nope\"]\n",
		"bad errno":      "[groups.g]\n[[groups.g.rules]]\nsyscall = \"x\"\naction = \"errno\"\nerrno = \"EWHAT\"\n",
		"bad op":         "[groups.g]\n[[groups.g.rules]]\nsyscall = \"x\"\naction = \"allow\"\nargs = [{index = 0, op = \"lt\", value = 1}]\n",
		"provider-less":  "[provided.x]\ntier = \"observe\"\ndanger = \"low\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Load(fstest.MapFS{"a.toml": {Data: []byte(content)}}); err == nil {
				t.Fatal("the catalog loaded")
			}
		})
	}
}
