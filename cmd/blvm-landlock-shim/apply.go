package main

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// fileRights are the only rights the kernel accepts on a rule for a
// non-directory; directory rights (read_dir, make_*, remove_*, refer) have
// no meaning there and make landlock_add_rule fail with EINVAL.
const fileRights = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile |
	ll.AccessFSTruncate | ll.AccessFSIoctlDev

// scopesABI is the first Landlock ABI with IPC scopes.
const scopesABI = 6

// apply confines the calling process: first Landlock, then the stacked
// seccomp filter. Both survive the execve that follows.
func apply(c config) error {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil {
		return fmt.Errorf("Landlock is not available on this kernel (need ABI %d): %w", c.minABI, err)
	}
	if abi < c.minABI {
		return fmt.Errorf("the kernel's Landlock ABI is %d, the policy requires at least %d", abi, c.minABI)
	}
	handled, err := handledRights(c.minABI)
	if err != nil {
		return err
	}
	if c.scopes != 0 && c.minABI < scopesABI {
		return fmt.Errorf("Landlock scopes need ABI %d, but --min-abi is %d", scopesABI, c.minABI)
	}
	rules := make([]landlock.Rule, 0, len(c.rules))
	for _, r := range c.rules {
		if r.access&^handled != 0 {
			return fmt.Errorf("--allow %s: rights %v need a Landlock ABI above %d", r.path, landlock.AccessFSSet(r.access&^handled), c.minABI)
		}
		access := r.access
		st, err := os.Stat(r.path)
		if err != nil {
			return fmt.Errorf("--allow %s: %w", r.path, err)
		}
		if !st.IsDir() {
			access &= fileRights
		}
		rules = append(rules, landlock.PathAccess(landlock.AccessFSSet(access), r.path))
	}
	// Handled is the full set of rights of --min-abi, not just the ones the
	// rules name: every right not granted is denied.
	cfg := landlock.Config{HandledAccessFS: landlock.AccessFSSet(handled), Scoped: landlock.ScopedSet(c.scopes)}
	if err := cfg.Restrict(rules...); err != nil {
		return fmt.Errorf("apply Landlock ruleset: %w", err)
	}
	if err := killForeignArch(); err != nil {
		return err
	}
	return nil
}

// handledRights is the set of filesystem rights Landlock ABI abi defines.
func handledRights(abi int) (uint64, error) {
	versions := []landlock.Config{landlock.V1, landlock.V2, landlock.V3, landlock.V4, landlock.V5,
		landlock.V6, landlock.V7, landlock.V8, landlock.V9, landlock.V10, landlock.V11}
	if abi < 1 || abi > len(versions) {
		return 0, fmt.Errorf("--min-abi %d: this shim knows Landlock ABI 1 to %d", abi, len(versions))
	}
	return uint64(versions[abi-1].HandledAccessFS), nil
}

// killForeignArch stacks a seccomp filter on the calling thread that kills
// the whole process for a syscall from any arch but the native one, or with
// the x32 bit set on x86_64, and allows everything else (the runtime's
// filter still decides those). libcontainer's filter already stops these,
// but with libseccomp's default bad-arch action, SECCOMP_RET_KILL_THREAD,
// which a multi-threaded module survives; the kernel applies the strictest
// answer of stacked filters, so KILL_PROCESS wins. It is loaded with
// prctl(PR_SET_SECCOMP), which the policy allows for this purpose.
func killForeignArch() error {
	prog, err := archFilter(runtime.GOARCH)
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

// archFilter builds the classic BPF program of killForeignArch.
func archFilter(goarch string) ([]unix.SockFilter, error) {
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
