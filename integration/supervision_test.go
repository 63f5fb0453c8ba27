package integration

import (
	"context"
	"fmt"
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

	"github.com/blvm/blvm-sandbox/runtime"
)

// recorder keeps the supervisor's events for assertions.
type recorder struct {
	mu     sync.Mutex
	events []runtime.Event
}

func (r *recorder) add(e runtime.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) states(module string) []runtime.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runtime.State
	for _, e := range r.events {
		if e.Module == module {
			out = append(out, e.State)
		}
	}
	return out
}

func newRecordingSandbox(t *testing.T, restart runtime.RestartPolicy) (*sandbox, *recorder) {
	rec := &recorder{}
	s := newSandbox(t, restart)
	// A second supervisor on the same root would recover (kill) the first's
	// modules; replace it before anything runs.
	s.sup.Close(context.Background())
	sup, err := runtime.NewSupervisor(runtime.Options{
		Root: s.root, Shim: binaries.Shim, Host: s.host, Grace: time.Second, Ready: 10 * time.Second,
		Restart: restart, OnEvent: rec.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.sup = sup
	return s, rec
}

// A crashing module is restarted with growing delays, then marked failed;
// a neighbour keeps running with the same pid throughout.
func TestRootCrashLoopFailsAndSparesNeighbour(t *testing.T) {
	s, rec := newRecordingSandbox(t, runtime.RestartPolicy{Delay: 100 * time.Millisecond, MaxDelay: 400 * time.Millisecond, MaxCrashes: 3, Window: time.Minute})
	if err := s.start("steady", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := s.sup.Status("steady")

	start := time.Now()
	if err := s.start("crasher", "exit", "3", nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exit, err := s.sup.Wait(ctx, "crasher")
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if exit.Code != 3 {
		t.Errorf("last exit %v, want code 3", exit)
	}
	st, _ := s.sup.Status("crasher")
	if st.State != runtime.Failed || st.Restarts != 2 {
		t.Errorf("crasher status %+v, want failed after 2 restarts", st)
	}
	// Backoff 100 ms then 200 ms between the three runs.
	if elapsed < 300*time.Millisecond {
		t.Errorf("three runs took %v: the backoff was not applied", elapsed)
	}
	states := rec.states("crasher")
	want := "starting running restarting starting running restarting starting running failed"
	if got := joinStates(states); got != want {
		t.Errorf("crasher states:\n got %s\nwant %s", got, want)
	}
	after, _ := s.sup.Status("steady")
	if after.State != runtime.Running || after.Pid != before.Pid || after.Restarts != 0 {
		t.Errorf("neighbour disturbed: before %+v after %+v", before, after)
	}
	s.sup.Stop(ctx, "crasher")
}

// A module killed from outside (kill -9 of its host pid) is restarted.
func TestRootKilledModuleRestarts(t *testing.T) {
	s, _ := newRecordingSandbox(t, runtime.RestartPolicy{Delay: 50 * time.Millisecond, MaxDelay: time.Second, MaxCrashes: 5, Window: time.Minute})
	if err := s.start("victim", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	first, _ := s.sup.Status("victim")
	syscall.Kill(first.Pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := s.sup.Status("victim")
		if st.State == runtime.Running && st.Pid != first.Pid {
			if st.Restarts != 1 || st.LastExit == nil || st.LastExit.Signal != syscall.SIGKILL {
				t.Fatalf("after restart: %+v (last exit %v)", st, st.LastExit)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and the module ends; a module that ignores SIGTERM is
// killed when the grace period runs out. Either way the socket, bundle and
// cgroups go, and the data dir and log stay.
func TestRootStopCleansUp(t *testing.T) {
	s, rec := newRecordingSandbox(t, runtime.DefaultRestart)
	l := runtime.Layout{Root: s.root}
	for _, c := range []struct {
		attack   string
		signal   syscall.Signal
		min, max time.Duration
	}{
		// Go's runtime re-raises SIGTERM, which pid 1 of a namespace
		// ignores, and then exits with status 2 by itself: no SIGKILL.
		{"sleep", 0, 0, 900 * time.Millisecond},
		{"ignore-term", syscall.SIGKILL, time.Second, 4 * time.Second}, // grace is 1 s
	} {
		name := "stop-" + strings.ReplaceAll(c.attack, "-", "")
		if err := s.start(name, c.attack, "60s", nil, nil); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{l.Socket(name), l.Bundle(name)} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("while running: %v", err)
			}
		}
		start := time.Now()
		if _, err := s.sup.Stop(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < c.min || d > c.max {
			t.Errorf("%s: stop took %v, want %v to %v", c.attack, d, c.min, c.max)
		}
		if got := joinStates(rec.states(name)); got != "starting running stopping stopped" {
			t.Errorf("%s: states %s", c.attack, got)
		}
		rec.mu.Lock()
		last := rec.events[len(rec.events)-1]
		rec.mu.Unlock()
		if last.Exit == nil || last.Exit.Signal != c.signal || (c.signal == 0 && last.Exit.Code != 2) {
			t.Errorf("%s: ended with %v, want %v", c.attack, last.Exit, c.signal)
		}
		// The data stays in the module's quota image, unmounted.
		if _, err := os.Stat(l.Image(name)); err != nil {
			t.Errorf("data image removed: %v", err)
		}
		if _, err := os.Stat(l.Log(name)); err != nil {
			t.Errorf("log removed: %v", err)
		}
	}
	orphans, err := l.Orphans()
	if err != nil || len(orphans) != 0 {
		t.Errorf("left behind: %v %v", orphans, err)
	}
}

// The module's output lands in logs/<name>.log.
func TestRootLogCaptured(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	s.attack("env", "")
	b, err := os.ReadFile(runtime.Layout{Root: s.root}.Log("hostile"))
	if err != nil || !strings.Contains(string(b), `"attack":"env"`) {
		t.Fatalf("log: %q %v", b, err)
	}
}

// runtimeChildEnv makes the re-executed test binary a runtime that starts a
// module and then waits to be killed with SIGKILL.
const runtimeChildEnv = "BLVM_IT_RUNTIME_CHILD"

func init() {
	root := os.Getenv(runtimeChildEnv)
	if root == "" {
		return
	}
	host, _ := runtime.DetectHost("/sys/fs/cgroup", root)
	sup, err := runtime.NewSupervisor(runtime.Options{Root: root, Shim: os.Getenv("BLVM_IT_SHIM"), Host: host})
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	s := &sandbox{host: host, hostile: os.Getenv("BLVM_IT_HOSTILE"), cfg: nodeDefault()}
	for _, name := range []string{"orphan-a", "orphan-b"} {
		p, err := s.compileErr(name)
		if err == nil {
			err = sup.Start(context.Background(), runtime.Module{Policy: p, Binary: s.hostile,
				Config: []byte("attack = \"sleep\"\narg = \"60s\"\n"), Serve: drainHub})
		}
		if err != nil {
			fmt.Println("child:", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	select {}
}

// After the runtime dies by SIGKILL, a new supervisor on the same root
// finds its containers, cgroups, sockets and bundles, removes them, and the
// modules' processes are gone.
func TestRootRecoverAfterRuntimeKill(t *testing.T) {
	requireRoot(t)
	shim, hostile := buildBinaries(t)
	root, err := os.MkdirTemp("", "blvm-rt-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), runtimeChildEnv+"="+root, "BLVM_IT_SHIM="+shim, "BLVM_IT_HOSTILE="+hostile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "ready") {
		cmd.Process.Kill()
		t.Fatalf("child runtime: %q", buf[:n])
	}
	l := runtime.Layout{Root: root}
	orphans, _ := l.Orphans()
	pids := modulePids(t, l, "orphan-a", "orphan-b")
	cmd.Process.Kill()
	cmd.Wait()
	if len(orphans) == 0 || len(pids) != 2 {
		t.Fatalf("before recovery: orphans %v, module pids %v", orphans, pids)
	}

	host, _ := runtime.DetectHost("/sys/fs/cgroup", root)
	sup, err := runtime.NewSupervisor(runtime.Options{Root: root, Shim: shim, Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close(context.Background())
	if left, err := l.Orphans(); err != nil || len(left) != 0 {
		t.Errorf("after recovery: %v %v", left, err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("module process %d survived recovery", pid)
		}
	}
}

// modulePids finds the modules' processes through their cgroups.
func modulePids(t *testing.T, l runtime.Layout, names ...string) []int {
	var pids []int
	for _, n := range names {
		dirs, err := l.ModuleCgroups(n)
		if err != nil {
			t.Fatalf("cgroups of %s: %v", n, err)
		}
		// The pids hierarchy (v1), or the unified one (v2).
		i := slices.IndexFunc(dirs, func(d string) bool { return strings.HasPrefix(d, "/sys/fs/cgroup/pids/") })
		if i < 0 {
			i = 0
		}
		b, err := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
		if err != nil {
			t.Fatalf("cgroup of %s: %v", n, err)
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func joinStates(states []runtime.State) string {
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = string(s)
	}
	return strings.Join(parts, " ")
}

// alive reports whether pid is a live process; a zombie waiting for its
// (re-parented) parent to reap it is dead. Reaping may take a moment.
func alive(pid int) bool {
	for try := 0; try < 100; try++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		// The state follows the parenthesised command name.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// A prepared module that is never run is removed at once: its container's
// init still waits on the exec fifo, so there is no grace period to wait.
func TestRootStopPreparedModule(t *testing.T) {
	s := newSandbox(t, runtime.DefaultRestart)
	config := []byte("attack = \"sleep\"\narg = \"60s\"\n")
	if err := s.sup.Prepare(context.Background(), runtime.Module{Policy: s.compile("prepared"), Binary: s.hostile, Config: config, Serve: drainHub}); err != nil {
		t.Fatal(err)
	}
	l := runtime.Layout{Root: s.root}
	if left, _ := l.Orphans(); len(left) == 0 {
		t.Fatal("a prepared module left nothing on disk: the check below would prove nothing")
	}
	start := time.Now()
	if _, err := s.sup.Stop(context.Background(), "prepared"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("removing a prepared module took %v", d)
	}
	if left, err := l.Orphans(); err != nil || len(left) != 0 {
		t.Errorf("left behind: %v %v", left, err)
	}
}
