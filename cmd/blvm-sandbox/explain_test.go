package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// offline pins the host facts so the output does not depend on this kernel.
var offline = []string{"--arch", "amd64", "--landlock-abi", "7", "--cgroup-version", "1", "--storage-backend", "image"}

func explain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"explain"}, append(append([]string{}, offline...), args...)...), &out, &errb)
	return out.String(), errb.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run `make generate` after an intended change): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file; run `make generate` if the change is intended.\n--- got ---\n%s", path, got)
	}
}

var examples = map[string]string{
	"lightning-network": "../../manifest/testdata/lightning-network.toml",
	"merge-mining":      "../../examples/merge-mining",
	"stratum-v2":        "../../examples/stratum-v2",
}

func TestExplainGolden(t *testing.T) {
	for name, path := range examples {
		t.Run(name, func(t *testing.T) {
			for _, format := range []string{"text", "json", "oci"} {
				out, errOut, code := explain(t, "--format", format, path)
				if code != 0 {
					t.Fatalf("--format %s: exit %d: %s", format, code, errOut)
				}
				golden(t, name+"."+format, out)
			}
		})
	}
}

func TestExplainShowsEveryControlWithItsSource(t *testing.T) {
	out, errOut, code := explain(t, "--format", "json", examples["lightning-network"])
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r struct {
		Controls []struct{ Name, Source, Why string }
		Policy   struct {
			Seccomp struct {
				Rules []struct {
					Syscall string
					Sources []struct{ Source, Reason string }
				}
			}
		}
		LoadRefusals []string `json:"load_refusals"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Controls) < 20 {
		t.Errorf("%d controls, want every control listed", len(r.Controls))
	}
	for _, c := range r.Controls {
		if c.Source == "" || c.Why == "" {
			t.Errorf("control %q has no source or reason", c.Name)
		}
	}
	for _, rule := range r.Policy.Seccomp.Rules {
		if len(rule.Sources) == 0 || rule.Sources[0].Source == "" || rule.Sources[0].Reason == "" {
			t.Errorf("seccomp rule %s has no provenance", rule.Syscall)
		}
	}
	// The seed's placeholders ("sha256:abc123...") fail verification: the
	// report must say the load would be refused, and why.
	joined := strings.Join(r.LoadRefusals, "\n")
	if !strings.Contains(joined, "binary.hash") || !strings.Contains(joined, "public_key") {
		t.Errorf("load refusals %q, want the placeholder hash and keys named", joined)
	}
}

func TestExplainThreshold(t *testing.T) {
	if _, errOut, code := explain(t, "--threshold", "9.9", examples["stratum-v2"]); code != 0 {
		t.Errorf("a lax threshold: exit %d: %s", code, errOut)
	}
	_, errOut, code := explain(t, "--threshold", "0", examples["stratum-v2"])
	if code != 1 || !strings.Contains(errOut, "exposure score") {
		t.Errorf("threshold 0: exit %d, stderr %q; want 1 and the score named", code, errOut)
	}
}

// probeManifest writes a module.toml named name in dir declaring caps (a
// TOML list body) and returns its path.
func probeManifest(t *testing.T, dir, name, caps string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	content := "name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\"\ncapabilities = [" + caps + "]\n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExplainDiff(t *testing.T) {
	dir := t.TempDir()
	narrow := probeManifest(t, dir, "narrow.toml", `"read_blockchain"`)
	wide := probeManifest(t, dir, "wide.toml", `"read_blockchain", "read_mempool"`)
	out, _, code := explain(t, "--diff", narrow, wide)
	if code != 1 || !strings.Contains(out, "+ capability read_mempool") || !strings.Contains(out, "+ hub method mempool.GetMempoolInfo") {
		t.Errorf("narrow -> wide: exit %d\n%s", code, out)
	}
	out, _, code = explain(t, "--diff", wide, narrow)
	if code != 0 || !strings.Contains(out, "- capability read_mempool") {
		t.Errorf("wide -> narrow: exit %d\n%s", code, out)
	}
}

func TestExplainBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "module.toml")
	content := "name = \"Bad Name\"\nversion = \"1.0\"\nentry_point = \"../escape\"\ncapabilities = [\"read_blockchian\"]\ncolour = \"red\"\n"
	if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := explain(t, dir)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr %s", code, errOut)
	}
	for _, want := range []string{"module.toml:1: name", "module.toml:2: version", "module.toml:3: entry_point", "module.toml:5: colour"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, errOut, code := explain(t, filepath.Join(dir, "missing")); code != 2 || errOut == "" {
		t.Errorf("a missing path: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := explain(t, "--format", "yaml", examples["stratum-v2"]); code != 2 || !strings.Contains(errOut, "--format") {
		t.Errorf("an unknown format: exit %d, stderr %q", code, errOut)
	}
}

func TestExplainUnknownCapabilitySuggests(t *testing.T) {
	dir := t.TempDir()
	content := "name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\"\ncapabilities = [\n  \"read_blockchain\",\n  \"read_lightnin\",\n]\n"
	if err := os.WriteFile(filepath.Join(dir, "module.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := explain(t, dir)
	want := `module.toml:6: capabilities[1]: unknown capability "read_lightnin" (did you mean "read_lightning"?)`
	if code != 2 || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, want)
	}
}
