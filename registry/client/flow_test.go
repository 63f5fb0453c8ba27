package client

import (
	"testing"
)

func TestInstallWithDependenciesOverHTTP(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	w.publish("base", "1.1.0", nil)
	w.publish("mid", "0.3.0", map[string]string{"base": ">=1.0.0"})
	w.publish("app", "2.0.0", map[string]string{"mid": "^0.3.0", "base": "~1.0.0"})
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	st, err := w.install(c, ResolveOptions{}, "app")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, s := range st {
		order = append(order, s.Entry.Name+"@"+s.Entry.Version)
	}
	// app wants base ~1.0.0, so 1.0.0 and not the newest; dependencies first.
	if got := order; len(got) != 3 || got[0] != "base@1.0.0" || got[1] != "mid@0.3.0" || got[2] != "app@2.0.0" {
		t.Fatalf("plan order = %v", got)
	}
	for name, v := range map[string]string{"app": "2.0.0", "mid": "0.3.0", "base": "1.0.0"} {
		if got := w.installed(name); got != v {
			t.Fatalf("%s installed = %q, want %s", name, got, v)
		}
	}
}
