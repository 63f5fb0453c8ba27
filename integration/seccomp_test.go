// Package integration holds tests that need root and a real kernel. Each
// test's name starts with TestRoot and skips when not run as root.
package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
)

// childEnv makes the re-executed test binary a probe instead of a test run.
const childEnv = "BLVM_SECCOMP_PROBE"

const exampleManifest = `
name = "probe-module"
version = "0.1.0"
entry_point = "probe"
capabilities = ["read_blockchain", "subscribe_events"]
`

// probe is one syscall to try under the filter.
type probe struct {
	name string
	nr   uintptr
	args [6]uintptr
	want syscall.Errno // 0: allowed (whatever the kernel then says, it is not the filter's errno)
}

func probes() []probe {
	return []probe{
		{name: "getpid", nr: unix.SYS_GETPID},
		{name: "socket(AF_UNIX)", nr: unix.SYS_SOCKET, args: [6]uintptr{unix.AF_UNIX, unix.SOCK_STREAM}},
		{name: "clone3", nr: unix.SYS_CLONE3, want: unix.ENOSYS},
		{name: "mq_open (unknown to the policy)", nr: unix.SYS_MQ_OPEN, want: unix.ENOSYS},
		{name: "io_uring_setup", nr: unix.SYS_IO_URING_SETUP, want: unix.EPERM},
		{name: "userfaultfd", nr: unix.SYS_USERFAULTFD, want: unix.EPERM},
		{name: "bpf", nr: unix.SYS_BPF, want: unix.EPERM},
		{name: "perf_event_open", nr: unix.SYS_PERF_EVENT_OPEN, want: unix.EPERM},
		{name: "ptrace", nr: unix.SYS_PTRACE, want: unix.EPERM},
		{name: "process_vm_readv", nr: unix.SYS_PROCESS_VM_READV, want: unix.EPERM},
		{name: "keyctl", nr: unix.SYS_KEYCTL, want: unix.EPERM},
		{name: "mount", nr: unix.SYS_MOUNT, want: unix.EPERM},
		{name: "fsopen", nr: unix.SYS_FSOPEN, want: unix.EPERM},
		{name: "unshare", nr: unix.SYS_UNSHARE, args: [6]uintptr{unix.CLONE_NEWUSER}, want: unix.EPERM},
		{name: "setns", nr: unix.SYS_SETNS, want: unix.EPERM},
		{name: "kexec_load", nr: unix.SYS_KEXEC_LOAD, want: unix.EPERM},
		{name: "init_module", nr: unix.SYS_INIT_MODULE, want: unix.EPERM},
		{name: "clone(CLONE_NEWUSER)", nr: unix.SYS_CLONE, args: [6]uintptr{unix.CLONE_NEWUSER | uintptr(unix.SIGCHLD)}, want: unix.EPERM},
		{name: "socket(AF_INET)", nr: unix.SYS_SOCKET, args: [6]uintptr{unix.AF_INET, unix.SOCK_STREAM}, want: unix.EAFNOSUPPORT},
		{name: "socket(AF_NETLINK)", nr: unix.SYS_SOCKET, args: [6]uintptr{unix.AF_NETLINK, unix.SOCK_RAW}, want: unix.EAFNOSUPPORT},
		// TIOCSTI pushes input into a terminal: not among the four allowed ioctls.
		{name: "ioctl(TIOCSTI)", nr: unix.SYS_IOCTL, args: [6]uintptr{0, unix.TIOCSTI}, want: unix.ENOSYS},
	}
}

// compiledPolicy compiles the example manifest with the shipped catalog and
// the default node config, for this host.
func compiledPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	m, err := manifest.ParseBytes("module.toml", []byte(exampleManifest))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := capabilities.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeconfig.Default()
	set, err := cat.Resolve(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	abi, _ := llsys.LandlockGetABIVersion()
	p, err := policy.Compile(m, set, cfg, policy.Host{Arch: runtime.GOARCH, LandlockABI: abi, CgroupVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if !seccomp.Enabled {
		t.Skip("built without -tags seccomp: libcontainer cannot load filters")
	}
}

// loadFilter does what libcontainer's init does: no_new_privs, then
// seccomp.InitSeccomp with the policy's libcontainer config.
func loadFilter() error {
	runtime.LockOSThread()
	m, err := manifest.ParseBytes("module.toml", []byte(exampleManifest))
	if err != nil {
		return err
	}
	cat, err := capabilities.Default()
	if err != nil {
		return err
	}
	cfg := nodeconfig.Default()
	set, err := cat.Resolve(m, cfg)
	if err != nil {
		return err
	}
	p, err := policy.Compile(m, set, cfg, policy.Host{Arch: runtime.GOARCH, LandlockABI: 6, CgroupVersion: 1})
	if err != nil {
		return err
	}
	sc, err := p.SeccompConfig()
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	_, err = seccomp.InitSeccomp(sc)
	return err
}

// TestMain turns the test binary into the probe child when childEnv is set.
func TestMain(m *testing.M) {
	kernelfilter.ChildMain() // the filter-loading child of inspect_test.go
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "table":
		if err := loadFilter(); err != nil {
			os.Stderr.WriteString("load filter: " + err.Error() + "\n")
			os.Exit(3)
		}
		results := map[string]int{}
		for _, p := range probes() {
			_, _, e := syscall.RawSyscall6(p.nr, p.args[0], p.args[1], p.args[2], p.args[3], p.args[4], p.args[5])
			results[p.name] = int(e)
		}
		json.NewEncoder(os.Stdout).Encode(results)
		os.Exit(0)
	case "x32":
		if err := loadFilter(); err != nil {
			os.Stderr.WriteString("load filter: " + err.Error() + "\n")
			os.Exit(3)
		}
		syscall.RawSyscall(unix.SYS_GETPID|0x40000000, 0, 0, 0)
		os.Stdout.WriteString("survived\n")
		os.Exit(0)
	}
	os.Exit(4)
}

func TestRootSeccompFilter(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=table")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe child: %v", err)
	}
	var results map[string]int
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	filterErrnos := map[syscall.Errno]bool{unix.ENOSYS: true, unix.EPERM: true, unix.EAFNOSUPPORT: true}
	for _, p := range probes() {
		got := syscall.Errno(results[p.name])
		switch {
		case p.want == 0 && filterErrnos[got]:
			t.Errorf("%s: got %v, want it allowed", p.name, got)
		case p.want != 0 && got != p.want:
			t.Errorf("%s: got %v (%d), want %v", p.name, got, got, p.want)
		default:
			t.Logf("%-32s %v", p.name, got)
		}
	}
}

// TestRootSeccompX32 shows what libcontainer's filter alone does with an x32
// syscall: libseccomp's bad-arch action, KILL_THREAD. In a multi-threaded
// process that kills only the calling thread, which is why the Landlock shim
// stacks a KILL_PROCESS filter (see TestRootShimKillsX32).
func TestRootSeccompX32(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=x32")
	out, err := runWithTimeout(cmd, 5*time.Second)
	if string(out) == "survived\n" {
		t.Fatal("an x32 syscall returned: the filter does not stop x32")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGSYS {
			t.Logf("x32 getpid: process killed by SIGSYS")
			return
		}
	}
	t.Logf("x32 getpid: the calling thread died but the process did not (%v): KILL_THREAD only", err)
}

// runWithTimeout runs cmd and kills it after d; a hang counts as survival of
// the process with a dead thread.
func runWithTimeout(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	timer := time.AfterFunc(d, func() { cmd.Process.Kill() })
	defer timer.Stop()
	buf := make([]byte, 64)
	n, _ := stdout.Read(buf)
	err = cmd.Wait()
	close(done)
	return buf[:n], err
}
