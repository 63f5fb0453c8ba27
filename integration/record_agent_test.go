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

// TestRootRecordAgentRefusesAPathOthersCanChange: libcontainer hands the
// notify fd to whatever listens at the path, so the agent refuses a path a
// non-root user could swap a socket into: a directory that user owns (a
// runtime root they made), one others may write without the sticky bit,
// and a link that leads into either. A sticky world-writable one (/tmp)
// passes.
func TestRootRecordAgentRefusesAPathOthersCanChange(t *testing.T) {
	requireRoot(t)
	base, err := os.MkdirTemp("", "rec")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	mkdir := func(name string, mode os.FileMode, uid int) string { return mkdirAs(t, base, name, mode, uid) }
	owned := mkdir("owned", 0o755, 65534)
	open := mkdir("open", 0o777, 0)
	sticky := mkdir("sticky", 0o777|os.ModeSticky, 0)
	link := filepath.Join(base, "link")
	if err := os.Symlink(owned, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, want string
	}{
		{filepath.Join(owned, "state", "record", "a.sock"), "belongs to uid 65534"},
		{filepath.Join(open, "a.sock"), "writable by others (mode 0777"},
		{filepath.Join(link, "a.sock"), "belongs to uid 65534"},
		{filepath.Join(sticky, "a.sock"), ""},
	} {
		a, err := record.Listen(c.path, "blvm-probe", "/module/probe", "/.blvm/landlock-shim", nil, record.NewSyscallLog())
		if a != nil {
			a.Close()
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want the agent listening", c.path, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want a refusal with %q", c.path, err, c.want)
		}
		if c.want != "" {
			if _, err := os.Lstat(c.path); !os.IsNotExist(err) {
				t.Errorf("%s: a socket was left there (%v)", c.path, err)
			}
		}
	}
}
