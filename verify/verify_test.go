package verify

import (
	"strings"
	"testing"
)

func TestVerifyChecksInOrder(t *testing.T) {
	f := newFixture(t, "2-of-3", "alice", "bob", "alice")
	res, err := f.verify(t)
	if err != nil || !res.OK() {
		t.Fatalf("Verify: %v", err)
	}
	want := []struct {
		name string
		ok   bool
		hint string
	}{
		{"signature alice", true, "counts: pinned as alice"},
		{"signature bob", true, "counts: pinned as bob"},
		{"signature alice", false, "does not count: key already counted (pinned as alice)"},
		{"threshold", true, "threshold 2-of-3: 2 distinct pinned keys signed (alice, bob)"},
		{"expiry", true, "signatures valid until 2030-01-01T00:00:00Z"},
		{"node version", true, `blvm-node 0.1.0 satisfies ">=0.1.0, <2.0.0"`},
		{"rollback", true, "1.0.0: first load of example-module"},
		{"config", true, "no config.toml shipped, none pinned"},
		{"hash", true, f.m.Binary.Hash},
		{"executable", true, "example-module: a static executable for "},
	}
	if len(res.Checks) != len(want) {
		t.Fatalf("checks %+v", res.Checks)
	}
	for i, w := range want {
		c := res.Checks[i]
		if c.Name != w.name || c.OK != w.ok || !strings.HasPrefix(c.Detail, w.hint) {
			t.Errorf("check %d = %+v, want %s %v %q", i, c, w.name, w.ok, w.hint)
		}
	}
	// Verify alone does not raise the high-water mark.
	h, _ := LoadHighWater(f.root)
	if h.Mark(f.m.Name) != "" {
		t.Error("Verify recorded a high-water mark")
	}
}

// A refused manifest never gets its binary copied into the store.
func TestVerifyRefusesBeforeReadingBinary(t *testing.T) {
	cases := map[string]func(f *fixture){
		"threshold":    func(f *fixture) { f.m.Signatures.Maintainers = f.m.Signatures.Maintainers[:1] },
		"node version": func(f *fixture) { f.cfg.Node.Version = "2.0.0" },
		"unsigned":     func(f *fixture) { f.m.Signatures = nil },
	}
	wants := map[string]string{
		"threshold":    "threshold 2-of-3 not met: 1 distinct pinned key signed (alice)",
		"node version": `node version: blvm-node 2.0.0 does not satisfy the manifest's constraint ">=0.1.0, <2.0.0"`,
		"unsigned":     "threshold 2-of-3 not met: 0 distinct pinned keys signed (none); the manifest has no [signatures]",
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, "2-of-3", "alice", "bob")
			change(f)
			res, err := f.verify(t)
			if err == nil || res.OK() || res.StorePath != "" {
				t.Fatal("verified")
			}
			if !strings.Contains(err.Error(), wants[name]) {
				t.Errorf("error %q, want %q", err, wants[name])
			}
			for i, name := range []string{"config", "hash"} {
				c := res.Checks[len(res.Checks)-2+i]
				if c.Name != name || c.OK || !strings.HasPrefix(c.Detail, "not checked") {
					t.Errorf("%s line %+v", name, c)
				}
			}
			assertNoEntries(t, f.root)
		})
	}
}

func TestVerifyBadTrustConfig(t *testing.T) {
	f := newFixture(t, "2-of-3", "alice", "bob")
	f.cfg.Trust.Threshold = "" // nothing pinned means nothing verifies
	if _, err := f.verify(t); err == nil || !strings.Contains(err.Error(), "no signature threshold configured") {
		t.Fatalf("Verify = %v", err)
	}
}
