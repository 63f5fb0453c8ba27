package loader

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

func mustManifest(t *testing.T, src string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.ParseBytes("module.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	out := map[string]any{}
	if _, err := toml.Decode(string(b), &out); err != nil {
		t.Fatalf("merged config does not parse: %v\n%s", err, b)
	}
	return out
}

// The seed's example: [modules.selective-sync] database_backend = "redb"
// wins over the node's default backend.
func TestMergeSeedDatabaseBackend(t *testing.T) {
	m := mustManifest(t, `name = "selective-sync"
version = "1.0.0"
entry_point = "selective-sync"
[config_schema]
mode = "sync mode"
`)
	node, err := nodeconfig.ParseBytes("node.toml", []byte(`
[node]
database_backend = "sled"
[modules.selective-sync]
database_backend = "redb"
`))
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := MergeConfig("config.toml", []byte(`mode = "fast"`), m, node)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, out)
	if got["database_backend"] != "redb" || got["mode"] != "fast" {
		t.Fatalf("merged %v", got)
	}
	if len(warnings) != 0 {
		t.Fatalf("warnings %v", warnings)
	}
}

func TestMergeOperatorWinsAndInherits(t *testing.T) {
	m := mustManifest(t, `name = "m"
version = "1.0.0"
entry_point = "m"
[config_schema]
fee = "fee"
pool = "pool settings"
`)
	node, err := nodeconfig.ParseBytes("node.toml", []byte(`
[node]
database_backend = "rocksdb"
[modules.m]
fee = 3
[modules.m.pool]
url = "operator"
`))
	if err != nil {
		t.Fatal(err)
	}
	own := []byte("fee = 1\nextra = true\n[pool]\nurl = \"module\"\nname = \"p\"\n")
	out, warnings, err := MergeConfig("config.toml", own, m, node)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, out)
	pool := got["pool"].(map[string]any)
	if got["fee"] != int64(3) || pool["url"] != "operator" || pool["name"] != "p" || got["database_backend"] != "rocksdb" {
		t.Fatalf("merged %v", got)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"extra"`) {
		t.Fatalf("warnings %v, want one naming extra", warnings)
	}
}

func TestMergeBadModuleConfig(t *testing.T) {
	m := mustManifest(t, "name = \"m\"\nversion = \"1.0.0\"\nentry_point = \"m\"\n")
	_, _, err := MergeConfig("/mods/m/config.toml", []byte("fee = = 1"), m, nodeconfig.Default())
	if err == nil || !strings.Contains(err.Error(), "/mods/m/config.toml") {
		t.Fatalf("error %v, want one naming the file", err)
	}
}
