package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/record"
)

// hand connects to the agent at path as libcontainer does and sends state
// with one fd (a pipe's, standing in for the notify fd). uid, when not 0,
// is the uid the connecting thread runs as (root only). It returns how the
// send went.
func hand(t *testing.T, path string, id string, uid int) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with its changed uid
		if uid != 0 {
			// A raw setresuid changes this thread alone; saved uid 0
			// would let it back, but the thread is thrown away anyway.
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), 0); e != 0 {
				done <- e
				return
			}
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			done <- err
			return
		}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			done <- err
			return
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		state, _ := json.Marshal(specs.ContainerProcessState{State: specs.State{ID: id}})
		done <- unix.Sendmsg(fd, state, unix.UnixRights(p[0]), nil, 0)
	}()
	return <-done
}

// TestRootRecordAgentRefusesAnotherContainersFilter: the agent takes the
// notify fd only with the state of the container it was made for.
func TestRootRecordAgentRefusesAnotherContainersFilter(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp("", "rec")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "a.sock")
	a, err := record.Listen(path, "blvm-probe", "/module/probe", "/.blvm/landlock-shim", nil, record.NewSyscallLog())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", st.Mode(), err)
	}
	go a.Serve(context.Background())
	if err := hand(t, path, "blvm-other", 0); err != nil {
		t.Fatalf("hand over: %v", err)
	}
	if err := waitFor(t, a); err == nil || !strings.Contains(err.Error(), `want "blvm-probe"`) {
		t.Errorf("agent took another container's filter: %v", err)
	}
}

// TestRootRecordAgentRefusesANonRootPeer: only root (libcontainer in the
// runtime's init server) may hand the agent a filter.
func TestRootRecordAgentRefusesANonRootPeer(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp("", "rec")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "a.sock")
	a, err := record.Listen(path, "blvm-probe", "/module/probe", "/.blvm/landlock-shim", nil, record.NewSyscallLog())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	os.Chmod(path, 0o666) // so the kernel lets uid 65534 connect at all
	go a.Serve(context.Background())
	// The agent may close before the state is sent: a broken pipe here
	// is the refusal arriving first.
	_ = hand(t, path, "blvm-probe", 65534)
	if err := waitFor(t, a); err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("agent took a filter from uid 65534: %v", err)
	}
}

func waitFor(t *testing.T, a *record.Agent) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- a.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("agent still serving")
		return nil
	}
}
