package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/testbuild"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime"
)

// P1 and P2: a verified module in its full policy, from the call to its
// first frame on the socket, against peers that start the same static
// binary with the same mounts and wait for the same first frame.

// built holds the shim and the hostile module, built once (testbuild).
var built testbuild.Set

func buildModule(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	built = testbuild.Static(b)
}

// The catalog is loaded once and shared by every policy, as the manager
// does: a catalog per module would count its strings against each module.
var (
	catalogOnce sync.Once
	theCatalog  *capabilities.Catalog
	catalogErr  error
)

func catalog(b *testing.B) *capabilities.Catalog {
	catalogOnce.Do(func() { theCatalog, catalogErr = capabilities.Default() })
	if catalogErr != nil {
		b.Fatal(catalogErr)
	}
	return theCatalog
}

func compileHostile(b *testing.B, name string, host policy.Host) *policy.Policy {
	b.Helper()
	m, err := manifest.ParseBytes("module.toml", []byte(fmt.Sprintf("name = %q\nversion = \"1.0.0\"\nentry_point = \"hostile\"\ncapabilities = [\"read_blockchain\"]\n", name)))
	if err != nil {
		b.Fatal(err)
	}
	cat := catalog(b)
	cfg := nodeconfig.Default()
	set, err := cat.Resolve(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	p, err := policy.Compile(m, set, cfg, host)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

const sleepConfig = "attack = \"sleep\"\narg = \"600s\"\n"

func newSupervisor(b *testing.B, restart runtime.RestartPolicy, onEvent func(runtime.Event)) (*runtime.Supervisor, policy.Host, string) {
	b.Helper()
	root, err := os.MkdirTemp("", "blvm-bench-rt-")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(root, 0o711)
	b.Cleanup(func() { os.RemoveAll(root) })
	host, err := runtime.DetectHost("/sys/fs/cgroup", root)
	if err != nil {
		b.Fatal(err)
	}
	sup, err := runtime.NewSupervisor(runtime.Options{Root: root, Shim: built.Shim, Host: host, Restart: restart, Grace: time.Second, OnEvent: onEvent})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sup.Close(context.Background()) })
	return sup, host, root
}

// drain accepts and reads each connection, as the hub would, and counts a
// start as up at its first bytes (the hub: at its Hello).
func drain(ln net.Listener, _ int, ready func()) error {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						ready()
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return nil
}

// cpuMeter reports the CPU time (user + system) this process and its
// reaped children spent between its creation and done, per operation: the
// whole cost of a start, its stop included, on every core. It is what
// bounds how many starts a second the machine can do.
type cpuMeter struct{ t0 time.Duration }

func cpuNow() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

func newCPUMeter() cpuMeter { return cpuMeter{t0: cpuNow()} }

func (m cpuMeter) done(b *testing.B) {
	b.ReportMetric(float64((cpuNow()-m.t0).Microseconds())/float64(b.N)/1000, "cpu-ms/op")
}

// BenchmarkColdStart is P1 for us: Supervisor.Start returns when the
// module's first frame reached its socket.
func BenchmarkColdStart(b *testing.B) {
	buildModule(b)
	sup, host, _ := newSupervisor(b, runtime.RestartPolicy{Never: true}, nil)
	p := compileHostile(b, "coldstart", host)
	var prepare, run time.Duration
	cpu := newCPUMeter()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := sup.Prepare(context.Background(), runtime.Module{Policy: p, Binary: built.Hostile, Config: []byte(sleepConfig), Serve: drain}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := sup.Run(context.Background(), "coldstart"); err != nil {
			b.Fatal(err)
		}
		prepare += t1.Sub(t0)
		run += time.Since(t1)
		b.StopTimer()
		sup.Stop(context.Background(), "coldstart")
		b.StartTimer()
	}
	cpu.done(b)
	// Where the time goes: creating the container up to the exec fifo, and
	// from exec (shim, Landlock, module start) to the first frame.
	b.ReportMetric(float64(prepare.Microseconds())/float64(b.N)/1000, "prepare-ms")
	b.ReportMetric(float64(run.Microseconds())/float64(b.N)/1000, "run-ms")
}

// firstFrame starts cmd (with start, or cmd.Start if nil) and returns once
// the module's first bytes arrive on ln. Then, outside the timer, cleanup
// (the peer's own delete) runs and the process tree is killed. stderr goes
// to a file, not a pipe: a container process holding a pipe open would keep
// Wait from returning.
func firstFrame(b *testing.B, ln *net.UnixListener, cmd *exec.Cmd, start func(*exec.Cmd) error, cleanup func()) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := os.CreateTemp("", "blvm-peer-stderr-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(stderr.Name())
	defer stderr.Close()
	cmd.Stderr = stderr
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(cmd); err != nil {
		b.Fatal(err)
	}
	finish := func() {
		if cleanup != nil {
			cleanup()
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		finish()
		msg, _ := os.ReadFile(stderr.Name())
		b.Fatalf("%s: no connection: %v\n%s", cmd.Path, err, msg)
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	c.Close()
	finish()
	b.StartTimer()
}

// peerFixture is a socket and config the peers' payload greets and reads.
type peerFixture struct {
	dir, sock, config string
	ln                *net.UnixListener
}

func newPeerFixture(b *testing.B) *peerFixture {
	dir, err := os.MkdirTemp("", "blvm-peer-")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	b.Cleanup(func() { os.RemoveAll(dir) })
	f := &peerFixture{dir: dir, sock: filepath.Join(dir, "hub.sock"), config: filepath.Join(dir, "config.toml")}
	os.WriteFile(f.config, []byte(sleepConfig), 0o644)
	f.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: f.sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(f.sock, 0o777)
	b.Cleanup(func() { f.ln.Close() })
	return f
}

func moduleEnv(sock, config string) []string {
	return []string{"BLVM_SOCKET=" + sock, "BLVM_CONFIG=" + config, "BLVM_MODULE_NAME=bench", "BLVM_MODULE_VERSION=1.0.0"}
}

// BenchmarkPeerPlainExec starts the payload with no confinement at all.
func BenchmarkPeerPlainExec(b *testing.B) {
	buildModule(b)
	f := newPeerFixture(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(built.Hostile)
		cmd.Env = moduleEnv(f.sock, f.config)
		firstFrame(b, f.ln, cmd, nil, nil)
	}
}

// BenchmarkPeerPlainExecShim is the floor of a start from the exec fifo
// (StartPrepared, RestartAfterBackoff) without the container: the same two
// programs, plainly exec'd. The Landlock shim applies the module's own
// ruleset (the policy's rules, their container paths mapped to the
// fixture's host paths) and its stacked filter, then execs the module,
// which connects and sends its first frame: two Go programs' starts where
// PeerPlainExec has one.
func BenchmarkPeerPlainExecShim(b *testing.B) {
	buildModule(b)
	f := newPeerFixture(b)
	host, err := runtime.DetectHost("/sys/fs/cgroup", f.dir)
	if err != nil {
		b.Fatal(err)
	}
	p := compileHostile(b, "shim-floor", host)
	data, tmp := filepath.Join(f.dir, "data"), filepath.Join(f.dir, "tmp")
	os.Mkdir(data, 0o777)
	os.Mkdir(tmp, 0o777)
	onHost := map[string]string{
		"/module/hostile": built.Hostile, "/etc/module/config.toml": f.config,
		"/run/blvm/hub.sock": f.sock, "/data": data, "/tmp": tmp,
	}
	args := []string{"--min-abi", strconv.Itoa(p.Landlock.MinABI)}
	for _, r := range p.Landlock.Rules {
		path, ok := onHost[r.Path]
		if !ok {
			path = r.Path // /dev/null and the like exist on the host too
		}
		args = append(args, "--allow", strings.Join(r.Access, ",")+":"+path)
	}
	for _, sc := range p.Landlock.Scopes {
		args = append(args, "--scope", sc.Name)
	}
	args = append(args, "--", built.Hostile)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(built.Shim, args...)
		cmd.Env = moduleEnv(f.sock, f.config)
		firstFrame(b, f.ln, cmd, nil, nil)
	}
}

// BenchmarkPeerBwrap: bubblewrap with every namespace and the same mounts.
func BenchmarkPeerBwrap(b *testing.B) {
	buildModule(b)
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip("bwrap not installed")
	}
	f := newPeerFixture(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bwrap, "--unshare-all", "--die-with-parent", "--new-session",
			"--ro-bind", built.Hostile, "/module/hostile", "--ro-bind", f.config, "/etc/module/config.toml",
			"--bind", f.sock, "/run/blvm/hub.sock", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
			"--clearenv", "--setenv", "BLVM_SOCKET", "/run/blvm/hub.sock", "--setenv", "BLVM_CONFIG", "/etc/module/config.toml",
			"/module/hostile")
		firstFrame(b, f.ln, cmd, nil, nil)
	}
}

// ociBundle writes our own policy as an OCI bundle (same seccomp, mounts,
// namespaces, limits, shim) for runc and crun, in the cgroup /<cgroup>,
// through the code path of `blvm-sandbox bundle`.
func ociBundle(b *testing.B, f *peerFixture, cgroup string) string {
	host, _ := runtime.DetectHost("/sys/fs/cgroup", f.dir)
	p := compileHostile(b, "peer", host)
	bundle, err := runtime.WriteOCIBundle(filepath.Join(f.dir, "oci"), p, runtime.OCIFiles{
		Binary: built.Hostile, Shim: built.Shim, Config: []byte(sleepConfig), Socket: f.sock,
		CgroupPath: "/" + cgroup, IDs: runtime.IDRange{Base: runtime.IDsBase, Count: runtime.IDsPerModule},
	})
	if err != nil {
		b.Fatal(err)
	}
	return bundle.Dir
}

// moveCgroup points the bundle at the cgroup /<cgroup>. Each start gets a
// fresh cgroup: the last container's processes may still be exiting in the
// old one, and would count against its pids limit.
func moveCgroup(b *testing.B, bundle, cgroup string) {
	path := filepath.Join(bundle, "config.json")
	js, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(js, &spec); err != nil {
		b.Fatal(err)
	}
	spec["linux"].(map[string]any)["cgroupsPath"] = "/" + cgroup
	js, _ = json.Marshal(spec)
	if err := os.WriteFile(path, js, 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPeerRunc: runc run on the equivalent bundle.
func BenchmarkPeerRunc(b *testing.B) {
	buildModule(b)
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Skip("runc not installed")
	}
	f := newPeerFixture(b)
	bundle := ociBundle(b, f, "blvm-bench-peer")
	state := filepath.Join(f.dir, "runc-state")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("blvm-bench-runc-%d", i)
		cmd := exec.Command(runc, "--root", state, "run", "-b", bundle, id)
		firstFrame(b, f.ln, cmd, nil, func() {
			exec.Command(runc, "--root", state, "delete", "-f", id).Run()
			moveCgroup(b, bundle, id)
		})
	}
}

// BenchmarkPeerCrun: crun run on the equivalent bundle, forked from a
// thread in a mount namespace crun accepts (crun_test.go).
func BenchmarkPeerCrun(b *testing.B) {
	buildModule(b)
	f := newPeerFixture(b)
	bundle := ociBundle(b, f, "blvm-bench-peer")
	crun := crunPeer(b, filepath.Join(f.dir, "crun-state"))
	cpu := newCPUMeter()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("blvm-bench-crun-%d", i)
		firstFrame(b, f.ln, crun.cmd("run", "-b", bundle, id), crun.start, func() {
			crun.run(nil, "delete", "-f", id)
			moveCgroup(b, bundle, id)
		})
	}
	cpu.done(b)
}

// BenchmarkPeerCrunWrapper times the shell wrapper that crun_test.go
// avoids, for the record: what each crun figure would carry with it.
func BenchmarkPeerCrunWrapper(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", "umount /sys/fs/cgroup/unified 2>/dev/null; exec true")
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStartPrepared is P1 for a container created ahead of time, the
// path LoadAll and crash restarts take: Supervisor.Prepare (creation up to
// libcontainer's exec fifo) runs untimed, and Run is timed from the call to
// the module's first frame (exec, seccomp, shim, Landlock, module start).
func BenchmarkStartPrepared(b *testing.B) {
	buildModule(b)
	sup, host, _ := newSupervisor(b, runtime.RestartPolicy{Never: true}, nil)
	p := compileHostile(b, "prepared", host)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := sup.Prepare(context.Background(), runtime.Module{Policy: p, Binary: built.Hostile, Config: []byte(sleepConfig), Serve: drain}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := sup.Run(context.Background(), "prepared"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		sup.Stop(context.Background(), "prepared")
		b.StartTimer()
	}
}

// BenchmarkPeerCrunStart is crun's own split, the peer of StartPrepared:
// `crun create` runs untimed, `crun start` is timed to the first frame.
func BenchmarkPeerCrunStart(b *testing.B) {
	buildModule(b)
	f := newPeerFixture(b)
	bundle := ociBundle(b, f, "blvm-bench-peer")
	crun := crunPeer(b, filepath.Join(f.dir, "crun-state"))
	out, err := os.CreateTemp("", "blvm-peer-out-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := fmt.Sprintf("blvm-bench-crun-start-%d", i)
		moveCgroup(b, bundle, id)
		if err := crun.run(out, "create", "-b", bundle, id); err != nil {
			msg, _ := os.ReadFile(out.Name())
			b.Fatalf("crun create: %v\n%s", err, msg)
		}
		b.StartTimer()
		firstFrame(b, f.ln, crun.cmd("start", id), crun.start, func() { crun.run(nil, "delete", "-f", id) })
	}
}

// BenchmarkRestart is P2: a module that exits with status 1 right after
// its first frame, restarted by the supervisor with no backoff delay; the
// time is from one first frame to the next (exit, reap, destroy, create,
// start, first frame).
func BenchmarkRestart(b *testing.B) {
	buildModule(b)
	running := make(chan time.Time, 1024)
	sup, host, _ := newSupervisor(b, runtime.RestartPolicy{Delay: time.Nanosecond, MaxDelay: time.Nanosecond, MaxCrashes: 1 << 30, Window: time.Hour},
		func(e runtime.Event) {
			if e.State == runtime.Running {
				running <- e.Time
			}
		})
	p := compileHostile(b, "restart", host)
	if err := sup.Start(context.Background(), runtime.Module{Policy: p, Binary: built.Hostile, Config: []byte("attack = \"exit\"\narg = \"1\"\n"), Serve: drain}); err != nil {
		b.Fatal(err)
	}
	<-running
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-running
	}
	b.StopTimer()
	sup.Stop(context.Background(), "restart")
}

// meminfo reads fields of /proc/meminfo (or a /proc/<pid>/status) in bytes.
func meminfo(b *testing.B, path string, keys ...string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for _, line := range strings.Split(string(data), "\n") {
		for _, k := range keys {
			if strings.HasPrefix(line, k+":") {
				var kb int64
				fmt.Sscanf(strings.TrimPrefix(line, k+":"), "%d", &kb)
				sum += kb << 10
			}
		}
	}
	return sum
}

// initServerRSS is the resident size of this process's blvm-sandbox-init
// server (the runtime's child that creates the containers), 0 if none runs.
func initServerRSS(b *testing.B) int64 {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var sum int64
	for _, t := range tasks {
		data, _ := os.ReadFile(t)
		for _, pid := range strings.Fields(string(data)) {
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			if strings.HasPrefix(strings.TrimSpace(string(comm)), "blvm-sandbox-in") {
				sum += meminfo(b, "/proc/"+pid+"/status", "VmRSS")
			}
		}
	}
	return sum
}

// BenchmarkIdleModules is P7: host memory per running module beyond the
// module's own. It starts idleModules modules that sleep and reports, per
// module, what grew outside the modules' own cgroups: the supervisor's RSS
// (its bookkeeping, goroutines, pipes) and the kernel's slab, page tables
// and kernel stacks (namespaces, mounts, sockets, cgroups) minus the kernel
// memory the modules' cgroups are charged for (their own stacks, page
// tables and slab objects).
const idleModules = 100

func BenchmarkIdleModules(b *testing.B) {
	buildModule(b)
	sup, host, _ := newSupervisor(b, runtime.RestartPolicy{Never: true}, nil)
	var runtimeRSS, kernel, own float64
	var server int64
	// One module started and stopped first: what the first start sets up
	// once per runtime (the init server, libseccomp's tables) is not a
	// per-module cost.
	warm := compileHostile(b, "idle-warm-up", host)
	if err := sup.Start(context.Background(), runtime.Module{Policy: warm, Binary: built.Hostile, Config: []byte(sleepConfig), Serve: drain}); err != nil {
		b.Fatal(err)
	}
	sup.Stop(context.Background(), "idle-warm-up")
	for i := 0; i < b.N; i++ {
		debug.FreeOSMemory()
		rss0 := meminfo(b, "/proc/self/status", "VmRSS") + initServerRSS(b)
		k0 := meminfo(b, "/proc/meminfo", "Slab", "PageTables", "KernelStack")
		var names []string
		for j := 0; j < idleModules; j++ {
			name := fmt.Sprintf("idle-%03d", j)
			p := compileHostile(b, name, host)
			if err := sup.Start(context.Background(), runtime.Module{Policy: p, Binary: built.Hostile, Config: []byte(sleepConfig), Serve: drain}); err != nil {
				b.Fatalf("module %d: %v", j, err)
			}
			names = append(names, name)
		}
		time.Sleep(500 * time.Millisecond) // let the modules settle into their sleep
		debug.FreeOSMemory()
		server = initServerRSS(b)
		runtimeRSS = float64(meminfo(b, "/proc/self/status", "VmRSS")+server-rss0) / idleModules
		kernel = float64(meminfo(b, "/proc/meminfo", "Slab", "PageTables", "KernelStack")-k0) / idleModules
		var sum, kmem uint64
		for _, n := range names {
			st, err := sup.Stats(n)
			if err != nil {
				b.Fatal(err)
			}
			sum += st.MemoryBytes
			kmem += st.KernelBytes
		}
		own = float64(sum) / idleModules
		kernel -= float64(kmem) / idleModules
		b.StopTimer()
		for _, n := range names {
			sup.Stop(context.Background(), n)
		}
		b.StartTimer()
	}
	b.ReportMetric((runtimeRSS+kernel)/1024, "host-KiB/module")
	b.ReportMetric(runtimeRSS/1024, "runtime-KiB/module")
	// Its growth is in runtime-KiB; this is its whole resident size.
	b.ReportMetric(float64(server)/1024, "init-server-KiB")
	b.ReportMetric(kernel/1024, "kernel-KiB/module")
	b.ReportMetric(own/1024, "cgroup-KiB/module")
}

// BenchmarkRestartAfterBackoff is P2 as a supervisor sees it: a module that
// exits right after its first frame, restarted after a 200 ms backoff. The
// supervisor creates the next container during the backoff, so the time
// from the moment the restart is due to the module's first frame is the
// exec, the shim and the module's own start. Only that span is timed.
func BenchmarkRestartAfterBackoff(b *testing.B) {
	buildModule(b)
	const backoff = 200 * time.Millisecond
	events := make(chan runtime.Event, 1024)
	sup, host, _ := newSupervisor(b, runtime.RestartPolicy{Delay: backoff, MaxDelay: backoff, MaxCrashes: 1 << 30, Window: time.Hour},
		func(e runtime.Event) {
			if e.State == runtime.Running || e.State == runtime.Restarting {
				events <- e
			}
		})
	p := compileHostile(b, "restart-backoff", host)
	if err := sup.Start(context.Background(), runtime.Module{Policy: p, Binary: built.Hostile, Config: []byte("attack = \"exit\"\narg = \"1\"\n"), Serve: drain}); err != nil {
		b.Fatal(err)
	}
	next := func(want runtime.State) runtime.Event {
		for e := range events {
			if e.State == want {
				return e
			}
		}
		b.Fatal("events closed")
		return runtime.Event{}
	}
	next(runtime.Running)
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		crashed := next(runtime.Restarting)
		time.Sleep(time.Until(crashed.Time.Add(backoff)))
		b.StartTimer()
		next(runtime.Running)
		b.StopTimer()
	}
	sup.Stop(context.Background(), "restart-backoff")
}
