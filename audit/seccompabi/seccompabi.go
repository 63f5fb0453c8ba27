// Package seccompabi holds the kernel's side of seccomp that both halves of
// the audit share: struct seccomp_data, the filter return values, and the
// rule by which the kernel combines the answers of stacked filters. It is
// written from linux/seccomp.h and kernel/seccomp.c, not from libseccomp.
package seccompabi

import "fmt"

// Data is struct seccomp_data: what a filter sees of one syscall.
type Data struct {
	Nr   int32
	Arch uint32 // AUDIT_ARCH_*
	IP   uint64
	Args [6]uint64
}

// Audit architectures (linux/audit.h).
const (
	ArchX86_64  = 0xc000003e // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
	ArchI386    = 0x40000003 // EM_386 | __AUDIT_ARCH_LE
	ArchAARCH64 = 0xc00000b7
	// X32Bit is __X32_SYSCALL_BIT: x32 syscalls arrive with AUDIT_ARCH_X86_64
	// and this bit set in the number.
	X32Bit = 0x40000000
)

// Filter return values (linux/seccomp.h). The low 16 bits are the data.
const (
	RetKillProcess = 0x80000000
	RetKillThread  = 0x00000000
	RetTrap        = 0x00030000
	RetErrno       = 0x00050000
	RetUserNotif   = 0x7fc00000
	RetTrace       = 0x7ff00000
	RetLog         = 0x7ffc0000
	RetAllow       = 0x7fff0000

	RetActionFull = 0xffff0000
	RetData       = 0x0000ffff
)

// Errno is the return value of SECCOMP_RET_ERRNO with errno n.
func Errno(n uint16) uint32 { return RetErrno | uint32(n) }

// rank orders actions from the most to the least restrictive exactly as
// seccomp_run_filters does: it compares ACTION_ONLY(ret) as signed 32-bit
// values, lower wins, which puts KILL_PROCESS (0x80000000, negative) first.
// An action the kernel does not know ranks by its value too, and is then
// carried out as KILL_PROCESS.
func rank(ret uint32) int32 { return int32(ret & RetActionFull) }

// Combine is the kernel's answer for a syscall given each stacked filter's
// return value, in any order: the most restrictive action wins
// (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG >
// ALLOW), with the data of the first filter to run that returned it. The
// kernel runs the most recently loaded filter first, so rets is taken in
// load order and walked backwards. No filter at all allows.
func Combine(rets []uint32) uint32 {
	out := uint32(RetAllow)
	for i := len(rets) - 1; i >= 0; i-- {
		// Strictly lower only: on a tie the filter that ran first keeps it.
		if rank(rets[i]) < rank(out) {
			out = rets[i]
		}
	}
	return out
}

// String names a return value the way seccomp(2) does.
func String(ret uint32) string {
	data := ret & RetData
	switch ret & RetActionFull {
	case RetKillProcess:
		return "KILL_PROCESS"
	case RetKillThread:
		return "KILL_THREAD"
	case RetTrap:
		return fmt.Sprintf("TRAP(%d)", data)
	case RetErrno:
		return fmt.Sprintf("ERRNO(%d)", data)
	case RetUserNotif:
		return "USER_NOTIF"
	case RetTrace:
		return fmt.Sprintf("TRACE(%d)", data)
	case RetLog:
		return "LOG"
	case RetAllow:
		return "ALLOW"
	}
	return fmt.Sprintf("unknown(%#x), carried out as KILL_PROCESS", ret)
}
