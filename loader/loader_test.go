package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/verify"
)

// signedDir writes a module shipping config.toml, signs it as `sign` does
// (which pins the config), and returns its dir and a node config pinning
// the key, whose [modules.probe] sets fee.
func signedDir(t *testing.T, config string) (string, *nodeconfig.Config) {
	t.Helper()
	dir, root := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(dir, "probe"), elftest.Static(""), 0o755)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644)
	key, err := verify.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "module.toml")
	src := "name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\"\ncapabilities = [\"read_blockchain\"]\n[config_schema]\nvote = \"\"\nfee = \"\"\n"
	signed, err := verify.SignSource(path, []byte(src), key, "alice", "1-of-1", filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, signed.Source, 0o644)
	cfg, err := nodeconfig.ParseBytes("node.toml", []byte(fmt.Sprintf(
		"[paths]\nroot = %q\n[trust]\nthreshold = \"1-of-1\"\nmaintainers = [{ name = \"alice\", public_key = %q }]\n[modules.probe]\nfee = 2\n", root, signed.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

var host = policy.Host{Arch: "amd64", LandlockABI: 6, CgroupVersion: 1}

// The merged config is the pinned shipped config with the operator's
// values on top, and module.toml's bytes are kept for install.
func TestPrepareMergesThePinnedConfig(t *testing.T) {
	dir, cfg := signedDir(t, "vote = \"yes\"\nfee = 1\n")
	p, err := Prepare(dir, cfg, Options{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	merged := decode(t, p.Config)
	if merged["vote"] != "yes" || merged["fee"] != int64(2) {
		t.Errorf("merged %v: want the shipped vote and the operator's fee", merged)
	}
	if src, _ := os.ReadFile(filepath.Join(dir, "module.toml")); string(p.ManifestSource) != string(src) {
		t.Error("ManifestSource is not module.toml's bytes")
	}
}

// Changing the shipped config after signing refuses the load, naming the
// config check; an operator value would not have hidden it.
func TestPrepareRefusesAChangedConfig(t *testing.T) {
	dir, cfg := signedDir(t, "vote = \"yes\"\n")
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("vote = \"no\"\n"), 0o644)
	_, err := Prepare(dir, cfg, Options{Host: host})
	if err == nil || !strings.Contains(err.Error(), "probe 1.0.0 refused: config: "+filepath.Join(dir, "config.toml")+" is sha256:") {
		t.Fatalf("Prepare = %v", err)
	}
}

func TestPrepareRefusesASymlinkedManifest(t *testing.T) {
	dir, cfg := signedDir(t, "vote = \"yes\"\n")
	real := filepath.Join(t.TempDir(), "module.toml")
	os.Rename(filepath.Join(dir, "module.toml"), real)
	os.Symlink(real, filepath.Join(dir, "module.toml"))
	if _, err := Prepare(dir, cfg, Options{Host: host}); err == nil || !strings.Contains(err.Error(), "module.toml: is a symlink") {
		t.Fatalf("Prepare = %v", err)
	}
}
