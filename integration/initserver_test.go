package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/runtime"
)

// initServers lists this process's blvm-sandbox-init children.
func initServers(t *testing.T) []int {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(data)) {
			pid, _ := strconv.Atoi(f)
			comm, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.HasPrefix(strings.TrimSpace(string(comm)), "blvm-sandbox-in") {
				pids = append(pids, pid)
			}
		}
	}
	return pids
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
	servers := initServers(t)
	if len(servers) != 1 {
		t.Fatalf("init servers %v, want one", servers)
	}
	keeper, _ := s.sup.Status("keeper")
	victim, _ := s.sup.Status("victim")
	if err := syscall.Kill(servers[0], syscall.SIGKILL); err != nil {
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
	if now := initServers(t); len(now) != 1 || now[0] == servers[0] {
		t.Errorf("init servers after a restart %v (the dead one was %d), want one new", now, servers[0])
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
