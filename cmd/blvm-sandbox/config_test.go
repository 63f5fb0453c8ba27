package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigMistakesAreErrors: a node config whose setting would silently
// not apply is refused by every command that reads it, at its line.
func TestConfigMistakesAreErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ name, src, want string }{
		{"global deny under [modules]", "[capabilities]\nmax_tier = \"participate\"\n[modules]\ndeny = [\"publish_events\"]\n",
			"node.toml:4: modules.deny: an array is not a table: [modules] holds only [modules.<name>] tables (did you mean [capabilities] deny"},
		{"min_landlock_abi below the scopes", "[sandbox]\nmin_landlock_abi = 3\n",
			"node.toml:2: sandbox.min_landlock_abi: 3: want 6 or more"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "node.toml")
			if err := os.WriteFile(cfg, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				append(append([]string{"explain", "--node-config", cfg}, offline...), examples["stratum-v2"]),
				{"verify", "--node-config", cfg, examples["stratum-v2"]},
				{"run", "--node-config", cfg, examples["stratum-v2"]},
			} {
				_, errOut, code := cli(t, args...)
				if code != exitBadInput || !strings.Contains(errOut, tt.want) {
					t.Errorf("%s: exit %d, stderr %q; want 2 and %q", args[0], code, errOut, tt.want)
				}
			}
		})
	}
}

// TestModuleConfigTypoIsFlagged: a [modules.<name>] key the module's
// config_schema does not name is flagged by explain and verify, as at load,
// at its line in the node config.
func TestModuleConfigTypoIsFlagged(t *testing.T) {
	mod, nodeConfig, root := signedModule(t)
	cfg, err := os.ReadFile(nodeConfig)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Count(string(cfg), "\n") + 3
	typo := string(cfg) + "\n[modules.probe]\npool_fee_percnt = 2\n"
	if err := os.WriteFile(nodeConfig, []byte(typo), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`node.toml:%d: modules.probe.pool_fee_percnt: probe: config key "pool_fee_percnt" is not in its config_schema`, line)

	out, errOut, code := cli(t, "verify", "--node-config", nodeConfig, "--root", root, mod)
	if code != 0 || !strings.Contains(out, "warn") || !strings.Contains(out, want) {
		t.Errorf("verify = exit %d; want 0 and a warning %q:\n%s%s", code, want, out, errOut)
	}
	explainArgs := append(append([]string{"explain", "--node-config", nodeConfig}, offline...), mod)
	out, errOut, code = cli(t, explainArgs...)
	if code != 0 || !strings.Contains(errOut, "warning: "+want) || !strings.Contains(out, "Module probe 1.0.0") {
		t.Errorf("explain = exit %d; want 0, the policy and the warning %q:\n%s", code, want, errOut)
	}

	// Without the stray key nothing is flagged.
	if err := os.WriteFile(nodeConfig, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, _ := cli(t, explainArgs...); strings.Contains(errOut, "warning") {
		t.Errorf("explain warns with no stray key: %s", errOut)
	}
	if out, _, _ := cli(t, "verify", "--node-config", nodeConfig, "--root", root, mod); strings.Contains(out, "warn") {
		t.Errorf("verify warns with no stray key:\n%s", out)
	}
}
