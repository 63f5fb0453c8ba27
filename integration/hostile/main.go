// Command hostile is the test module the containment suite runs in a real
// container. It greets the hub like any module, then makes the one attack
// named by `attack` in its config file, and prints one JSON line saying
// what the kernel answered. The tests in integration/ assert the answer and
// check the host for the side effect.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// result is the one line the module prints.
type result struct {
	Attack string            `json:"attack"`
	Errno  string            `json:"errno"`          // "ok" when the attack's call succeeded
	Count  int64             `json:"count,omitzero"` // how far a resource attack got
	Info   map[string]string `json:"info,omitempty"`
}

func main() {
	cfg := readConfig(os.Getenv("BLVM_CONFIG"))
	if cfg["attack"] == "ignore-term" {
		// Before the greeting: the runtime may stop the module the moment
		// it has spoken.
		signal.Ignore(unix.SIGTERM)
	}
	name := os.Getenv("BLVM_MODULE_NAME")
	if as := cfg["greet_as"]; as != "" {
		name = as // claims another module's name in its Hello
	}
	conn := greet(name)
	defer conn.Close()
	r := result{Attack: cfg["attack"], Info: map[string]string{}}
	attack, ok := attacks[r.Attack]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown attack %q\n", r.Attack)
		os.Exit(2)
	}
	attack(&r, cfg["arg"])
	json.NewEncoder(os.Stdout).Encode(r)
}

// readConfig reads the flat `key = "value"` lines the tests write.
func readConfig(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(2)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return out
}

// greet sends the handshake as name, which is also how the runtime sees
// the module is up.
func greet(name string) net.Conn {
	c, err := net.Dial("unix", os.Getenv("BLVM_SOCKET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial hub:", err)
		os.Exit(3)
	}
	frame, err := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{
		ProtocolVersion: ipc.ProtocolVersion, ModuleName: name,
		ModuleVersion: os.Getenv("BLVM_MODULE_VERSION"),
	}}}, 0)
	if err == nil {
		_, err = c.Write(frame)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(3)
	}
	return c
}

func errnoName(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return strconv.Itoa(int(e))
	}
	return err.Error()
}

func raw(r *result, nr uintptr, a ...uintptr) {
	var args [6]uintptr
	copy(args[:], a)
	_, _, e := unix.RawSyscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
	if e == 0 {
		r.Errno = "ok"
		return
	}
	r.Errno = errnoName(e)
}

func open(r *result, path string, flags int) {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	r.Errno = errnoName(err)
}

func socket(domain, typ, proto int) func(*result, string) {
	return func(r *result, _ string) {
		fd, err := unix.Socket(domain, typ, proto)
		if err == nil {
			unix.Close(fd)
		}
		r.Errno = errnoName(err)
	}
}

func cstr(s string) uintptr {
	p, _ := unix.BytePtrFromString(s)
	return uintptr(unsafe.Pointer(p))
}

var attacks = map[string]func(*result, string){
	// Filesystem.
	"read-host":     func(r *result, p string) { open(r, p, unix.O_RDONLY) },
	"write-rootfs":  func(r *result, _ string) { open(r, "/blvm-escape", unix.O_WRONLY|unix.O_CREAT) },
	"write-module":  func(r *result, _ string) { open(r, "/module/hostile", unix.O_WRONLY) },
	"write-config":  func(r *result, _ string) { open(r, "/etc/module/config.toml", unix.O_WRONLY) },
	"write-dev":     func(r *result, _ string) { open(r, "/dev/blvm-escape", unix.O_WRONLY|unix.O_CREAT) },
	"write-data":    func(r *result, _ string) { open(r, "/data/allowed", unix.O_WRONLY|unix.O_CREAT) },
	"exec-tmp":      execTmp,
	"proc-root":     func(r *result, p string) { open(r, "/proc/1/root"+p, unix.O_RDONLY) },
	"proc-self-exe": func(r *result, _ string) { open(r, "/proc/self/exe", unix.O_WRONLY) },
	"proc-fd-cwd":   procFdCwd,
	"sys-cgroup":    func(r *result, _ string) { open(r, "/sys/fs/cgroup/pids/pids.max", unix.O_WRONLY) },
	"mknod": func(r *result, _ string) {
		raw(r, unix.SYS_MKNODAT, ^uintptr(99), cstr("/tmp/mem"), unix.S_IFCHR|0o600, 1<<8|1)
	},
	"list-fds":        listFds,
	"env":             env,
	"proc-status":     procStatus,
	"setuid-root":     func(r *result, _ string) { raw(r, unix.SYS_SETUID, 0) },
	"signal-host-pid": signalPid,
	// Network.
	"socket-inet":    socket(unix.AF_INET, unix.SOCK_STREAM, 0),
	"socket-inet6":   socket(unix.AF_INET6, unix.SOCK_DGRAM, 0),
	"socket-netlink": socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE),
	"socket-packet":  socket(unix.AF_PACKET, unix.SOCK_RAW, 0),
	"socket-mptcp":   socket(unix.AF_INET, unix.SOCK_STREAM, 262), // IPPROTO_MPTCP
	"abstract-unix":  connectUnix,
	"host-socket":    connectUnix,
	// Syscalls.
	"ptrace":           func(r *result, _ string) { raw(r, unix.SYS_PTRACE, unix.PTRACE_TRACEME) },
	"process_vm_readv": func(r *result, _ string) { raw(r, unix.SYS_PROCESS_VM_READV, 1) },
	"bpf":              func(r *result, _ string) { raw(r, unix.SYS_BPF, 0) },
	"io_uring_setup":   func(r *result, _ string) { raw(r, unix.SYS_IO_URING_SETUP, 1) },
	"userfaultfd":      func(r *result, _ string) { raw(r, unix.SYS_USERFAULTFD, 0) },
	"perf_event_open":  func(r *result, _ string) { raw(r, unix.SYS_PERF_EVENT_OPEN) },
	"keyctl":           func(r *result, _ string) { raw(r, unix.SYS_KEYCTL, 0) },
	"mount":            func(r *result, _ string) { raw(r, unix.SYS_MOUNT, cstr("tmpfs"), cstr("/tmp"), cstr("tmpfs")) },
	"umount2":          func(r *result, _ string) { raw(r, unix.SYS_UMOUNT2, cstr("/data"), unix.MNT_DETACH) },
	"unshare":          func(r *result, _ string) { raw(r, unix.SYS_UNSHARE, unix.CLONE_NEWUSER) },
	"setns":            func(r *result, _ string) { raw(r, unix.SYS_SETNS, 0, 0) },
	"pivot_root":       func(r *result, _ string) { raw(r, unix.SYS_PIVOT_ROOT, cstr("/tmp"), cstr("/tmp")) },
	"chroot":           func(r *result, _ string) { raw(r, unix.SYS_CHROOT, cstr("/tmp")) },
	"kexec_load":       func(r *result, _ string) { raw(r, unix.SYS_KEXEC_LOAD) },
	"init_module":      func(r *result, _ string) { raw(r, unix.SYS_INIT_MODULE) },
	"reboot": func(r *result, _ string) {
		raw(r, unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2, unix.LINUX_REBOOT_CMD_CAD_OFF)
	},
	"swapon":        func(r *result, _ string) { raw(r, unix.SYS_SWAPON, cstr("/tmp/swap")) },
	"clone-newuser": func(r *result, _ string) { raw(r, unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD)) },
	"clone-newnet":  func(r *result, _ string) { raw(r, unix.SYS_CLONE, unix.CLONE_NEWNET|uintptr(unix.SIGCHLD)) },
	"tiocsti":       func(r *result, _ string) { raw(r, unix.SYS_IOCTL, 0, unix.TIOCSTI, cstr("x")) },
	"x32":           func(r *result, _ string) { raw(r, unix.SYS_GETPID|0x40000000) },
	// Resources.
	"fork-bomb": forkBomb,
	"mem-bomb":  memBomb,
	"cpu-hog":   cpuHog,
	"fd-bomb":   fdBomb,
	"fill-tmp":  fillTmp,
	"ignore-term": func(r *result, d string) {
		t, _ := time.ParseDuration(d)
		time.Sleep(t)
		r.Errno = "ok"
	},
	"sleep": func(r *result, d string) { t, _ := time.ParseDuration(d); time.Sleep(t); r.Errno = "ok" },
	"exit":  func(r *result, code string) { n, _ := strconv.Atoi(code); os.Exit(n) },
}

// execTmp writes a copy of itself to /tmp (noexec) and tries to run it.
func execTmp(r *result, _ string) {
	self, err := os.ReadFile("/proc/self/exe")
	if err == nil {
		err = os.WriteFile("/tmp/copy", self, 0o755)
	}
	if err == nil {
		err = unix.Exec("/tmp/copy", []string{"copy"}, nil)
	}
	r.Errno = errnoName(err)
}

// procFdCwd tries CVE-2024-21626: a leaked directory fd from the runtime
// used as cwd to walk out to the host's root.
func procFdCwd(r *result, _ string) {
	r.Errno = "ENOENT"
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if err := unix.Chdir("/proc/self/fd/" + e.Name()); err != nil {
			continue
		}
		if _, err := os.Stat("../../../../../../etc/passwd"); err == nil {
			r.Errno = "ok"
			r.Info["escaped_via"] = e.Name()
			return
		}
	}
}

func listFds(r *result, _ string) {
	entries, err := os.ReadDir("/proc/self/fd")
	r.Errno = errnoName(err)
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		r.Info[e.Name()] = target
	}
}

func env(r *result, _ string) {
	r.Errno = "ok"
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		r.Info[k] = v
	}
}

func procStatus(r *result, _ string) {
	data, err := os.ReadFile("/proc/self/status")
	r.Errno = errnoName(err)
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			r.Info[k] = strings.TrimSpace(v)
		}
	}
	if m, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		r.Info["uid_map"] = strings.Join(strings.Fields(string(m)), " ")
	}
}

func signalPid(r *result, pid string) {
	n, _ := strconv.Atoi(pid)
	r.Errno = errnoName(unix.Kill(n, unix.SIGKILL))
}

func connectUnix(r *result, addr string) {
	c, err := net.DialTimeout("unix", addr, time.Second)
	if err == nil {
		c.Close()
	}
	var op *net.OpError
	if errors.As(err, &op) {
		err = op.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	r.Errno = errnoName(err)
}

// forkBomb starts copies of itself that sleep until the pids limit refuses.
func forkBomb(r *result, _ string) {
	var err error
	for r.Count = 0; r.Count < 10000; r.Count++ {
		_, err = syscall.ForkExec("/module/hostile", []string{"hostile"}, &syscall.ProcAttr{
			Env: []string{"BLVM_HOSTILE_SLEEP=1"},
		})
		if err != nil {
			break
		}
	}
	r.Errno = errnoName(err)
}

func memBomb(r *result, _ string) {
	var keep [][]byte
	for {
		b := make([]byte, 16<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
		r.Count = int64(len(keep)) * 16 << 20
	}
}

func cpuHog(r *result, d string) {
	t, _ := time.ParseDuration(d)
	for end := time.Now().Add(t); time.Now().Before(end); {
		r.Count++
	}
	r.Errno = "ok"
}

func fdBomb(r *result, _ string) {
	var err error
	for {
		var fd int
		fd, err = unix.Open("/dev/null", unix.O_RDONLY, 0)
		if err != nil {
			break
		}
		_ = fd
		r.Count++
	}
	r.Errno = errnoName(err)
}

func fillTmp(r *result, _ string) {
	f, err := os.Create("/tmp/fill")
	if err == nil {
		buf := make([]byte, 1<<20)
		for {
			var n int
			n, err = f.Write(buf)
			r.Count += int64(n)
			if err != nil {
				break
			}
		}
	}
	r.Errno = errnoName(errors.Unwrap(err))
	if r.Errno == "" || r.Errno == "ok" {
		r.Errno = errnoName(err)
	}
}

func init() {
	// The fork bomb's children: exist, hold a pid, do nothing.
	if os.Getenv("BLVM_HOSTILE_SLEEP") != "" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
}
