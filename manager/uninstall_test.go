package manager

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/runtime"
)

func uninstallFixture(t *testing.T) (*nodeconfig.Config, runtime.Layout) {
	t.Helper()
	root := t.TempDir()
	cfg := nodeconfig.Default()
	cfg.Paths.Root = root
	cfg.Paths.ModulesDir = filepath.Join(root, "modules")
	l := runtime.Layout{Root: root}
	for _, d := range []string{filepath.Join(cfg.Paths.ModulesDir, "m"), l.Data("m")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, l
}

func TestUninstallKeepsDataUnlessPurge(t *testing.T) {
	cfg, l := uninstallFixture(t)
	removed, err := Uninstall("m", cfg, UninstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != filepath.Join(cfg.Paths.ModulesDir, "m") {
		t.Errorf("removed %v", removed)
	}
	if _, err := os.Stat(filepath.Join(cfg.Paths.ModulesDir, "m")); !os.IsNotExist(err) {
		t.Errorf("module dir still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Data("m"), "f")); err != nil {
		t.Errorf("data gone without --purge: %v", err)
	}
	entries, _ := os.ReadDir(cfg.Paths.ModulesDir)
	if len(entries) != 0 {
		t.Errorf("modules dir holds %v", entries)
	}
	if _, err := Uninstall("m", cfg, UninstallOptions{}); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("second uninstall: %v", err)
	}
	// --purge of a module whose files are gone still removes its data.
	if _, err := Uninstall("m", cfg, UninstallOptions{Purge: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.Data("m")); !os.IsNotExist(err) {
		t.Errorf("data still there after --purge: %v", err)
	}
}

func TestUninstallRefusesLoadedModule(t *testing.T) {
	cfg, l := uninstallFixture(t)
	if err := os.MkdirAll(filepath.Dir(l.Socket("m")), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Socket("m"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Uninstall("m", cfg, UninstallOptions{Purge: true})
	if err == nil || !strings.Contains(err.Error(), "unload it first") {
		t.Fatalf("loaded module uninstalled: %v", err)
	}
	for _, p := range []string{filepath.Join(cfg.Paths.ModulesDir, "m", "f"), filepath.Join(l.Data("m"), "f")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed by a refused uninstall: %v", p, err)
		}
	}
	if _, err := Uninstall("../x", cfg, UninstallOptions{}); err == nil {
		t.Error("a path as a name was accepted")
	}
}
