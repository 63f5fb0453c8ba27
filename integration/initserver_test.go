package integration

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/runtime"
)

// parentPid is pid's parent, 0 if it is gone.
func parentPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// initServerOf is the blvm-sandbox-init server whose child pid is.
func initServerOf(t *testing.T, pid int) int {
	t.Helper()
	server := parentPid(pid)
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(server) + "/comm")
	if !strings.HasPrefix(strings.TrimSpace(string(comm)), "blvm-sandbox-in") || parentPid(server) != os.Getpid() {
		t.Fatalf("module pid %d's parent %d (%q) is not an init server of this process", pid, server, comm)
	}
	return server
}

// The container init server dying (SIGKILL from outside) takes no module
// down: its inits become the supervisor's children. A module running then
// is still stopped, reaped and cleaned up, a crash of one is still seen and
// restarted, and the next start runs a new server. No zombie is left.
func TestRootInitServerDeathLosesNothing(t *testing.T) {
	s, rec := newRecordingSandbox(t, runtime.RestartPolicy{Delay: 50 * time.Millisecond, MaxDelay: time.Second, MaxCrashes: 5, Window: time.Minute})
	if err := s.start("keeper", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.start("victim", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	keeper, _ := s.sup.Status("keeper")
	victim, _ := s.sup.Status("victim")
	server := initServerOf(t, keeper.Pid)
	if other := initServerOf(t, victim.Pid); other != server {
		t.Fatalf("one supervisor, two init servers: %d and %d", server, other)
	}
	if err := syscall.Kill(server, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if st, _ := s.sup.Status("keeper"); st.State != runtime.Running || st.Pid != keeper.Pid {
		t.Fatalf("keeper after the server's death: %+v (was pid %d)", st, keeper.Pid)
	}
	// A crash after the server's death is reaped here and restarted
	// (through a new server).
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := s.sup.Status("victim")
		if st.State == runtime.Running && st.Pid != victim.Pid {
			if st.LastExit == nil || st.LastExit.Signal != syscall.SIGKILL {
				t.Errorf("victim's last exit %+v, want SIGKILL", st.LastExit)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim not restarted after the server died: %+v; states %v", st, rec.states("victim"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	restarted, _ := s.sup.Status("victim")
	if now := initServerOf(t, restarted.Pid); now == server {
		t.Errorf("the restarted module's init server is the dead one, %d", server)
	}
	if p := parentPid(keeper.Pid); p != os.Getpid() {
		t.Errorf("keeper's parent after its server died: %d, want this process (the child subreaper)", p)
	}
	ctx := context.Background()
	for _, name := range []string{"keeper", "victim"} {
		exit, err := s.sup.Stop(ctx, name)
		if err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
		if name == "keeper" && exit.Err != "" {
			t.Errorf("keeper's exit %+v: the runtime must reap it itself", exit)
		}
	}
	if left, err := (runtime.Layout{Root: s.root}).Orphans(); err != nil || len(left) > 0 {
		t.Errorf("orphans: %v %v", left, err)
	}
	// No zombie of a container init stays a child of this process.
	for _, pid := range []int{keeper.Pid, victim.Pid} {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil && strings.Contains(string(b), "zombie") {
			t.Errorf("pid %d is a zombie", pid)
		}
	}
}
