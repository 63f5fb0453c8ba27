package btcdtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test binary killed with SIGKILL runs no cleanup; Pdeathsig must still
// take its btcd down. The test re-runs itself as the child that is killed.
func TestKilledRunLeavesNoBtcd(t *testing.T) {
	if os.Getenv("BTCDTEST_CHILD") == "1" {
		n := Start(t, Options{})
		fmt.Printf("pid %d\n", n.Pid())
		time.Sleep(time.Minute)
		return
	}
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	Binary(t) // built here, not under the child's clock
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRunLeavesNoBtcd$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BTCDTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	pid := 0
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "pid "); ok {
			pid, _ = strconv.Atoi(s)
			break
		}
	}
	if pid == 0 {
		cmd.Process.Kill()
		t.Fatal("the child never reported btcd's pid")
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("btcd %d is not running in the child: %v", pid, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		// A zombie reparented to us would still answer kill 0: check its state.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("btcd %d outlived its killed test binary", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartStopRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := Start(t, Options{Simnet: true})
	c := n.Client()
	if _, err := c.Generate(3); err != nil {
		t.Fatal(err)
	}
	pid := n.Pid()
	n.Restart()
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("old btcd %d survived the restart", pid)
	}
	if h, err := n.Client().GetBlockCount(); err != nil || h != 3 {
		t.Fatalf("after restart on simnet: height %d, %v; want the 3 blocks kept", h, err)
	}
	n.Stop()
	if syscall.Kill(pid, 0) == nil || n.Pid() != 0 {
		t.Fatal("btcd still runs after Stop")
	}
}
