//go:build cgo && seccomp

package kernelfilter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/archfilter"
)

// childEnv carries the libcontainer seccomp config (JSON) to the child.
const childEnv = "BLVM_AUDIT_LOAD_SECCOMP"

// Load loads cfg in a throwaway child exactly as a container does, and
// reads the result back: libcontainer's init sets no_new_privs and calls
// seccomp.InitSeccomp (libseccomp's program, optimised as libcontainer
// optimises it, behind patchbpf's -ENOSYS stub when it adds one), then the
// shim stacks archfilter.Load's program. The child is this same binary,
// which must call ChildMain first thing in main (or TestMain).
func Load(cfg *configs.Seccomp) (*Loaded, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("load seccomp filters: %w", err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("load seccomp filters: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = []string{childEnv + "=" + string(js)}
	hold, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	defer hold.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the filter-loading child: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Wait()
		return nil, fmt.Errorf("filter-loading child: %s", strings.TrimSpace(stderr.String()))
	}
	tid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "loaded "))
	if err != nil {
		return nil, fmt.Errorf("filter-loading child said %q", line)
	}
	progs, err := Read(tid)
	if err != nil {
		return nil, err
	}
	return &Loaded{Programs: progs, Names: Names(progs)}, nil
}

// ChildMain does nothing unless this process is Load's child; then it
// loads the filters, reports its thread id and waits to be killed.
func ChildMain() {
	js, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	runtime.LockOSThread()
	var cfg configs.Seccomp
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		childFail(err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		childFail(err)
	}
	if _, err := seccomp.InitSeccomp(&cfg); err != nil {
		childFail(err)
	}
	if err := archfilter.Load(); err != nil {
		childFail(err)
	}
	// Raw calls only from here: the thread is confined now.
	msg := []byte("loaded " + strconv.Itoa(unix.Gettid()) + "\n")
	_, _ = unix.Write(1, msg)
	var b [1]byte
	_, _ = unix.Read(0, b[:])
	unix.Exit(0)
}

func childFail(err error) {
	fmt.Fprintln(os.Stderr, "load seccomp filters:", err)
	os.Exit(1)
}
