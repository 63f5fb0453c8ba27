package policy

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specVersion is the lowest runtime-spec release that expresses s. A
// runtime refuses an ociVersion newer than it knows (crun 1.8.1: "unknown
// version specified" for 1.3.0), and a version older than a field s uses
// would let a runtime of that version ignore the field. Only what OCISpec
// emits is considered: seccomp's errnoRet, defaultErrnoRet and the
// KILL_PROCESS and KILL_THREAD actions came in 1.1.0; the rest is 1.0.2.
func specVersion(s *specs.Spec) string {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return "1.0.2"
	}
	sc := s.Linux.Seccomp
	needs110 := func(a specs.LinuxSeccompAction, errno *uint) bool {
		return errno != nil || a == specs.ActKillProcess || a == specs.ActKillThread
	}
	if needs110(sc.DefaultAction, sc.DefaultErrnoRet) {
		return "1.1.0"
	}
	for _, r := range sc.Syscalls {
		if needs110(r.Action, r.ErrnoRet) {
			return "1.1.0"
		}
	}
	return "1.0.2"
}
