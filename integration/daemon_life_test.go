package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/manager"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/runtime"
)

// The daemon's life as an operator and systemd see it: one owner per root,
// live install, load and reload, exit codes and readiness. Every check
// drives the real binary from outside and looks at the host side.

// pids maps each running example module to its host pid (the crasher's
// comes and goes).
func pids(mods []admin.ModuleInfo) map[string]int {
	out := map[string]int{}
	for _, m := range mods {
		if m.State == "running" && slices.Contains(exampleModules, m.Name) {
			out[m.Name] = m.Pid
		}
	}
	return out
}

// signedSleeper writes a module that says hello and sleeps, at version,
// signed 2-of-3 with the daemon's pinned keys, into a dir of its own.
func (d *daemon) signedSleeper(name, version string) string {
	d.t.Helper()
	dir := filepath.Join(d.dir, "src", name+"-"+version)
	os.MkdirAll(dir, 0o755)
	copyFile(d.t, binaries.Hostile, filepath.Join(dir, name), 0o755)
	os.WriteFile(filepath.Join(dir, "module.toml"), []byte(fmt.Sprintf("name = %q\nversion = %q\nentry_point = %q\ncapabilities = [\"read_blockchain\"]\n[config_schema]\nattack = \"\"\narg = \"\"\n", name, version, name)), 0o644)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("attack = \"sleep\"\narg = \"10m\"\n"), 0o644)
	for _, k := range []string{"alice", "bob"} {
		if r := runCLI(d.t, d.bin, "sign", "--key", filepath.Join(d.dir, k+".key"), "--binary", filepath.Join(dir, name), "--threshold", "2-of-3", dir); r.code != 0 {
			d.t.Fatalf("sign %s: %+v", name, r)
		}
	}
	return dir
}

// editConfig rewrites the daemon's node.toml with edit applied.
func (d *daemon) editConfig(edit func(string) string) {
	d.t.Helper()
	path := filepath.Join(d.dir, "node.toml")
	b, err := os.ReadFile(path)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// upAgain runs a second `blvm-sandbox up` to its end (or kills it after
// 20 s) and returns how it ended.
func upAgain(t *testing.T, bin, config, socket string) cliRun {
	t.Helper()
	return runCLITimeout(t, 20*time.Second, bin, "up", "--config", config, "--admin-socket", socket, "--shutdown-timeout", "10s")
}

// A `run` with the daemon's own config, a second `up`, and an embedding
// program's manager.New are refused, naming the daemon's pid; the daemon's
// modules keep their pids and sockets.
func TestRootDaemonLifeOneOwnerPerRoot(t *testing.T) {
	d := newDaemon(t)
	d.start()
	ctx := context.Background()
	before, _ := d.client.Modules(ctx)
	layout := runtime.Layout{Root: d.root}
	owner := "pid " + strconv.Itoa(d.cmd.Process.Pid)

	t.Run("run with the daemon's config", func(t *testing.T) {
		src := d.signedSleeper("visitor", "1.0.0")
		r := runCLITimeout(t, 30*time.Second, d.bin, "run", "--node-config", filepath.Join(d.dir, "node.toml"), "--timeout", "5s", src)
		if r.code == 0 || !strings.Contains(r.stderr, owner) || !strings.Contains(r.stderr, "--root") {
			t.Fatalf("run on the daemon's root: exit %d, stderr %q; want non-zero naming %s and --root", r.code, r.stderr, owner)
		}
		t.Logf("run: exit %d: %s", r.code, r.stderr)
	})
	t.Run("a second up", func(t *testing.T) {
		r := upAgain(t, d.bin, filepath.Join(d.dir, "node.toml"), filepath.Join(d.dir, "second.sock"))
		if r.code == 0 || !strings.Contains(r.stderr, owner) {
			t.Fatalf("second up: exit %d, stderr %q; want non-zero naming %s", r.code, r.stderr, owner)
		}
		t.Logf("second up: exit %d: %s", r.code, r.stderr)
		if _, err := os.Lstat(filepath.Join(d.dir, "second.sock")); err == nil {
			t.Error("the refused daemon left its admin socket behind")
		}
	})
	t.Run("manager.New in an embedding program", func(t *testing.T) {
		cfg, err := nodeconfig.Parse(filepath.Join(d.dir, "node.toml"))
		if err != nil {
			t.Fatal(err)
		}
		host, _ := runtime.DetectHost("/sys/fs/cgroup", d.root)
		chain, err := devchain.Open(filepath.Join(t.TempDir(), "chain.db"), devchain.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer chain.Close()
		h := hub.New(chain, hub.Config{NodeVersion: cfg.Node.Version})
		defer h.Close()
		_, err = manager.New(manager.Options{Config: cfg, Shim: binaries.Shim, Host: host, Hub: h})
		var busy *runtime.RootBusyError
		if !errors.As(err, &busy) || busy.Pid != d.cmd.Process.Pid {
			t.Fatalf("manager.New on a live root: %v; want a RootBusyError naming pid %d", err, d.cmd.Process.Pid)
		}
	})

	time.Sleep(time.Second) // a killed module would be restarting by now
	after, _ := d.client.Modules(ctx)
	for _, m := range exampleModules {
		b, a := state(before, m), state(after, m)
		if a.State != "running" || a.Pid != b.Pid || a.Restarts != b.Restarts {
			t.Errorf("%s disturbed: before %+v, after %+v", m, b, a)
		}
		if fi, err := os.Lstat(layout.Socket(m)); err != nil || fi.Mode().Type() != os.ModeSocket {
			t.Errorf("%s: hub socket %s: %v", m, layout.Socket(m), err)
		}
	}
}

// SIGHUP and `reload` apply a changed node config: only the modules whose
// settings changed restart (and what requires them), a disabled module
// stops, an enabled one starts, the others keep their pids; a bad config
// changes nothing and says where it is wrong.
func TestRootDaemonLifeReload(t *testing.T) {
	d := newDaemon(t)
	d.start()
	ctx := context.Background()
	before := pids(d.waitFor("examples up", func(m []admin.ModuleInfo) bool { return len(pids(m)) >= len(exampleModules) }))

	d.editConfig(func(s string) string {
		s = strings.Replace(s, "pool_fee_percent = 7", "pool_fee_percent = 9", 1)
		return strings.Replace(s, "[modules.governance-voter]\n", "[modules.governance-voter]\nenabled = false\n", 1)
	})
	d.cmd.Process.Signal(syscall.SIGHUP)
	after := pids(d.waitFor("stratum-v2 and merge-mining restarted, governance-voter stopped", func(m []admin.ModuleInfo) bool {
		p := pids(m)
		return p["stratum-v2"] != 0 && p["stratum-v2"] != before["stratum-v2"] &&
			p["merge-mining"] != 0 && p["merge-mining"] != before["merge-mining"] && state(m, "governance-voter").State == "stopped"
	}))
	if after["block-logger"] != before["block-logger"] {
		t.Errorf("block-logger restarted (pid %d -> %d) though nothing of it changed", before["block-logger"], after["block-logger"])
	}
	if b, err := os.ReadFile(runtime.Layout{Root: d.root}.Config("stratum-v2")); err != nil || !strings.Contains(string(b), "pool_fee_percent = 9") {
		t.Errorf("stratum-v2's merged config after reload: %q %v", b, err)
	}
	if d.cmd.ProcessState != nil || !strings.Contains(d.log.String(), `action=restarted reason="requires stratum-v2"`) {
		t.Errorf("after SIGHUP: exited %v; log:\n%s", d.cmd.ProcessState, d.log.String())
	}

	t.Run("a bad config changes nothing", func(t *testing.T) {
		d.editConfig(func(s string) string { return s + "\n[limits]\nmemory_bytes = \"lots\"\n" })
		lines := strings.Count(mustRead(t, filepath.Join(d.dir, "node.toml")), "\n")
		r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "reload")
		if r.code != 2 || !strings.Contains(r.stderr, fmt.Sprintf("node.toml:%d", lines)) || !strings.Contains(r.stderr, "nothing changed") {
			t.Fatalf("reload of a bad config: exit %d, stderr %q; want 2 naming node.toml:%d", r.code, r.stderr, lines)
		}
		mods, _ := d.client.Modules(ctx)
		if now := pids(mods); !maps.Equal(now, after) {
			t.Errorf("a refused reload changed the modules: %v -> %v", after, now)
		}
	})
	t.Run("reload command", func(t *testing.T) {
		d.editConfig(func(s string) string {
			s = strings.Replace(s, "\n[limits]\nmemory_bytes = \"lots\"\n", "", 1)
			return strings.Replace(s, "enabled = false\n", "", 1)
		})
		r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "reload")
		if r.code != 0 {
			t.Fatalf("reload: %+v", r)
		}
		t.Logf("reload:\n%s", r.stdout)
		for _, want := range [][]string{{"governance-voter", "started"}, {"block-logger", "unchanged"}, {"stratum-v2", "unchanged"}} {
			if !slices.ContainsFunc(strings.Split(r.stdout, "\n"), func(l string) bool {
				f := strings.Fields(l)
				return len(f) >= 2 && f[0] == want[0] && f[1] == want[1]
			}) {
				t.Errorf("reload output lacks %v:\n%s", want, r.stdout)
			}
		}
		mods, _ := d.client.Modules(ctx)
		now := pids(mods)
		if now["governance-voter"] == 0 || now["block-logger"] != after["block-logger"] || now["stratum-v2"] != after["stratum-v2"] {
			t.Errorf("after reload: %v (before %v)", now, after)
		}
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A module installed while the daemon runs loads by name; a new version
// installed through the admin API runs after a restart, and ps shows the
// version that runs at every step.
func TestRootDaemonLifeInstallAndLoad(t *testing.T) {
	d := newDaemon(t)
	d.start()
	ctx := context.Background()
	r := runCLI(t, d.bin, "install", "--node-config", filepath.Join(d.dir, "node.toml"), d.signedSleeper("sleeper", "1.0.0"))
	if r.code != 0 {
		t.Fatalf("install: %+v", r)
	}
	if r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "load", "sleeper"); r.code != 0 {
		t.Fatalf("load after install: %+v", r)
	}
	mods := d.waitFor("sleeper running", func(m []admin.ModuleInfo) bool { return state(m, "sleeper").State == "running" })
	first := state(mods, "sleeper")
	if first.Version != "1.0.0" {
		t.Fatalf("sleeper: %+v", first)
	}

	res, err := d.client.Install(ctx, d.signedSleeper("sleeper", "1.1.0"), false)
	if err != nil || res.Version != "1.1.0" || res.Running != "1.0.0" {
		t.Fatalf("install 1.1.0 through the daemon: %+v %v", res, err)
	}
	mods, _ = d.client.Modules(ctx)
	if s := state(mods, "sleeper"); s.Version != "1.0.0" || s.Pid != first.Pid {
		t.Errorf("before the restart ps must show the version that runs, 1.0.0: %+v", s)
	}
	if _, err := d.client.Restart(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	mods = d.waitFor("sleeper 1.1.0 running", func(m []admin.ModuleInfo) bool {
		s := state(m, "sleeper")
		return s.State == "running" && s.Pid != first.Pid
	})
	if s := state(mods, "sleeper"); s.Version != "1.1.0" {
		t.Errorf("after the restart: %+v, want 1.1.0", s)
	}
	if b, err := os.ReadFile(runtime.Layout{Root: d.root}.Config("sleeper")); err != nil || !strings.Contains(string(b), "sleep") {
		t.Errorf("merged config of sleeper: %q %v", b, err)
	}
}

// Two `start NAME` at once leave the module running and served by the hub.
func TestRootDaemonLifeConcurrentStart(t *testing.T) {
	d := newDaemon(t)
	d.start()
	ctx := context.Background()
	for round := range 3 {
		if _, err := d.client.Stop(ctx, "block-logger"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = d.client.Start(ctx, "block-logger") }()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Errorf("round %d: concurrent starts: %v / %v", round, errs[0], errs[1])
		}
		mods := d.waitFor("block-logger running", func(m []admin.ModuleInfo) bool { return state(m, "block-logger").State == "running" })
		pid := state(mods, "block-logger").Pid
		time.Sleep(700 * time.Millisecond) // a few blocks for its CLI to show
		mods, _ = d.client.Modules(ctx)
		if s := state(mods, "block-logger"); s.State != "running" || s.Pid != pid {
			t.Fatalf("round %d: block-logger after the concurrent starts: %+v", round, s)
		}
		// Its hub socket is still attached: its CLI answers through it.
		if r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "cli", "block-logger", "recent", "1"); r.code != 0 {
			t.Fatalf("round %d: block-logger's CLI: %+v", round, r)
		}
		// The hub still serves its socket: a restart connects again.
		syscall.Kill(pid, syscall.SIGKILL)
		d.waitFor("block-logger restarted after SIGKILL", func(m []admin.ModuleInfo) bool {
			s := state(m, "block-logger")
			return s.State == "running" && s.Pid != pid
		})
	}
}

// The daemon exits non-zero when its admin API cannot start, and refuses
// at once as a non-root user.
func TestRootDaemonLifeExitCodes(t *testing.T) {
	d := newDaemon(t)

	t.Run("not root", func(t *testing.T) {
		// A copy the nobody user can execute, beside the shim it looks for.
		dir, _ := os.MkdirTemp("", "blvm-nobody-")
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		copyFile(t, d.bin, filepath.Join(dir, "blvm-sandbox"), 0o755)
		copyFile(t, binaries.Shim, filepath.Join(dir, "blvm-landlock-shim"), 0o755)
		copyFile(t, filepath.Join(d.dir, "node.toml"), filepath.Join(dir, "node.toml"), 0o644)
		sock := filepath.Join(dir, "admin.sock")
		cmd := exec.Command(filepath.Join(dir, "blvm-sandbox"), "up", "--config", filepath.Join(dir, "node.toml"), "--admin-socket", sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out := &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("up as uid 65534 still running after 10 s:\n%s", out.String())
		}
		if code := cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(out.String(), "must run as root") || !strings.Contains(out.String(), "uid 65534") {
			t.Fatalf("up as uid 65534: exit %d after %s: %s", code, time.Since(start), out.String())
		}
		if _, err := os.Stat(d.root); err == nil {
			t.Errorf("the refused daemon created its root %s", d.root)
		}
	})

	d.start()
	t.Run("another daemon on the admin socket", func(t *testing.T) {
		other := filepath.Join(d.dir, "other.toml")
		os.WriteFile(other, []byte(strings.Replace(mustRead(t, filepath.Join(d.dir, "node.toml")), d.root, d.root+"-other", 1)), 0o644)
		defer os.RemoveAll(d.root + "-other")
		r := upAgain(t, d.bin, other, d.client.Socket)
		if r.code == 0 || !strings.Contains(r.stderr, "another daemon is listening") {
			t.Fatalf("second daemon on a busy socket: exit %d, stderr %q", r.code, r.stderr)
		}
		if _, err := d.client.Modules(context.Background()); err != nil {
			t.Errorf("the first daemon stopped answering: %v", err)
		}
	})
	t.Run("unsafe socket dir", func(t *testing.T) {
		open, _ := os.MkdirTemp("", "blvm-open-")
		defer os.RemoveAll(open)
		os.Chmod(open, 0o777)
		other := filepath.Join(d.dir, "third.toml")
		os.WriteFile(other, []byte(strings.Replace(mustRead(t, filepath.Join(d.dir, "node.toml")), d.root, d.root+"-third", 1)), 0o644)
		defer os.RemoveAll(d.root + "-third")
		r := upAgain(t, d.bin, other, filepath.Join(open, "admin.sock"))
		if r.code == 0 || !strings.Contains(r.stderr, "writable by group or others") {
			t.Fatalf("admin socket in a 0777 dir: exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// notifySocket is a NOTIFY_SOCKET as systemd makes it: a unixgram socket
// whose datagrams are the daemon's sd_notify messages.
func notifySocket(t *testing.T) (path string, msgs <-chan string) {
	t.Helper()
	dir, _ := os.MkdirTemp("", "blvm-notify-")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path = filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

func nextNotify(t *testing.T, msgs <-chan string, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the daemon within %s", want, timeout)
		}
	}
}

// Under Type=notify the daemon says READY=1 only once the admin API
// answers and the enabled modules were started or refused, with a STATUS=
// of counts; RELOADING=1 then READY=1 around a reload; STOPPING=1 at
// shutdown.
func TestRootDaemonLifeNotifyAndShutdown(t *testing.T) {
	d := newDaemon(t)
	path, msgs := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", path)
	d.start()

	// start waited for the modules; READY=1 must have come no earlier
	// than that, which the state at READY says.
	ready := nextNotify(t, msgs, "READY=1", 30*time.Second)
	if !strings.Contains(ready, "STATUS=5 modules:") || !strings.Contains(ready, "running") {
		t.Errorf("READY without a STATUS of counts: %q", ready)
	}
	// Every example module runs by then; the crasher may be anywhere in
	// its restart loop (starting, restarting, failed), but not "stopped",
	// the state of a module no load has tried yet.
	_, counts, _ := strings.Cut(ready, "modules: ")
	for _, c := range strings.Split(strings.TrimSpace(counts), ", ") {
		f := strings.Fields(c)
		if len(f) != 2 || f[1] == "stopped" {
			t.Errorf("READY=1 before every enabled module was started or refused: %q", ready)
		}
	}
	if !strings.Contains(ready, fmt.Sprintf("%d running", len(exampleModules))) && !strings.Contains(ready, fmt.Sprintf("%d running", len(exampleModules)+1)) {
		t.Errorf("READY=1 before the example modules ran: %q", ready)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	nextNotify(t, msgs, "RELOADING=1\nMONOTONIC_USEC=", 10*time.Second)
	nextNotify(t, msgs, "READY=1", 30*time.Second)

	d.cmd.Process.Signal(syscall.SIGTERM)
	nextNotify(t, msgs, "STOPPING=1", 10*time.Second)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, d.log.String())
	}
}

// An event watcher sees every module unloaded at shutdown before its
// stream ends.
func TestRootDaemonLifeEventsThroughShutdown(t *testing.T) {
	d := newDaemon(t)
	d.start()
	ctx := context.Background()
	var mu sync.Mutex
	var events []admin.Event
	streamEnded := make(chan error, 1)
	subscribed := make(chan struct{})
	go func() {
		streamEnded <- d.client.Events(ctx, func(e admin.Event) error {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
			return nil
		})
	}()
	// Subscribed once a module event arrives: restart one.
	go func() {
		time.Sleep(200 * time.Millisecond)
		d.client.Restart(ctx, "governance-voter")
		close(subscribed)
	}()
	<-subscribed
	d.waitFor("governance-voter back", func(m []admin.ModuleInfo) bool { return state(m, "governance-voter").State == "running" })
	mu.Lock()
	gotRestart := slices.ContainsFunc(events, func(e admin.Event) bool { return e.Kind == "loaded" && e.Module == "governance-voter" })
	mu.Unlock()
	if !gotRestart {
		t.Fatal("the event stream did not carry the restart: the checks below would prove nothing")
	}

	mu.Lock()
	atStop := len(events)
	mu.Unlock()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-streamEnded:
	case <-time.After(60 * time.Second):
		t.Fatal("the event stream did not end with the daemon")
	}
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, d.log.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range exampleModules {
		if !slices.ContainsFunc(events[atStop:], func(e admin.Event) bool { return e.Kind == "unloaded" && e.Module == m }) {
			t.Errorf("no unloaded event for %s after SIGTERM, before the stream ended: %+v", m, events[atStop:])
		}
	}
}
