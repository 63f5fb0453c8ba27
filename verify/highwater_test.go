package verify

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHighWaterCheck(t *testing.T) {
	root := t.TempDir()
	if err := RecordLoaded(root, "m", "1.3.0"); err != nil {
		t.Fatal(err)
	}
	h, err := LoadHighWater(root)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, version string
		allow         bool
		err           string
	}{
		{"m", "1.3.0", false, ""},
		{"m", "1.3.1", false, ""},
		{"m", "2.0.0", false, ""},
		{"m", "1.2.0", false, "rollback: downgrade from 1.3.0 to 1.2.0 refused (pass --allow-downgrade to accept)"},
		{"m", "1.3.0-rc.1", false, "rollback: downgrade from 1.3.0 to 1.3.0-rc.1 refused (pass --allow-downgrade to accept)"},
		{"m", "1.2.0", true, ""},
		{"other", "0.0.1", false, ""},
		{"m", "v1.4", false, "rollback: version"},
	}
	for _, c := range cases {
		err := h.Check(c.name, c.version, c.allow)
		if (c.err == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), c.err)) {
			t.Errorf("Check(%s, %s, %v) = %v, want %q", c.name, c.version, c.allow, err, c.err)
		}
	}
}

func TestHighWaterRecordOnlyRaises(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"1.0.0", "1.10.0", "1.9.0", "1.10.0-rc.1"} {
		if err := RecordLoaded(root, "m", v); err != nil {
			t.Fatal(err)
		}
	}
	if err := RecordLoaded(root, "n", "0.1.0"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(HighWaterPath(root))
	if err != nil {
		t.Fatal(err)
	}
	var marks map[string]string
	if err := json.Unmarshal(data, &marks); err != nil {
		t.Fatal(err)
	}
	if marks["m"] != "1.10.0" || marks["n"] != "0.1.0" || len(marks) != 2 {
		t.Fatalf("marks %v", marks)
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, "trust", ".highwater-*"))
	if len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
}

func TestHighWaterCorruptIsAnError(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "trust"), 0o755)
	for _, content := range []string{"{", `{"m": "one"}`, `[1]`} {
		os.WriteFile(HighWaterPath(root), []byte(content), 0o644)
		if _, err := LoadHighWater(root); err == nil {
			t.Errorf("%q loaded", content)
		}
	}
}

func TestDowngradeRefused(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	f.m.Version = "1.2.0"
	f.sign(t, "alice")
	if err := RecordLoaded(f.root, f.m.Name, "1.3.0"); err != nil {
		t.Fatal(err)
	}
	res, err := f.verify(t)
	want := "rollback: downgrade from 1.3.0 to 1.2.0 refused (pass --allow-downgrade to accept)"
	if err == nil || !strings.Contains(err.Error(), want) || res.OK() {
		t.Fatalf("Verify = %v, want %q", err, want)
	}
	assertNoEntries(t, f.root) // refused before the binary is read

	// The operator accepts it: by flag, or by [modules.<name>] allow_downgrade.
	res, err = Verify(f.dir, f.m, f.cfg, Options{Root: f.root, Now: testNow, AllowDowngrade: true})
	if err != nil || !res.OK() {
		t.Fatalf("with AllowDowngrade: %v", err)
	}
	f.cfg.ModuleSettings(f.m.Name) // zero settings
	f.cfg.Modules[f.m.Name] = f.cfg.ModuleSettings(f.m.Name)
	f.cfg.Modules[f.m.Name].AllowDowngrade = true
	if _, err := f.verify(t); err != nil {
		t.Fatalf("with allow_downgrade in config: %v", err)
	}
	// Accepting a downgrade never lowers the mark.
	h, _ := LoadHighWater(f.root)
	if h.Mark(f.m.Name) != "1.3.0" {
		t.Errorf("mark %q", h.Mark(f.m.Name))
	}
}
