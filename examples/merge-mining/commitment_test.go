package main

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

const prev = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"

func TestCommitment(t *testing.T) {
	tmpl := TemplateRef{Height: 42, PrevHash: prev}
	a, err := ComputeCommitment([]string{"namecoin", "rootstock", "namecoin"}, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ComputeCommitment([]string{"rootstock", "namecoin"}, tmpl)
	if a.AuxRoot != b.AuxRoot || strings.Join(a.AuxChains, ",") != "namecoin,rootstock" {
		t.Errorf("order or duplicates changed the commitment: %+v vs %+v", a, b)
	}
	cb, _ := hex.DecodeString(a.CoinbaseCommitment)
	if len(cb) != 44 || hex.EncodeToString(cb[:4]) != "fabe6d6d" || hex.EncodeToString(cb[4:36]) != a.AuxRoot || a.TreeSize != 2 {
		t.Errorf("coinbase commitment %x (tree %d)", cb, a.TreeSize)
	}
	// Binds the template and every chain.
	for name, other := range map[string]struct {
		chains []string
		tmpl   TemplateRef
	}{
		"other prev hash": {[]string{"namecoin", "rootstock"}, TemplateRef{Height: 42, PrevHash: strings.Repeat("0", 63) + "1"}},
		"other height":    {[]string{"namecoin", "rootstock"}, TemplateRef{Height: 43, PrevHash: prev}},
		"other chains":    {[]string{"namecoin"}, tmpl},
		"one more chain":  {[]string{"namecoin", "rootstock", "syscoin"}, tmpl},
	} {
		c, err := ComputeCommitment(other.chains, other.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if c.AuxRoot == a.AuxRoot {
			t.Errorf("%s: same root", name)
		}
	}
	if c, _ := ComputeCommitment([]string{"a", "b", "c"}, tmpl); c.TreeSize != 4 {
		t.Errorf("three chains: tree size %d, want 4", c.TreeSize)
	}
	if _, err := ComputeCommitment(nil, tmpl); err == nil {
		t.Error("no chains accepted")
	}
	if _, err := ComputeCommitment([]string{"x"}, TemplateRef{PrevHash: "abc"}); err == nil {
		t.Error("short prev hash accepted")
	}
}

// The shipped config.toml must decode into Config.
func TestShippedConfig(t *testing.T) {
	var cfg Config
	if err := sdk.LoadConfig("config.toml", &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.AuxChains) == 0 {
		t.Error("config.toml names no aux chains")
	}
}
