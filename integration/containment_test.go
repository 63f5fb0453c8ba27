package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/runtime"
)

// Each row is one attack from DESIGN decision 5, made by the hostile module
// inside a real container. The row names the answer the kernel must give
// and the layer that gives it; host checks look for the side effect.
type attackRow struct {
	attack string
	arg    string
	want   string // errno name the module must get
	layer  string // what stops it, for the reader and the closing note
}

func TestRootContainment(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})

	// Another module's data: a real secret in a real neighbour's data dir.
	otherData := runtime.Layout{Root: s.root}.Data("neighbour")
	if err := os.MkdirAll(otherData, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(otherData, "secret")
	os.WriteFile(secret, []byte("neighbour's key"), 0o600)

	// A host pathname socket that is not mounted, and a host abstract socket.
	hostSock := filepath.Join(s.root, "host.sock")
	pathLn, err := net.Listen("unix", hostSock)
	if err != nil {
		t.Fatal(err)
	}
	defer pathLn.Close()
	abstract := "@blvm-it-" + randHex(8)
	absLn, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer absLn.Close()
	accepted := make(chan string, 2)
	for _, ln := range []net.Listener{pathLn, absLn} {
		go func() {
			if c, err := ln.Accept(); err == nil {
				accepted <- ln.Addr().String()
				c.Close()
			}
		}()
	}

	rows := []attackRow{
		// Filesystem.
		{"read-host", "/etc/passwd", "ENOENT", "mount namespace: the rootfs is empty"},
		{"read-host", "/etc/shadow", "ENOENT", "mount namespace"},
		{"read-host", secret, "ENOENT", "mount namespace: other modules' data dirs are not mounted"},
		{"proc-root", "/etc/passwd", "ENOENT", "pid namespace: /proc/1 is the module itself"},
		{"write-rootfs", "", "EROFS", "read-only rootfs"},
		{"write-module", "", "EACCES", "Landlock (and a read-only bind mount)"},
		{"write-config", "", "EACCES", "Landlock (and a read-only bind mount)"},
		{"truncate-module", "", "EROFS", "read-only bind mount (create or truncate is refused before Landlock's check)"},
		{"truncate-config", "", "EROFS", "read-only bind mount"},
		{"read-proc-status", "", "EACCES", "Landlock: /proc is mounted but granted nothing"},
		{"write-dev", "", "EACCES", "Landlock"},
		{"exec-tmp", "", "EACCES", "Landlock: execute only on the module binary (and /tmp is noexec)"},
		{"proc-self-exe", "", "EACCES", "Landlock: no write right on /proc (CVE-2019-5736)"},
		{"proc-fd-cwd", "", "ENOENT", "no host fds reach the container (CVE-2024-21626)"},
		{"sys-cgroup", "", "ENOENT", "no cgroupfs mounted inside"},
		{"mknod", "", "ENOSYS", "seccomp: not in the allowlist"},
		// Network.
		{"socket-inet", "", "EAFNOSUPPORT", "seccomp: socket() only for AF_UNIX"},
		{"socket-inet6", "", "EAFNOSUPPORT", "seccomp"},
		{"socket-netlink", "", "EAFNOSUPPORT", "seccomp"},
		{"socket-packet", "", "EAFNOSUPPORT", "seccomp"},
		{"socket-mptcp", "", "EAFNOSUPPORT", "seccomp (MPTCP is outside Landlock's TCP rules)"},
		{"abstract-unix", abstract, "ECONNREFUSED", "network namespace: abstract sockets are per netns (CVE-2020-15257)"},
		{"host-socket", hostSock, "ENOENT", "mount namespace: only the hub socket is mounted"},
		// Syscalls.
		{"ptrace", "", "EPERM", "seccomp deny list"},
		{"process_vm_readv", "", "EPERM", "seccomp deny list"},
		{"bpf", "", "EPERM", "seccomp deny list"},
		{"io_uring_setup", "", "EPERM", "seccomp deny list"},
		{"userfaultfd", "", "EPERM", "seccomp deny list"},
		{"perf_event_open", "", "EPERM", "seccomp deny list"},
		{"keyctl", "", "EPERM", "seccomp deny list"},
		{"mount", "", "EPERM", "seccomp deny list"},
		{"umount2", "", "EPERM", "seccomp deny list"},
		{"unshare", "", "EPERM", "seccomp deny list"},
		{"setns", "", "EPERM", "seccomp deny list"},
		{"pivot_root", "", "EPERM", "seccomp deny list"},
		{"chroot", "", "EPERM", "seccomp deny list"},
		{"kexec_load", "", "EPERM", "seccomp deny list"},
		{"init_module", "", "EPERM", "seccomp deny list"},
		{"reboot", "", "EPERM", "seccomp deny list"},
		{"swapon", "", "EPERM", "seccomp deny list"},
		{"clone-newuser", "", "EPERM", "seccomp: clone with namespace flags"},
		{"clone-newnet", "", "EPERM", "seccomp: clone with namespace flags"},
		{"tiocsti", "", "ENOSYS", "seccomp: ioctl allowlist"},
		// Privilege and isolation.
		{"setuid-root", "", "EPERM", "no capabilities; uid 1000 in its user namespace"},
		{"signal-host-pid", strconv.Itoa(os.Getpid()), "ESRCH", "pid namespace: no host pid exists in it (seccomp allows kill within it since issue 11); the Landlock signal scope backs it up"},
	}
	for _, r := range rows {
		t.Run(r.attack+"/"+filepath.Base(r.arg), func(t *testing.T) {
			o := s.attack(r.attack, r.arg)
			if o.res.Attack != r.attack {
				t.Fatalf("no result line: exit %v\nstdout %q\nstderr %q", o.exit, o.stdout, o.stderr)
			}
			if o.res.Errno != r.want {
				t.Errorf("%s(%s) = %s, want %s (%s)", r.attack, r.arg, o.res.Errno, r.want, r.layer)
			}
			if !o.exit.Clean() {
				t.Errorf("module did not exit cleanly after the attack: %v", o.exit)
			}
		})
	}

	// Side effects on the host.
	select {
	case addr := <-accepted:
		t.Errorf("a host socket (%s) accepted a connection from the container", addr)
	default:
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "neighbour's key" {
		t.Errorf("neighbour's secret changed: %q %v", b, err)
	}
	if _, err := os.Stat("/blvm-escape"); err == nil {
		t.Error("/blvm-escape exists on the host")
	}
}

// TestRootContainmentX32 checks that a syscall with the x32 bit kills the
// whole module (the shim's stacked filter), not one thread.
func TestRootContainmentX32(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	o := s.attack("x32", "")
	if o.exit.Signal != unix.SIGSYS {
		t.Fatalf("x32 syscall: %v, want killed by SIGSYS; stdout %q", o.exit, o.stdout)
	}
}

// TestRootBinaryUntouched checks CVE-2019-5736 from the host side: after
// the module tried to write /proc/self/exe, the verified binary and the
// runtime's own binary are byte-for-byte what they were.
func TestRootBinaryUntouched(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	before, _ := os.ReadFile(s.hostile)
	self, _ := os.ReadFile("/proc/self/exe")
	o := s.attack("proc-self-exe", "")
	if o.res.Errno == "ok" {
		t.Fatal("the module opened /proc/self/exe for writing")
	}
	after, _ := os.ReadFile(s.hostile)
	selfAfter, _ := os.ReadFile("/proc/self/exe")
	if !bytes.Equal(before, after) || !bytes.Equal(self, selfAfter) {
		t.Fatal("a binary changed on the host")
	}
}

// TestRootPrivilegeFromHost reads the running module's credentials from the
// host's /proc, where the module cannot lie: no capabilities, no_new_privs,
// seccomp in filter mode, and a host uid inside the module's own range.
func TestRootPrivilegeFromHost(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	if err := s.start("hostile", "sleep", "10s", nil, nil); err != nil {
		t.Fatal(err)
	}
	st, _ := s.sup.Status("hostile")
	if st.State != runtime.Running || st.Pid == 0 {
		t.Fatalf("status %+v", st)
	}
	status := procStatus(t, st.Pid)
	for key, want := range map[string]string{
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
		"CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if status[key] != want {
			t.Errorf("%s = %q, want %q", key, status[key], want)
		}
	}
	uid, _ := strconv.Atoi(strings.Fields(status["Uid"])[0])
	if uid < runtime.IDsBase || uid == 0 {
		t.Errorf("host uid %d: not in the modules' ranges (from %d)", uid, runtime.IDsBase)
	}
	data := runtime.Layout{Root: s.root}.Data("hostile")
	var fi unix.Stat_t
	if err := unix.Stat(data, &fi); err != nil || int(fi.Uid) != uid {
		t.Errorf("data dir owned by %d (%v), want the module's uid %d", fi.Uid, err, uid)
	}

	// Every fd the module holds, as the host sees it: stdio (/dev/null or
	// the runtime's pipes), its own hub connection, and the Go runtime's
	// epoll and event fds. Nothing that names a host file or directory.
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(st.Pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, _ := os.Readlink("/proc/" + strconv.Itoa(st.Pid) + "/fd/" + e.Name())
		switch {
		case target == "/dev/null", strings.HasPrefix(target, "pipe:"), strings.HasPrefix(target, "socket:"),
			strings.HasPrefix(target, "anon_inode:"):
		default:
			t.Errorf("fd %s -> %s: not stdio, socket or runtime-internal", e.Name(), target)
		}
	}
	if len(entries) > 8 {
		t.Errorf("%d fds open, want at most 8", len(entries))
	}

	// The environment, as the module sees it.
	s.sup.Stop(context.Background(), "hostile")
	o := s.attack("env", "")
	for k := range o.res.Info {
		if !strings.HasPrefix(k, "BLVM_") {
			t.Errorf("environment variable %s reached the module", k)
		}
	}
	if len(o.res.Info) == 0 {
		t.Error("the module saw no environment at all")
	}
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func TestRootResourceLimits(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	lim := s.cfg.Limits

	t.Run("fork-bomb", func(t *testing.T) {
		o := s.attack("fork-bomb", "")
		if o.res.Errno != "EAGAIN" || o.res.Count >= lim.Pids {
			t.Fatalf("fork bomb: %s after %d processes, want EAGAIN below the pids limit %d", o.res.Errno, o.res.Count, lim.Pids)
		}
		// The host still starts processes at once.
		start := time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil || time.Since(start) > 2*time.Second {
			t.Fatalf("host unresponsive after the fork bomb: %v in %v", err, time.Since(start))
		}
	})
	t.Run("mem-bomb", func(t *testing.T) {
		o := s.attack("mem-bomb", "")
		if !o.exit.OOMKilled || o.exit.Signal != unix.SIGKILL {
			t.Fatalf("memory bomb ended with %v, want an OOM kill reported", o.exit)
		}
	})
	t.Run("fd-bomb", func(t *testing.T) {
		o := s.attack("fd-bomb", "")
		if o.res.Errno != "EMFILE" || uint64(o.res.Count) >= lim.OpenFiles {
			t.Fatalf("fd bomb: %s after %d fds, want EMFILE below %d", o.res.Errno, o.res.Count, lim.OpenFiles)
		}
	})
	t.Run("fill-tmp", func(t *testing.T) {
		o := s.attack("fill-tmp", "")
		if o.res.Errno != "ENOSPC" || o.res.Count > lim.TmpBytes {
			t.Fatalf("fill /tmp: %s after %d bytes, want ENOSPC within %d", o.res.Errno, o.res.Count, lim.TmpBytes)
		}
	})
	t.Run("cpu-hog", func(t *testing.T) {
		if err := s.start("hostile", "cpu-hog", "4s", nil, nil); err != nil {
			t.Fatal(err)
		}
		defer s.sup.Stop(context.Background(), "hostile")
		time.Sleep(500 * time.Millisecond)
		a, err := s.sup.Stats("hostile")
		if err != nil {
			t.Fatal(err)
		}
		const window = 2 * time.Second
		time.Sleep(window)
		b, err := s.sup.Stats("hostile")
		if err != nil {
			t.Fatal(err)
		}
		used := float64(b.CPUNanos-a.CPUNanos) / float64(window.Nanoseconds())
		if b.ThrottledPeriods <= a.ThrottledPeriods || used > lim.CPUs*1.3 {
			t.Fatalf("cpu hog used %.2f CPUs (limit %.2f), throttled periods %d -> %d", used, lim.CPUs, a.ThrottledPeriods, b.ThrottledPeriods)
		}
		t.Logf("cpu hog held to %.2f CPUs (limit %.2f); %d periods throttled", used, lim.CPUs, b.ThrottledPeriods-a.ThrottledPeriods)
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
