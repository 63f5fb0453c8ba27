package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

// A module whose binary is dynamically linked (gcc's default) is refused
// by sign, verify, install and explain, each naming the loader and the
// fix, instead of failing at start with ENOENT and exit 126.
func TestDynamicBinaryRefusedByEveryCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	base := t.TempDir()
	csrc := filepath.Join(base, "m.c")
	os.WriteFile(csrc, []byte("int main(void) { return 0; }\n"), 0o644)
	built := filepath.Join(base, "probe")
	if out, err := exec.Command(gcc, "-o", built, csrc).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	interp := interpreterOf(t, built)

	dir := filepath.Join(base, "mod")
	os.Mkdir(dir, 0o755)
	// Signed before the binary ships (sign has nothing to read yet), the
	// way a maintainer can pin a binary built elsewhere.
	hash, size, err := verify.HashFile(built)
	if err != nil {
		t.Fatal(err)
	}
	src, err := manifest.RewriteBinary([]byte("name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\"\ncapabilities = [\"read_blockchain\"]\n"), hash, size)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "module.toml"), src, 0o644)
	key := filepath.Join(base, "alice.key")
	out, _, code := cli(t, "keys", "generate", "--out", key)
	if code != 0 {
		t.Fatal("keys generate failed")
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if _, errOut, code := cli(t, "sign", "--key", key, dir); code != 0 {
		t.Fatalf("sign without a binary: exit %d: %s", code, errOut)
	}
	copyTestFile(t, built, filepath.Join(dir, "probe"))
	nodeConfig := filepath.Join(base, "node.toml")
	os.WriteFile(nodeConfig, []byte(fmt.Sprintf("[paths]\nroot = %q\nmodules_dir = %q\n\n[trust]\nthreshold = \"1-of-1\"\nmaintainers = [{ name = \"alice\", public_key = %q }]\n",
		filepath.Join(base, "root"), filepath.Join(base, "modules"), lines[len(lines)-1])), 0o644)

	want := fmt.Sprintf(`module.toml: entry_point "probe": dynamically linked against %s: build with CGO_ENABLED=0 or -static`, interp)
	explainWant := fmt.Sprintf(`entry_point: "probe" dynamically linked against %s: build with CGO_ENABLED=0 or -static`, interp)
	for _, tt := range []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"sign", "--key", key, "--binary", filepath.Join(dir, "probe"), dir}, exitBadInput, want},
		{[]string{"verify", "--node-config", nodeConfig, dir}, exitRefused, want},
		{[]string{"install", "--node-config", nodeConfig, dir}, exitRefused, want},
		{[]string{"explain", "--node-config", nodeConfig, dir}, exitRefused, explainWant},
	} {
		out, errOut, code := cli(t, tt.args...)
		if code != tt.wantCode || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%s: exit %d (want %d), want %q in\n%s\n%s", tt.args[0], code, tt.wantCode, tt.want, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "modules", "probe")); err == nil {
		t.Error("install copied the refused module into the modules dir")
	}
	if entries, _ := os.ReadDir(filepath.Join(base, "root", "store", "sha256")); len(entries) != 0 {
		t.Errorf("the refused binary reached the store: %v", entries)
	}
}

func interpreterOf(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			p.ReadAt(b, 0)
			return strings.TrimRight(string(b), "\x00")
		}
	}
	t.Fatalf("%s has no PT_INTERP: gcc linked it statically?", path)
	return ""
}

func copyTestFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
