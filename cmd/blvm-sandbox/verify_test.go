package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
)

// cli runs the CLI in-process and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

// signedModule builds a module signed 2-of-3 by freshly generated keys and
// a node config pinning all three, the way an operator would.
func signedModule(t *testing.T) (dir, nodeConfig, root string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "mod")
	root = filepath.Join(base, "root")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var pins []string
	for _, name := range []string{"alice", "bob", "carol"} {
		keyFile := filepath.Join(base, name+".key")
		out, errOut, code := cli(t, "keys", "generate", "--out", keyFile)
		if code != 0 {
			t.Fatalf("keys generate: exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		pins = append(pins, fmt.Sprintf("  { name = %q, public_key = %q },", name, lines[len(lines)-1]))
	}
	manifest := "# the module under test\nname = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\" # a binary\n" +
		"capabilities = [\"read_blockchain\"]\n\n[dependencies]\n\"blvm-node\" = \">=0.1.0\"\n"
	if err := os.WriteFile(filepath.Join(dir, "module.toml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), elftest.Static("the module's bytes\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		_, errOut, code := cli(t, "sign", "--key", filepath.Join(base, name+".key"), "--binary", filepath.Join(dir, "probe"), "--threshold", "2-of-3", dir)
		if code != 0 {
			t.Fatalf("sign as %s: exit %d: %s", name, code, errOut)
		}
	}
	nodeConfig = filepath.Join(base, "node.toml")
	cfg := "[trust]\nthreshold = \"2-of-3\"\nmaintainers = [\n" + strings.Join(pins, "\n") + "\n]\n"
	if err := os.WriteFile(nodeConfig, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, nodeConfig, root
}

func TestSignThenVerifyEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	dir, nodeConfig, root := signedModule(t)
	src, _ := os.ReadFile(filepath.Join(dir, "module.toml"))
	for _, kept := range []string{"# the module under test", "# a binary"} {
		if !bytes.Contains(src, []byte(kept)) {
			t.Errorf("sign lost the comment %q:\n%s", kept, src)
		}
	}
	out, errOut, code := cli(t, "verify", "--node-config", nodeConfig, "--root", root, dir)
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"manifest", "signature alice", "signature bob", "threshold", "capabilities", "node version", "rollback", "hash", "verified probe 1.0.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}

	// A third, redundant signature is reported and refuses nothing.
	base := filepath.Dir(dir)
	if _, errOut, code := cli(t, "sign", "--key", filepath.Join(base, "carol.key"), dir); code != 0 {
		t.Fatalf("sign as carol: exit %d: %s", code, errOut)
	}
	if out, errOut, code := cli(t, "verify", "--node-config", nodeConfig, "--root", root, dir); code != 0 || !strings.Contains(out, "signature carol") {
		t.Fatalf("verify with 3 of 3 signatures: exit %d\n%s\n%s", code, out, errOut)
	}
	src, _ = os.ReadFile(filepath.Join(dir, "module.toml"))

	// Changing one signed value breaks every signature: the refusal names
	// the threshold check.
	changed := bytes.Replace(src, []byte(`version = "1.0.0"`), []byte(`version = "1.0.1"`), 1)
	if err := os.WriteFile(filepath.Join(dir, "module.toml"), changed, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = cli(t, "verify", "--node-config", nodeConfig, "--root", root, dir)
	if code != 1 || !strings.Contains(out, "FAIL") || !strings.Contains(out+errOut, "threshold") {
		t.Errorf("a changed version: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestVerifyNeedsTheOperatorsKeys(t *testing.T) {
	_, errOut, code := cli(t, "verify", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "--node-config") {
		t.Errorf("exit %d, stderr %q; want 2 and --node-config named", code, errOut)
	}
}

// In process, the two reports issue 12 asks of verify: the config check on
// its own line, failing with both hashes when config.toml changed after
// signing; and the hash line failing when the module dir's binary changed
// after a verify that sealed it. integration/integrity_test.go runs the
// same through the real binary.
func TestVerifyReportsTheShippedConfigAndTheDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	dir, nodeConfig, root := signedModule(t)
	base := filepath.Dir(dir)
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte("vote = \"yes\"\n"), 0o644)
	for _, k := range []string{"alice", "bob"} {
		if out, errOut, code := cli(t, "sign", "--key", filepath.Join(base, k+".key"), dir); code != 0 || !strings.Contains(out, "pinned config.toml sha256:") {
			t.Fatalf("sign as %s: exit %d\n%s\n%s", k, code, out, errOut)
		}
	}
	verify := func() (string, string, int) {
		return cli(t, "verify", "--node-config", nodeConfig, "--root", root, dir)
	}
	if out, errOut, code := verify(); code != 0 || !strings.Contains(out, "config.toml sha256:") || !strings.Contains(out, "matches [config]") {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	os.WriteFile(cfgPath, []byte("vote = \"no\"\n"), 0o644)
	out, errOut, code := verify()
	if code != 1 || strings.Count(out+errOut, "sha256:") < 2 || !strings.Contains(errOut, cfgPath+" is sha256:") || !strings.Contains(errOut, "[config] pins sha256:") {
		t.Fatalf("tampered config: exit %d\n%s\n%s", code, out, errOut)
	}
	os.WriteFile(cfgPath, []byte("vote = \"yes\"\n"), 0o644)

	bin := filepath.Join(dir, "probe")
	good, _ := os.ReadFile(bin)
	bad := bytes.Clone(good)
	bad[0] ^= 1
	os.WriteFile(bin, bad, 0o755)
	if out, errOut, code := verify(); code != 1 || !strings.Contains(errOut, "hash: binary sha256:") || strings.Contains(out, "already sealed") {
		t.Fatalf("flipped binary after a sealing verify: exit %d\n%s\n%s", code, out, errOut)
	}
	os.WriteFile(bin, good, 0o755)
	if out, errOut, code := verify(); code != 0 || !strings.Contains(out, "re-read from "+bin) {
		t.Fatalf("restored binary: exit %d\n%s\n%s", code, out, errOut)
	}
}
