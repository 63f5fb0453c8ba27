package loader

import (
	"reflect"
	"testing"

	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// TestSchemaWarningsLocateTheOperatorsTypo: the one schema check names a
// key from [modules.<name>] at its node config line, with the schema key
// it is closest to; a key from the module's own config has no such line.
func TestSchemaWarningsLocateTheOperatorsTypo(t *testing.T) {
	m := mustManifest(t, "name = \"m\"\nversion = \"1.0.0\"\nentry_point = \"m\"\n[config_schema]\nfee_percent = \"fee\"\n")
	node, err := nodeconfig.ParseBytes("/etc/blvm/node.toml", []byte("[modules.m]\nfee_percnt = 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, warnings, err := MergeConfig("config.toml", []byte("extra = 1\nfee_percent = 2\n"), m, node)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`m: config key "extra" is not in its config_schema`,
		`node.toml:2: modules.m.fee_percnt: m: config key "fee_percnt" is not in its config_schema (did you mean "fee_percent"?)`,
	}
	if !reflect.DeepEqual(warnings, want) {
		t.Errorf("load warnings\n  %q\nwant\n  %q", warnings, want)
	}
	// verify and explain ask about the operator's table alone.
	if got := SchemaWarnings(m, node, node.ModuleSettings("m").Config); !reflect.DeepEqual(got, want[1:]) {
		t.Errorf("operator warnings %q, want %q", got, want[1:])
	}
}
