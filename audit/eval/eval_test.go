package eval

import (
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/audit/seccompabi"
	"github.com/blvm/blvm-sandbox/policy"
)

func TestVerdict(t *testing.T) {
	s := policy.Seccomp{
		DefaultAction: policy.ActErrno, DefaultErrno: "ENOSYS", Arch: "amd64",
		Rules: []policy.SyscallRule{
			{Syscall: "getpid", Action: policy.ActAllow},
			{Syscall: "kexec_load", Action: policy.ActKill},
			{Syscall: "chmod", Action: policy.ActAllow, Args: []policy.Arg{{Index: 1, Op: "masked_eq", Mask: 0o77, Value: 0}}},
			{Syscall: "chmod", Action: policy.ActErrno, Errno: "EPERM", Args: []policy.Arg{{Index: 1, Op: "masked_ne", Mask: 0o77, Value: 0}}},
			{Syscall: "socket", Action: policy.ActAllow, Args: []policy.Arg{{Index: 0, Op: "eq", Value: 1}}},
			{Syscall: "socket", Action: policy.ActErrno, Errno: "EAFNOSUPPORT", Args: []policy.Arg{{Index: 0, Op: "ne", Value: 1}}},
			// Overlapping on purpose: both hold for arg0 == 5.
			{Syscall: "prctl", Action: policy.ActAllow, Args: []policy.Arg{{Index: 0, Op: "ne", Value: 1}}},
			{Syscall: "prctl", Action: policy.ActErrno, Errno: "EPERM", Args: []policy.Arg{{Index: 0, Op: "eq", Value: 5}}},
		},
	}
	e, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	x := func(nr int32, args ...uint64) seccompabi.Data {
		d := seccompabi.Data{Nr: nr, Arch: seccompabi.ArchX86_64}
		copy(d.Args[:], args)
		return d
	}
	enosys, eperm := seccompabi.Errno(38), seccompabi.Errno(1)
	for _, c := range []struct {
		name string
		d    seccompabi.Data
		want uint32
	}{
		{"getpid", x(39), seccompabi.RetAllow},
		{"unknown to the policy", x(500), enosys},
		{"kill", x(246), seccompabi.RetKillProcess},
		{"x32 getpid", x(39 | seccompabi.X32Bit), seccompabi.RetKillProcess},
		{"i386 getpid", seccompabi.Data{Nr: 20, Arch: seccompabi.ArchI386}, seccompabi.RetKillProcess},
		{"chmod 0700", x(90, 0, 0o700), seccompabi.RetAllow},
		{"chmod 0701", x(90, 0, 0o701), eperm},
		{"chmod 0700 high bits", x(90, 0, 1<<40|0o700), seccompabi.RetAllow},
		{"socket AF_UNIX", x(41, 1), seccompabi.RetAllow},
		{"socket AF_UNIX high bits", x(41, 1<<32|1), seccompabi.Errno(97)},
		{"socket AF_INET", x(41, 2), seccompabi.Errno(97)},
		{"prctl 1: no rule holds", x(157, 1), enosys},
		{"prctl 5: the stricter of two", x(157, 5), eperm},
	} {
		if got := e.Verdict(c.d); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, seccompabi.String(got), seccompabi.String(c.want))
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, c := range []struct {
		rule policy.SyscallRule
		want string
	}{
		{policy.SyscallRule{Syscall: "no_such_call", Action: policy.ActAllow}, `syscall "no_such_call" is not in the amd64 table`},
		{policy.SyscallRule{Syscall: "getpid", Action: policy.ActErrno, Errno: "EWHAT"}, `unknown errno "EWHAT"`},
		{policy.SyscallRule{Syscall: "getpid", Action: "trap"}, `unknown action "trap"`},
		{policy.SyscallRule{Syscall: "getpid", Action: policy.ActAllow, Args: []policy.Arg{{Index: 6, Op: "eq"}}}, "index 6 out of range"},
		{policy.SyscallRule{Syscall: "getpid", Action: policy.ActAllow, Args: []policy.Arg{{Index: 0, Op: "lt"}}}, `unknown op "lt"`},
	} {
		_, err := New(policy.Seccomp{DefaultAction: policy.ActErrno, DefaultErrno: "ENOSYS", Arch: "amd64", Rules: []policy.SyscallRule{c.rule}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want %q", c.rule, err, c.want)
		}
	}
	if _, err := New(policy.Seccomp{DefaultAction: policy.ActAllow, Arch: "mips"}); err == nil {
		t.Error("New accepted an arch it has no table for")
	}
}
