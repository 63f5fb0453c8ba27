package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/policy"
)

// TestExplainRecordGolden pins the rows record mode relaxes for an example.
func TestExplainRecordGolden(t *testing.T) {
	out, errOut, code := explain(t, "--record", examples["merge-mining"])
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "merge-mining.record", out)
}

// TestExplainRecordRows checks the changed rows against the normal policy:
// every row explain --record lists is one whose normal treatment is not a
// plain allow, and no plain allow is listed.
func TestExplainRecordRows(t *testing.T) {
	out, errOut, code := explain(t, "--record", "--format", "json", examples["stratum-v2"])
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Module  string
		Default string
		Changes []policy.RecordChange
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	byName := map[string]policy.RecordChange{}
	for _, c := range got.Changes {
		byName[c.Syscall] = c
		if c.Normal == "allow" || c.Record != "notify" {
			t.Errorf("%s: normal %q -> record %q: only what the normal filter does not simply allow goes to the recorder", c.Syscall, c.Normal, c.Record)
		}
	}
	for _, name := range []string{"getpid", "write", "read", "execve", "futex"} {
		if _, ok := byName[name]; ok {
			t.Errorf("%s is listed, but the normal filter allows it unconditionally", name)
		}
	}
	for name, normal := range map[string]string{"ptrace": "errno EPERM", "mlock": "errno ENOSYS (not in the policy)", "clone3": "errno ENOSYS"} {
		if c := byName[name]; c.Normal != normal {
			t.Errorf("%s: normal %q, want %q", name, c.Normal, normal)
		}
	}
	if got.Module != "stratum-v2" || !strings.Contains(got.Default, "ENOSYS") {
		t.Errorf("module %q, default %q", got.Module, got.Default)
	}
}

// Bad input is refused before anything runs, with the flag and the value.
func TestRecordRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "mod")
	os.MkdirAll(mod, 0o755)
	os.WriteFile(filepath.Join(mod, "module.toml"), []byte("name = \"mod\"\nversion = \"1.0.0\"\nentry_point = \"mod\"\n"), 0o644)
	existing := filepath.Join(dir, "taken.toml")
	os.WriteFile(existing, []byte("x"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "0s", mod}, "--duration: 0s is not positive"},
		{[]string{"--format", "yaml", mod}, `--format: unknown format "yaml"`},
		{[]string{"--write", filepath.Join(mod, "module.toml"), mod}, "that is the module's manifest"},
		{[]string{"--write", existing, mod}, "the file exists"},
	} {
		_, errOut, code := cli(t, append([]string{"record", "--node-config", "/nonexistent.toml"}, c.args...)...)
		if code != exitBadInput || !strings.Contains(errOut, c.want) {
			t.Errorf("record %v: exit %d, %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "x" {
		t.Error("record touched an existing file")
	}
}
