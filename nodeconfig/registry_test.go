package nodeconfig

import (
	"strings"
	"testing"
	"time"
)

func TestParseRegistry(t *testing.T) {
	c, err := ParseBytes("n.toml", []byte(`
[paths]
root = "/srv/blvm"
[registry]
url = "http://127.0.0.1:8080"
root = "/etc/blvm/registry-root.json"
max_staleness = "48h"
marketplace_key = "03bc4fcc662bfe95640fb1277b88ce74c153d049c58c0097187852329feb910d1b"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry.URL != "http://127.0.0.1:8080" || c.Registry.Root != "/etc/blvm/registry-root.json" {
		t.Fatalf("registry = %+v", c.Registry)
	}
	if c.RegistryMaxStaleness() != 48*time.Hour || c.RegistryCacheDir() != "/srv/blvm/registry" {
		t.Fatalf("staleness %s cache %s", c.RegistryMaxStaleness(), c.RegistryCacheDir())
	}
}

func TestParseRegistryRefusals(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"url = \"ftp://x\"\nroot = \"/r.json\"", `n.toml:3: registry.url: "ftp://x": want an http://, https:// or file:// URL`},
		{"url = \"http://x\"", `registry.root: required with registry.url`},
		{"url = \"file://host/x\"\nroot = \"/r.json\"", `registry.url: "file://host/x": a file URL needs an absolute path`},
		{"root = \"rel/root.json\"", `n.toml:3: registry.root: "rel/root.json": want a clean absolute path`},
		{"cache_dir = \"/a/../b\"", `registry.cache_dir: "/a/../b": want a clean absolute path`},
		{"max_staleness = \"-1h\"", `registry.max_staleness: -1h0m0s: want a positive duration`},
		{"marketplace_key = \"02zz\"", `registry.marketplace_key: "02zz"`},
		{"urll = \"http://x\"", `urll`},
	} {
		_, err := ParseBytes("n.toml", []byte("\n[registry]\n"+tc.body+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.body, err, tc.want)
		}
	}
}
