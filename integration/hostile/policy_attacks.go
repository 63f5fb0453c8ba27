package main

// Attacks on the seccomp policy's families (issue 11): mode changes through
// every chmod entry point, statfs against fstatfs, and a module that runs
// itself as a child and waits for it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// childExitEnv makes the hostile binary exit at once with the code it
// holds, before it greets the hub: the child of the fork-wait attack.
const childExitEnv = "BLVM_HOSTILE_EXIT"

// holdFor is how long the policy attacks stay up after reporting, so the
// test can inspect the running container from the host.
const holdFor = 60 * time.Second

func init() {
	if code := os.Getenv(childExitEnv); code != "" {
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	attacks["chmod"] = chmodProbes
	attacks["statfs"] = statfsPair
	attacks["fork-wait"] = forkWait
	attacks["fork-nowait"] = forkNoWait
}

// report prints the result line now and keeps the module running, so the
// host can check modes, sockets and zombies while the container exists.
func report(r *result) {
	json.NewEncoder(os.Stdout).Encode(r)
	time.Sleep(holdFor)
}

// chmodProbes runs each "syscall:path:mode" item of arg (comma-separated)
// and records the errno per item. A path under /data/new- is created first
// with mode 0644, so an allowed change is visible from the host.
func chmodProbes(r *result, arg string) {
	for _, item := range strings.Split(arg, ",") {
		parts := strings.Split(item, ":")
		if len(parts) != 3 {
			r.Info[item] = "bad item"
			continue
		}
		mode, err := strconv.ParseUint(parts[2], 8, 32) // ignored by setxattr
		if err != nil {
			r.Info[item] = "bad mode"
			continue
		}
		path := parts[1]
		if strings.HasPrefix(path, "/data/new-") {
			fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				r.Info[item] = "create: " + errnoName(err)
				continue
			}
			unix.Close(fd)
		}
		r.Info[item] = errnoName(chmodVia(parts[0], path, uint32(mode)))
	}
	r.Errno = "ok"
	report(r)
}

func chmodVia(syscallName, path string, mode uint32) error {
	p := cstr(path)
	call := func(nr uintptr, args ...uintptr) error {
		var a [6]uintptr
		copy(a[:], args)
		if _, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]); e != 0 {
			return e
		}
		return nil
	}
	atFDCWD := ^uintptr(99) // AT_FDCWD, -100
	switch syscallName {
	case "chmod":
		return call(unix.SYS_CHMOD, p, uintptr(mode))
	case "fchmodat":
		return call(unix.SYS_FCHMODAT, atFDCWD, p, uintptr(mode))
	case "fchmodat2":
		return call(sysFchmodat2, atFDCWD, p, uintptr(mode), 0)
	case "setxattr":
		// An access ACL giving others rwx: a mode change in all but name.
		acl := []byte{2, 0, 0, 0, // POSIX_ACL_XATTR_VERSION
			0x01, 0, 0o7, 0, 0xff, 0xff, 0xff, 0xff, // ACL_USER_OBJ rwx
			0x04, 0, 0o7, 0, 0xff, 0xff, 0xff, 0xff, // ACL_GROUP_OBJ rwx
			0x20, 0, 0o7, 0, 0xff, 0xff, 0xff, 0xff} // ACL_OTHER rwx
		return unix.Setxattr(path, "system.posix_acl_access", acl, 0)
	case "fchmod":
		// The hub socket cannot be opened for reading (Landlock grants no
		// right on it); an O_PATH descriptor reaches the filter all the same,
		// since seccomp runs before the kernel looks at the descriptor.
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fd, err = unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		defer unix.Close(fd)
		return call(unix.SYS_FCHMOD, uintptr(fd), uintptr(mode))
	}
	return fmt.Errorf("unknown chmod syscall %q", syscallName)
}

// sysFchmodat2 is fchmodat2's number on amd64 and arm64 alike (Linux 6.6).
const sysFchmodat2 = 452

// statfsPair asks statfs and fstatfs about the same path and reports both
// answers, which must agree.
func statfsPair(r *result, path string) {
	var a, b unix.Statfs_t
	errA := unix.Statfs(path, &a)
	fd, errB := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errB == nil {
		errB = unix.Fstatfs(fd, &b)
		unix.Close(fd)
	}
	r.Info["statfs"] = errnoName(errA)
	r.Info["fstatfs"] = errnoName(errB)
	r.Info["statfs_type"] = fmt.Sprintf("%#x", a.Type)
	r.Info["fstatfs_type"] = fmt.Sprintf("%#x", b.Type)
	r.Info["statfs_blocks"] = strconv.FormatUint(a.Blocks, 10)
	r.Info["fstatfs_blocks"] = strconv.FormatUint(b.Blocks, 10)
	r.Errno = "ok"
	if errA != nil || errB != nil {
		r.Errno = errnoName(errors.Join(errA, errB))
	}
}

// forkWait runs this binary as a child with os/exec, the way a module runs
// a helper, and waits for it: the child exits with code 7 at once.
func forkWait(r *result, _ string) {
	cmd := exec.Command("/module/hostile")
	cmd.Env = []string{childExitEnv + "=7"}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Errno = "ok"
		r.Info["exit_code"] = strconv.Itoa(ee.ExitCode())
	case err == nil:
		r.Errno = "ok"
		r.Info["exit_code"] = "0"
	default:
		r.Errno = errnoName(err)
		r.Info["error"] = err.Error()
	}
	report(r)
}

// forkNoWait starts the same child and never waits: it must show up as a
// zombie from the host, which proves the zombie count can see one.
func forkNoWait(r *result, _ string) {
	cmd := exec.Command("/module/hostile")
	cmd.Env = []string{childExitEnv + "=7"}
	r.Errno = errnoName(cmd.Start())
	if cmd.Process != nil {
		r.Info["child_pid"] = strconv.Itoa(cmd.Process.Pid)
	}
	time.Sleep(200 * time.Millisecond) // let the child exit
	report(r)
}
