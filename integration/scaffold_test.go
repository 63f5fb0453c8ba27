package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
)

// The author's loop of docs/modules.md, from outside: `new` writes a
// module, plain `go build` builds it inside this checkout, `sign` pins and
// signs it, `install` and `load` put it into a real daemon (`up`), `cli`
// calls its command through the hub and `logs` shows its SDK log lines.
// Then `stop` checks what the SDK promises about SIGTERM: the module is PID
// 1 of its container, sdk.Main cancels its context, and it exits 0 long
// before the grace period would end in SIGKILL.
func TestRootNewScaffold(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	const name = "hello-blocks"
	const grace = 20 * time.Second

	// Inside the checkout, so the scaffold needs no go.mod of its own.
	src, err := os.MkdirTemp(".", "scaffold-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(src) })
	modDir := filepath.Join(src, name)
	if r := runCLI(t, bin, "new", modDir); r.code != 0 || !strings.Contains(r.stdout, "blvm-sandbox cli "+name+" blocks") {
		t.Fatalf("new: %+v", r)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", name, ".")
	build.Dir = modDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the scaffold: %v\n%s", err, out)
	}

	dir, err := os.MkdirTemp("", "blvm-new-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	key := filepath.Join(dir, "author.key")
	r := runCLI(t, bin, "keys", "generate", "--out", key)
	if r.code != 0 {
		t.Fatalf("keys generate: %+v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r := runCLI(t, bin, "sign", "--key", key, "--binary", filepath.Join(modDir, name), modDir); r.code != 0 {
		t.Fatalf("sign: %+v", r)
	}
	nodeConfig := filepath.Join(dir, "node.toml")
	os.WriteFile(nodeConfig, []byte(fmt.Sprintf(`[node]
version = "0.1.0"
database_backend = "redb" # the module's own config.toml says bbolt, and wins

[paths]
root = %q
modules_dir = %q

[sandbox]
stop_grace = %q

[trust]
threshold = "1-of-1"
maintainers = [{ name = "author", public_key = %q }]
`, filepath.Join(dir, "root"), filepath.Join(dir, "modules"), grace.String(), lines[len(lines)-1])), 0o644)
	if r := runCLI(t, bin, "install", "--node-config", nodeConfig, modDir); r.code != 0 {
		t.Fatalf("install: %+v", r)
	}

	d := &daemon{t: t, bin: bin, dir: dir, root: filepath.Join(dir, "root"), log: &syncbuf.Buffer{}}
	d.client = &admin.Client{Socket: filepath.Join(dir, "admin.sock")}
	t.Cleanup(func() { d.stop(); os.RemoveAll(dir) })
	d.cmd = exec.Command(bin, "up", "--config", nodeConfig, "--admin-socket", d.client.Socket, "--block-interval", "300ms", "--shutdown-timeout", "60s")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if r := d.cliUntil(func(r cliRun) bool { return r.code == 0 }, "load", name); r.code != 0 {
		t.Fatalf("load: %+v\n%s", r, d.log.String())
	}
	d.waitFor(name+" running", func(mods []admin.ModuleInfo) bool { return state(mods, name).State == admin.StateRunning })

	// A block arrives every 300 ms: the command reports it and the hash
	// it stored in /data/db.
	r = d.cliUntil(func(r cliRun) bool { return r.code == 0 && !strings.Contains(r.stdout, "seen 0 blocks") }, "cli", name, "blocks")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "seen ") || !strings.Contains(r.stdout, "; last stored ") || strings.HasSuffix(r.stdout, "last stored \n") {
		t.Fatalf("cli %s blocks: %+v\n%s", name, r, d.log.String())
	}
	// The SDK's default logging lands in the operator's `logs`.
	r = d.cliUntil(func(r cliRun) bool { return strings.Contains(r.stdout, "hello, block") }, "logs", name)
	if !strings.Contains(r.stdout, "INFO running module="+name) || !strings.Contains(r.stdout, "INFO hello, block module="+name) {
		t.Fatalf("logs %s: %+v", name, r)
	}

	// PID 1 in its own pid namespace.
	pid := d.pid(name)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	nspid := ""
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			nspid = strings.TrimSpace(v)
		}
	}
	if f := strings.Fields(nspid); len(f) < 2 || f[len(f)-1] != "1" {
		t.Errorf("NSpid of %s = %q, want it to end in 1 (PID 1 of its namespace)", name, nspid)
	}

	// stop sends SIGTERM, then SIGKILL after stop_grace.
	start := time.Now()
	if r := d.cli("stop", name); r.code != 0 {
		t.Fatalf("stop: %+v", r)
	}
	took := time.Since(start)
	mods := d.waitFor(name+" stopped", func(mods []admin.ModuleInfo) bool { return state(mods, name).State == admin.StateStopped })
	info := state(mods, name)
	if took > grace/4 {
		t.Errorf("stop took %v; grace is %v: the module did not exit on SIGTERM", took, grace)
	}
	if info.Exit == nil || info.Exit.Code != 0 || info.Exit.Signal != 0 {
		t.Errorf("last exit %q %+v, want a clean exit 0 (sdk.Main cancelled the context)", info.LastExit, info.Exit)
	}
	t.Logf("stop: %v (grace %v), last exit %q", took, grace, info.LastExit)
}

// cliUntil runs the CLI against the daemon until ok or 30 s pass, and
// returns the last run.
func (d *daemon) cliUntil(ok func(cliRun) bool, args ...string) cliRun {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := d.cli(args...)
		if ok(r) || time.Now().After(deadline) {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
}
