// Package archfilter builds and loads the tiny seccomp filter the Landlock
// shim stacks on top of libcontainer's: it kills the whole process for a
// syscall from any arch but the native one, or with the x32 bit set on
// x86_64, and allows everything else (the runtime's filter still decides
// those). It lives outside the shim so the auditor (audit/) loads and checks
// the very program the shim loads. It is pure Go: the shim is static.
package archfilter

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Program is the classic BPF program of the filter for goarch.
func Program(goarch string) ([]unix.SockFilter, error) {
	const (
		ldAbs   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq     = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset    = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret     = unix.BPF_RET | unix.BPF_K
		offNr   = 0 // struct seccomp_data: int nr; __u32 arch; ...
		offArch = 4
		x32Bit  = 0x40000000
	)
	allow := unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW}
	kill := unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS}
	switch goarch {
	case "amd64":
		return []unix.SockFilter{
			{Code: ldAbs, K: offArch},
			{Code: jeq, Jt: 0, Jf: 3, K: unix.AUDIT_ARCH_X86_64},
			{Code: ldAbs, K: offNr},
			{Code: jset, Jt: 1, Jf: 0, K: x32Bit},
			allow,
			kill,
		}, nil
	case "arm64":
		return []unix.SockFilter{
			{Code: ldAbs, K: offArch},
			{Code: jeq, Jt: 0, Jf: 1, K: unix.AUDIT_ARCH_AARCH64},
			allow,
			kill,
		}, nil
	}
	return nil, fmt.Errorf("no foreign-arch filter for GOARCH %q", goarch)
}

// Load stacks the filter of this machine's arch on the calling thread with
// prctl(PR_SET_SECCOMP), which the policy allows for this purpose. The
// caller must have no_new_privs set and keep its OS thread locked.
func Load() error {
	prog, err := Program(runtime.GOARCH)
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("stack the foreign-arch seccomp filter: %w", err)
	}
	runtime.KeepAlive(prog)
	return nil
}
