package verify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
)

// sign pins the config.toml beside module.toml with the binary, and a
// config changed between two signers drops the first signature by name.
func TestSignSourcePinsConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "module.toml")
	src := []byte("name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\"\n")
	writeFile(t, filepath.Join(dir, "probe"), elftest.Static("bin"))
	writeFile(t, filepath.Join(dir, "config.toml"), []byte(shippedConfig))
	a, err := SignSource(path, src, testKey("alice"), "alice", "2-of-3", filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Manifest.Config; c == nil || c.Hash != sha(shippedConfig) || c.Size != int64(len(shippedConfig)) {
		t.Fatalf("[config] = %+v, want the config.toml's hash and size", c)
	}
	if !strings.Contains(string(a.Source), "[config]\nhash = \""+sha(shippedConfig)+"\"") {
		t.Errorf("rewritten module.toml:\n%s", a.Source)
	}
	// Same config: bob's signature joins alice's.
	b, err := SignSource(path, a.Source, testKey("bob"), "bob", "", "")
	if err != nil || len(b.Manifest.Signatures.Maintainers) != 2 || len(b.Dropped) != 0 {
		t.Fatalf("second signer: %v %+v dropped %v", err, b.Manifest.Signatures, b.Dropped)
	}
	// Changed config: alice's signature no longer covers it.
	writeFile(t, filepath.Join(dir, "config.toml"), []byte("changed = true\n"))
	c, err := SignSource(path, a.Source, testKey("bob"), "bob", "", "")
	if err != nil || len(c.Dropped) != 1 || c.Dropped[0] != "alice" || c.Manifest.Config.Hash != sha("changed = true\n") {
		t.Fatalf("after a config change: %v dropped %v", err, c.Dropped)
	}
	// Pinned, then removed: refused, never silently unpinned.
	os.Remove(filepath.Join(dir, "config.toml"))
	if _, err := SignSource(path, c.Source, testKey("bob"), "bob", "", ""); err == nil || !strings.Contains(err.Error(), "config.toml is missing") {
		t.Fatalf("missing pinned config: %v", err)
	}
	// A config.toml that is not a regular file is refused by name.
	os.Mkdir(filepath.Join(dir, "config.toml"), 0o755)
	if _, err := SignSource(path, c.Source, testKey("bob"), "bob", "", ""); err == nil || !strings.Contains(err.Error(), "config.toml: is a directory") {
		t.Fatalf("config.toml directory: %v", err)
	}
}
