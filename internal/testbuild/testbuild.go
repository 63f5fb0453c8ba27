// Package testbuild builds the binaries that the root tests and the
// benchmarks run in real containers: the static Landlock shim, the hostile
// test module, and on request others (the CLI, the example modules). Each
// is built once per test binary into one directory that every module's
// mapped uid can search, as bind-mount sources must be reachable from the
// container's user namespace.
package testbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Set is the always-built pair.
type Set struct {
	Dir     string // the directory holding every binary built here
	Shim    string // static Landlock shim
	Hostile string // integration/hostile, the attacking test module
}

const module = "github.com/blvm/blvm-sandbox/"

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{} // output name -> path
)

// Static builds (once) the shim and the hostile module with CGO_ENABLED=0.
func Static(tb testing.TB) Set {
	tb.Helper()
	shim := Build(tb, "blvm-landlock-shim", "cmd/blvm-landlock-shim", false)
	// The runtime finds the container init beside the shim. Static, as
	// make build links it: every container start execs it twice.
	build(tb, "blvm-sandbox-init", "cmd/blvm-sandbox-init", staticCgo)
	hostile := Build(tb, "hostile", "integration/hostile", false)
	return Set{Dir: filepath.Dir(shim), Shim: shim, Hostile: hostile}
}

type linkMode int

const (
	noCgo linkMode = iota
	dynamicCgo
	staticCgo
)

// Build builds package pkg (relative to the module) as name, once, and
// returns its path. With cgo it gets CGO_ENABLED=1 and the seccomp tag, as
// a program that starts containers needs.
func Build(tb testing.TB, name, pkg string, cgo bool) string {
	tb.Helper()
	mode := noCgo
	if cgo {
		mode = dynamicCgo
	}
	return build(tb, name, pkg, mode)
}

func build(tb testing.TB, name, pkg string, mode linkMode) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "blvm-bin-")
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			tb.Fatal(err)
		}
		dir = d
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-trimpath", "-o", out}
	env := append(os.Environ(), "CGO_ENABLED=0")
	switch mode {
	case dynamicCgo:
		args = append(args, "-tags", "seccomp")
		env = append(os.Environ(), "CGO_ENABLED=1")
	case staticCgo:
		args = append(args, "-tags", "seccomp netgo osusergo", "-ldflags", "-linkmode external -extldflags -static")
		env = append(os.Environ(), "CGO_ENABLED=1")
	}
	cmd := exec.Command("go", append(args, module+pkg)...)
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatal(fmt.Errorf("build %s: %v\n%s", pkg, err, b))
	}
	built[name] = out
	return out
}
