// Package kernelfilter gets the seccomp filters the kernel actually holds:
// it reads a thread's filters back with ptrace(PTRACE_SECCOMP_GET_FILTER),
// and it produces the filters the runtime would load by loading them, in a
// throwaway child, through the same code the runtime and the shim use
// (libcontainer's seccomp.InitSeccomp with its -ENOSYS stub, then
// archfilter.Load), and reading them back. Reading needs CAP_SYS_ADMIN.
package kernelfilter

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ptraceSeccompGetFilter is PTRACE_SECCOMP_GET_FILTER (linux/ptrace.h).
const ptraceSeccompGetFilter = 0x420c

// Read gives the seccomp filters of thread tid in load order (the first
// loaded first). It attaches with PTRACE_SEIZE, stops the thread with
// PTRACE_INTERRUPT for as long as the read takes, and detaches.
func Read(tid int) ([][]unix.SockFilter, error) {
	// Every ptrace request must come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(tid); err != nil {
		return nil, fmt.Errorf("ptrace seize %d: %w", tid, err)
	}
	defer unix.PtraceDetach(tid)
	if err := unix.PtraceInterrupt(tid); err != nil {
		return nil, fmt.Errorf("ptrace interrupt %d: %w", tid, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
		return nil, fmt.Errorf("wait for %d to stop: %w", tid, err)
	}
	if !ws.Stopped() {
		return nil, fmt.Errorf("thread %d did not stop (status %#x)", tid, ws)
	}
	var out [][]unix.SockFilter
	for i := 0; ; i++ {
		n, err := getFilter(tid, i, nil)
		// ENOENT: past the oldest; EINVAL at 0: not in filter mode at all.
		if errors.Is(err, unix.ENOENT) || i == 0 && errors.Is(err, unix.EINVAL) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("PTRACE_SECCOMP_GET_FILTER %d of thread %d: %w", i, tid, err)
		}
		prog := make([]unix.SockFilter, n)
		if _, err := getFilter(tid, i, prog); err != nil {
			return nil, fmt.Errorf("PTRACE_SECCOMP_GET_FILTER %d of thread %d: %w", i, tid, err)
		}
		out = append(out, prog)
	}
	return out, nil
}

// getFilter is one PTRACE_SECCOMP_GET_FILTER. Index 0 is the filter the
// thread loaded first (kernel/seccomp.c get_nth_filter walks back from the
// newest to the oldest minus the index), whatever ptrace(2) suggests. With no buffer it gives the instruction count.
func getFilter(tid, index int, buf []unix.SockFilter) (int, error) {
	var p uintptr
	if len(buf) > 0 {
		p = uintptr(unsafe.Pointer(&buf[0]))
	}
	r, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceSeccompGetFilter, uintptr(tid), uintptr(index), p, 0, 0)
	runtime.KeepAlive(buf)
	if errno != 0 {
		return 0, errno
	}
	if len(buf) > 0 && int(r) != len(buf) {
		return 0, fmt.Errorf("filter changed size while read: %d, then %d instructions", len(buf), r)
	}
	return int(r), nil
}
