package policy

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecVersionIsTheLowestThatExpressesIt(t *testing.T) {
	errno := uint(38)
	for _, c := range []struct {
		name string
		sc   *specs.LinuxSeccomp
		want string
	}{
		{"no seccomp", nil, "1.0.2"},
		{"allow and kill", &specs.LinuxSeccomp{DefaultAction: specs.ActKill, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}, "1.0.2"},
		{"plain errno (EPERM)", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}, "1.0.2"},
		{"defaultErrnoRet", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: &errno}, "1.1.0"},
		{"a rule's errnoRet", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"ptrace"}, Action: specs.ActErrno, ErrnoRet: &errno}}}, "1.1.0"},
		{"kill process", &specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess}, "1.1.0"},
		{"a rule killing the thread", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"ptrace"}, Action: specs.ActKillThread}}}, "1.1.0"},
	} {
		s := &specs.Spec{Linux: &specs.Linux{Seccomp: c.sc}}
		if got := specVersion(s); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
