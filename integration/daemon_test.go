package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/internal/testbuild"
	"github.com/blvm/blvm-sandbox/runtime"
	"github.com/blvm/blvm-sandbox/runtime/quota"
)

// The daemon with the example modules, driven from outside through the
// admin socket, the way an operator drives it.

var exampleModules = []string{"stratum-v2", "merge-mining", "block-logger", "governance-voter"}

// buildExamples builds the example modules statically next to the CLI.
func buildExamples(t *testing.T) {
	t.Helper()
	buildCLI(t)
	for _, m := range exampleModules {
		testbuild.Build(t, "example-"+m, "examples/"+m, false)
	}
}

type daemon struct {
	t      *testing.T
	bin    string
	dir    string // node.toml, keys, modules, admin.sock
	root   string
	cmd    *exec.Cmd
	log    *syncbuf.Buffer
	client *admin.Client
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// newDaemon signs the examples (and a module that crashes at once) 2-of-3
// with fresh keys into a modules dir and writes the node config.
func newDaemon(t *testing.T) *daemon {
	t.Helper()
	requireRoot(t)
	buildExamples(t)
	bin := buildCLI(t)
	dir, err := os.MkdirTemp("", "blvm-up-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	d := &daemon{t: t, bin: bin, dir: dir, root: filepath.Join(dir, "root"), log: &syncbuf.Buffer{}}
	d.client = &admin.Client{Socket: filepath.Join(dir, "admin.sock")}
	modules := filepath.Join(dir, "modules")
	var pins []string
	for _, k := range []string{"alice", "bob", "carol"} {
		r := runCLI(t, bin, "keys", "generate", "--out", filepath.Join(dir, k+".key"))
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		pins = append(pins, fmt.Sprintf("  { name = %q, public_key = %q },", k, lines[len(lines)-1]))
	}
	sign := func(name string) {
		for _, k := range []string{"alice", "bob"} {
			if r := runCLI(t, bin, "sign", "--key", filepath.Join(dir, k+".key"), "--binary", filepath.Join(modules, name, name), "--threshold", "2-of-3", filepath.Join(modules, name)); r.code != 0 {
				t.Fatalf("sign %s: %+v", name, r)
			}
		}
	}
	for _, m := range exampleModules {
		dst := filepath.Join(modules, m)
		os.MkdirAll(dst, 0o755)
		copyFile(t, filepath.Join("..", "examples", m, "module.toml"), filepath.Join(dst, "module.toml"), 0o644)
		copyFile(t, filepath.Join("..", "examples", m, "config.toml"), filepath.Join(dst, "config.toml"), 0o644)
		copyFile(t, filepath.Join(binaries.Dir, "example-"+m), filepath.Join(dst, m), 0o755)
		sign(m)
	}
	crasher := filepath.Join(modules, "crasher")
	os.MkdirAll(crasher, 0o755)
	copyFile(t, binaries.Hostile, filepath.Join(crasher, "crasher"), 0o755)
	os.WriteFile(filepath.Join(crasher, "module.toml"), []byte("name = \"crasher\"\nversion = \"1.0.0\"\nentry_point = \"crasher\"\ncapabilities = [\"read_blockchain\"]\n[config_schema]\nattack = \"\"\narg = \"\"\n"), 0o644)
	os.WriteFile(filepath.Join(crasher, "config.toml"), []byte("attack = \"exit\"\narg = \"1\"\n"), 0o644)
	sign("crasher")

	cfg := fmt.Sprintf(`[node]
version = "0.1.0"
database_backend = "redb"

[paths]
root = %q
modules_dir = %q

[sandbox]
restart_delay = "100ms"
restart_max_delay = "400ms"
max_crashes = 3
crash_window = "1m"
stop_grace = "2s"

[trust]
threshold = "2-of-3"
maintainers = [
%s
]

[modules.governance-voter]
allow = ["governance_vote"]

[modules.stratum-v2]
pool_fee_percent = 7
`, d.root, modules, strings.Join(pins, "\n"))
	os.WriteFile(filepath.Join(dir, "node.toml"), []byte(cfg), 0o644)
	t.Cleanup(func() {
		d.stop()
		if left, err := (runtime.Layout{Root: d.root}).Orphans(); err != nil || len(left) != 0 {
			t.Errorf("orphans after the daemon stopped: %v %v", left, err)
			// Take the images off anyway: removing the tree under a mount
			// would leave it (and its loop device) on the host for good.
			if err := quota.Recover(runtime.Layout{Root: d.root}.ImagesDir()); err != nil {
				t.Errorf("recover the quota images: %v", err)
			}
		}
		os.RemoveAll(dir)
	})
	return d
}

// start runs `blvm-sandbox up` and waits until the modules are running.
func (d *daemon) start() {
	d.t.Helper()
	d.cmd = exec.Command(d.bin, "up", "--config", filepath.Join(d.dir, "node.toml"),
		"--admin-socket", d.client.Socket, "--block-interval", "300ms", "--shutdown-timeout", "30s")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.waitFor("every example module running", func(mods []admin.ModuleInfo) bool {
		for _, m := range exampleModules {
			if state(mods, m).State != "running" {
				return false
			}
		}
		return true
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Errorf("daemon exit: %v\n%s", err, d.log.String())
		}
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		d.t.Errorf("daemon did not stop within 60 s")
	}
}

func state(mods []admin.ModuleInfo, name string) admin.ModuleInfo {
	for _, m := range mods {
		if m.Name == name {
			return m
		}
	}
	return admin.ModuleInfo{}
}

func (d *daemon) waitFor(what string, ok func([]admin.ModuleInfo) bool) []admin.ModuleInfo {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mods, err := d.client.Modules(context.Background())
		if err == nil && ok(mods) {
			return mods
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out waiting for %s: %v %+v\ndaemon log:\n%s", what, err, mods, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// loadedOrder is the order of "module loaded" lines in the daemon's log.
func (d *daemon) loadedOrder() []string {
	var out []string
	for _, line := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(line, `msg="module loaded"`) {
			for _, f := range strings.Fields(line) {
				if n, ok := strings.CutPrefix(f, "module="); ok {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

func TestRootDaemon(t *testing.T) {
	d := newDaemon(t)
	d.start()
	ctx := context.Background()

	var events []admin.Event
	var evMu sync.Mutex
	evCtx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	go d.client.Events(evCtx, func(e admin.Event) error {
		evMu.Lock()
		events = append(events, e)
		evMu.Unlock()
		return nil
	})
	seen := func(kind, module string) bool {
		evMu.Lock()
		defer evMu.Unlock()
		return slices.ContainsFunc(events, func(e admin.Event) bool { return e.Kind == kind && e.Module == module })
	}

	t.Run("dependency order", func(t *testing.T) {
		// A module is running (what start waited for) a moment before the
		// manager logs it as loaded.
		order := d.loadedOrder()
		for deadline := time.Now().Add(10 * time.Second); !containsAll(order, exampleModules) && time.Now().Before(deadline); order = d.loadedOrder() {
			time.Sleep(50 * time.Millisecond)
		}
		if slices.Index(order, "stratum-v2") < 0 || slices.Index(order, "merge-mining") < slices.Index(order, "stratum-v2") {
			t.Fatalf("load order %v: merge-mining must follow stratum-v2", order)
		}
	})

	t.Run("config merge", func(t *testing.T) {
		b, err := os.ReadFile(runtime.Layout{Root: d.root}.Config("stratum-v2"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "pool_fee_percent = 7") || !strings.Contains(string(b), `database_backend = "redb"`) {
			t.Fatalf("merged config:\n%s", b)
		}
	})

	t.Run("crash loop ends failed", func(t *testing.T) {
		mods := d.waitFor("crasher failed", func(m []admin.ModuleInfo) bool { return state(m, "crasher").State == "failed" })
		c := state(mods, "crasher")
		if c.Restarts != 2 || !strings.Contains(c.Error, "exited with code 1") {
			t.Fatalf("crasher: %+v", c)
		}
	})

	t.Run("cli", func(t *testing.T) {
		time.Sleep(time.Second) // a few blocks
		r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "cli", "block-logger", "recent", "3")
		if r.code != 0 || !strings.Contains(r.stdout, "HEIGHT") || strings.Count(strings.TrimSpace(r.stdout), "\n") != 3 {
			t.Fatalf("cli block-logger recent 3: %+v", r)
		}
		r = runCLI(t, d.bin, "--admin-socket", d.client.Socket, "cli", "block-logger", "recent", "zero")
		if r.code != 2 {
			t.Fatalf("bad argument: want the module's exit code 2, got %+v", r)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		raw, err := d.client.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("parse /metrics: %v", err)
		}
		value := func(family, module string) float64 {
			for _, m := range families[family].GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "module" && l.GetValue() == module {
						if m.GetGauge() != nil {
							return m.GetGauge().GetValue()
						}
						return m.GetCounter().GetValue()
					}
				}
			}
			return -1
		}
		if value("blvm_module_up", "block-logger") != 1 || value("blvm_hub_denied_total", "block-logger") < 1 ||
			value("blvm_module_memory_bytes", "stratum-v2") <= 0 || value("blvm_hub_requests_total", "merge-mining") < 1 {
			t.Fatalf("metrics: up %v denied %v mem %v requests %v", value("blvm_module_up", "block-logger"),
				value("blvm_hub_denied_total", "block-logger"), value("blvm_module_memory_bytes", "stratum-v2"), value("blvm_hub_requests_total", "merge-mining"))
		}
	})

	t.Run("kill -9 a module", func(t *testing.T) {
		before, _ := d.client.Modules(ctx)
		victim := state(before, "block-logger")
		syscall.Kill(victim.Pid, syscall.SIGKILL)
		after := d.waitFor("block-logger restarted", func(m []admin.ModuleInfo) bool {
			s := state(m, "block-logger")
			return s.State == "running" && s.Pid != victim.Pid
		})
		if s := state(after, "block-logger"); s.Restarts != victim.Restarts+1 || !strings.Contains(s.LastExit, "SIGKILL") {
			t.Errorf("after restart: %+v", s)
		}
		for _, m := range []string{"stratum-v2", "merge-mining", "governance-voter"} {
			if b, a := state(before, m), state(after, m); a.Pid != b.Pid || a.Restarts != b.Restarts || a.State != "running" {
				t.Errorf("%s disturbed: before %+v after %+v", m, b, a)
			}
		}
	})

	t.Run("unload cascades", func(t *testing.T) {
		if _, err := d.client.Unload(ctx, "stratum-v2"); err != nil {
			t.Fatal(err)
		}
		mods, _ := d.client.Modules(ctx)
		for _, m := range []string{"stratum-v2", "merge-mining"} {
			if s := state(mods, m).State; s == "running" {
				t.Errorf("%s still running after stratum-v2 was unloaded", m)
			}
		}
		if state(mods, "block-logger").State != "running" {
			t.Error("block-logger was unloaded too")
		}
		for _, m := range []string{"stratum-v2", "merge-mining"} {
			if _, err := d.client.Start(ctx, m); err != nil {
				t.Fatalf("start %s: %v", m, err)
			}
		}
		d.waitFor("both back", func(m []admin.ModuleInfo) bool {
			return state(m, "stratum-v2").State == "running" && state(m, "merge-mining").State == "running"
		})
	})

	t.Run("lifecycle events", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for !(seen("unloaded", "merge-mining") && seen("unloaded", "stratum-v2") && seen("loaded", "stratum-v2") && seen("loaded", "merge-mining")) {
			if time.Now().After(deadline) {
				evMu.Lock()
				t.Fatalf("events: %+v", events)
			}
			time.Sleep(20 * time.Millisecond)
		}
		evMu.Lock()
		defer evMu.Unlock()
		iMerge := slices.IndexFunc(events, func(e admin.Event) bool { return e.Kind == "unloaded" && e.Module == "merge-mining" })
		iStratum := slices.IndexFunc(events, func(e admin.Event) bool { return e.Kind == "unloaded" && e.Module == "stratum-v2" })
		if iMerge > iStratum {
			t.Errorf("merge-mining must be unloaded before stratum-v2: %+v", events)
		}
	})

	t.Run("daemon kill -9 and restart", func(t *testing.T) {
		mods, _ := d.client.Modules(ctx)
		oldPid := state(mods, "block-logger").Pid
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if left, _ := (runtime.Layout{Root: d.root}).Orphans(); len(left) == 0 {
			t.Fatal("a killed daemon left nothing behind: the recovery check below would prove nothing")
		}
		d.log = &syncbuf.Buffer{}
		d.start()
		if alive(oldPid) {
			t.Errorf("module process %d from the killed daemon is still running", oldPid)
		}
	})
}
