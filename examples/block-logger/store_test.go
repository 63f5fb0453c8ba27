package main

import (
	"fmt"
	"testing"

	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

func TestStore(t *testing.T) {
	t.Setenv(sdk.EnvDataDir, t.TempDir())
	t.Setenv(sdk.EnvConfig, "config.toml") // the shipped one: database_backend = "bbolt"
	s := openStore(t)
	for h := uint64(1); h <= 12; h++ {
		if err := s.Put(BlockRecord{Height: h, Hash: fmt.Sprintf("h%d", h), Time: int64(1000 + h), TxCount: int(h)}); err != nil {
			t.Fatal(err)
		}
	}
	// Heights are ordered numerically, not as text: 12 > 9.
	got, err := s.Recent(3)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(heights(got)) != "[12 11 10]" {
		t.Errorf("Recent(3) = %v", heights(got))
	}
	// A reorg replaces height 12; disconnecting the stale hash does nothing.
	s.Put(BlockRecord{Height: 12, Hash: "h12b", TxCount: 1})
	if removed, _ := s.Disconnect(12, "h12"); removed {
		t.Error("disconnected a block that was already replaced")
	}
	if r, ok, _ := s.Get(12); !ok || r.Hash != "h12b" {
		t.Errorf("Get(12) = %+v %v", r, ok)
	}
	if removed, _ := s.Disconnect(12, "h12b"); !removed {
		t.Error("Disconnect(12, h12b) removed nothing")
	}
	// Survives a reopen.
	s.Close()
	s = openStore(t)
	defer s.Close()
	got, _ = s.Recent(100)
	if len(got) != 11 || got[0].Height != 11 || got[0].TxCount != 11 {
		t.Errorf("after reopen: %+v", got)
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	db, err := sdk.OpenDB("blocks.db")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func heights(rs []BlockRecord) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Height
	}
	return out
}

func TestParseRecentArgs(t *testing.T) {
	tests := []struct {
		args    []string
		want    int
		wantErr bool
	}{
		{nil, 10, false},
		{[]string{"3"}, 3, false},
		{[]string{"0"}, 0, true},
		{[]string{"x"}, 0, true},
		{[]string{"1", "2"}, 0, true},
		{[]string{"100000"}, maxRecent, false},
	}
	for _, tt := range tests {
		n, err := parseRecentArgs(tt.args, 10)
		if (err != nil) != tt.wantErr || (!tt.wantErr && n != tt.want) {
			t.Errorf("parseRecentArgs(%v) = %d, %v", tt.args, n, err)
		}
	}
}

// The shipped config.toml must decode into Config.
func TestShippedConfig(t *testing.T) {
	var cfg Config
	if err := sdk.LoadConfig("config.toml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Backfill <= 0 || cfg.Recent <= 0 {
		t.Errorf("cfg = %+v", cfg)
	}
}
