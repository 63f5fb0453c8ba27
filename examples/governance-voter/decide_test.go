package main

import (
	"testing"

	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

func TestDecide(t *testing.T) {
	open := func(id string) *pb.Proposal {
		return &pb.Proposal{Id: id, Open: true, Choices: []string{"Yes", "No", "Abstain"}}
	}
	closed := open("p9")
	closed.Open = false
	cfg := Config{DefaultChoice: "no", Votes: map[string]string{"p1": "yes", "p2": "maybe", "p9": "yes"}}
	tests := []struct {
		name string
		p    *pb.Proposal
		cfg  Config
		want string
	}{
		{"configured, case-insensitive, proposal's spelling", open("p1"), cfg, "Yes"},
		{"configured choice not offered abstains", open("p2"), cfg, ""},
		{"default for unlisted", open("p3"), cfg, "No"},
		{"no default abstains", open("p3"), Config{Votes: cfg.Votes}, ""},
		{"closed never votes", closed, cfg, ""},
		{"default not offered abstains", open("p4"), Config{DefaultChoice: "veto"}, ""},
	}
	for _, tt := range tests {
		d := Decide(tt.p, tt.cfg)
		if d.Choice != tt.want || d.Reason == "" {
			t.Errorf("%s: got %+v, want choice %q with a reason", tt.name, d, tt.want)
		}
	}
}

// The shipped config.toml must decode into Config.
func TestShippedConfig(t *testing.T) {
	var cfg Config
	if err := sdk.LoadConfig("config.toml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Votes["softfork-signal-demo"] != "yes" {
		t.Errorf("votes = %v", cfg.Votes)
	}
}
