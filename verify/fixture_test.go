package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// testKey derives the deterministic test key of docs/signing.md: the
// private scalar is SHA-256 of "blvm-sandbox test key <name>".
func testKey(name string) *secp256k1.PrivateKey {
	d := sha256.Sum256([]byte("blvm-sandbox test key " + name))
	return secp256k1.PrivKeyFromBytes(d[:])
}

func pubHex(k *secp256k1.PrivateKey) string {
	return hex.EncodeToString(k.PubKey().SerializeCompressed())
}

// fixture is a module dir with a binary, a manifest pinning it, and a node
// config pinning alice, bob and carol with threshold.
type fixture struct {
	dir  string // module dir
	root string // runtime root
	bin  []byte
	m    *manifest.Manifest
	cfg  *nodeconfig.Config
}

var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newFixture(t testing.TB, threshold string, signers ...string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), root: t.TempDir(), bin: elftest.Static("module binary bytes\n")}
	writeFile(t, filepath.Join(f.dir, "example-module"), f.bin)
	sum := sha256.Sum256(f.bin)
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.m = &manifest.Manifest{
		Name: "example-module", Version: "1.0.0", EntryPoint: "example-module",
		Expires:      &exp,
		Capabilities: []string{"read_blockchain"},
		Dependencies: map[string]string{"blvm-node": ">=0.1.0, <2.0.0"},
		Binary:       &manifest.Binary{Hash: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(f.bin))},
	}
	f.cfg = nodeconfig.Default()
	f.cfg.Paths.Root = f.root
	f.cfg.Trust = nodeconfig.Trust{Threshold: threshold}
	for _, n := range []string{"alice", "bob", "carol"} {
		f.cfg.Trust.Maintainers = append(f.cfg.Trust.Maintainers, nodeconfig.Maintainer{Name: n, PublicKey: pubHex(testKey(n))})
	}
	f.sign(t, signers...)
	return f
}

// sign replaces the manifest's signatures with one entry per signer.
func (f *fixture) sign(t testing.TB, signers ...string) {
	t.Helper()
	f.m.Signatures = &manifest.Signatures{Threshold: f.cfg.Trust.Threshold}
	for _, n := range signers {
		f.addSig(t, n, testKey(n))
	}
}

func (f *fixture) addSig(t testing.TB, name string, k *secp256k1.PrivateKey) {
	t.Helper()
	sig, err := SignManifest(k, f.m)
	if err != nil {
		t.Fatal(err)
	}
	f.m.Signatures.Maintainers = append(f.m.Signatures.Maintainers,
		manifest.Maintainer{Name: name, PublicKey: pubHex(k), Signature: sig})
}

func (f *fixture) verify(t testing.TB) (*Result, error) {
	t.Helper()
	return Verify(f.dir, f.m, f.cfg, Options{Root: f.root, Now: testNow})
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func isRoot() bool { return os.Geteuid() == 0 }
