// Package eval computes the verdict a Policy declares for one syscall: what
// the seccomp part of the policy says must happen, read from the Policy's
// data alone. It shares nothing with the renderers or with libseccomp, so
// that comparing its verdicts with the loaded filters' proves the filters.
package eval

import (
	"fmt"
	"sort"

	"github.com/blvm/blvm-sandbox/audit/seccompabi"
	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/policy"
)

// Evaluator answers for one compiled seccomp policy.
type Evaluator struct {
	arch  uint32
	x32   bool // the native arch has an x32 twin whose numbers carry X32Bit
	rules map[int32][]rule
	def   uint32
	nums  map[string]int32
}

type rule struct {
	policy.SyscallRule
	ret uint32
}

// Arch is what the evaluator knows of one architecture.
type Arch struct {
	Audit uint32           // AUDIT_ARCH_* of the native arch
	X32   bool             // x86_64: numbers with X32Bit are x32 syscalls
	Nums  map[string]int32 // syscall name -> number
	Last  int32            // the highest number the table knows
}

// ArchOf gives the syscall table of a Go GOARCH.
func ArchOf(goarch string) (Arch, error) {
	switch goarch {
	case "amd64":
		return Arch{Audit: seccompabi.ArchX86_64, X32: true, Nums: sysnumAMD64, Last: last(sysnumAMD64)}, nil
	}
	return Arch{}, fmt.Errorf("audit: no syscall table for GOARCH %q", goarch)
}

// I386 is the i386 table, the foreign arch an x86_64 kernel runs.
func I386() Arch {
	return Arch{Audit: seccompabi.ArchI386, Nums: sysnumI386, Last: last(sysnumI386)}
}

func last(m map[string]int32) int32 {
	var n int32
	for _, v := range m {
		n = max(n, v)
	}
	return n
}

// New builds an evaluator for s. Every rule must name a syscall of the
// arch's table and an action and errno the policy defines.
func New(s policy.Seccomp) (*Evaluator, error) {
	a, err := ArchOf(s.Arch)
	if err != nil {
		return nil, err
	}
	def, err := ret(s.DefaultAction, s.DefaultErrno)
	if err != nil {
		return nil, fmt.Errorf("audit: seccomp default: %w", err)
	}
	e := &Evaluator{arch: a.Audit, x32: a.X32, rules: map[int32][]rule{}, def: def, nums: a.Nums}
	for i, r := range s.Rules {
		nr, ok := a.Nums[r.Syscall]
		if !ok {
			return nil, fmt.Errorf("audit: seccomp.rules[%d]: syscall %q is not in the %s table", i, r.Syscall, s.Arch)
		}
		v, err := ret(r.Action, r.Errno)
		if err != nil {
			return nil, fmt.Errorf("audit: seccomp.rules[%d] (%s): %w", i, r.Syscall, err)
		}
		for j, c := range r.Args {
			switch {
			case c.Index > 5:
				return nil, fmt.Errorf("audit: seccomp.rules[%d] (%s): args[%d]: index %d out of range 0-5", i, r.Syscall, j, c.Index)
			case c.Op != "eq" && c.Op != "ne" && c.Op != "masked_eq" && c.Op != "masked_ne":
				return nil, fmt.Errorf("audit: seccomp.rules[%d] (%s): args[%d]: unknown op %q", i, r.Syscall, j, c.Op)
			}
		}
		e.rules[nr] = append(e.rules[nr], rule{SyscallRule: r, ret: v})
	}
	return e, nil
}

// ret is the seccomp return value of a policy action. The policy's kill is
// the whole process (policy.ActKill renders as KILL_PROCESS).
func ret(a policy.Action, errno string) (uint32, error) {
	switch a {
	case policy.ActAllow:
		return seccompabi.RetAllow, nil
	case policy.ActKill:
		return seccompabi.RetKillProcess, nil
	case policy.ActErrno:
		n, ok := capabilities.Errnos[errno]
		if !ok || n > seccompabi.RetData {
			return 0, fmt.Errorf("unknown errno %q", errno)
		}
		return seccompabi.Errno(uint16(n)), nil
	}
	return 0, fmt.Errorf("unknown action %q", a)
}

// Verdict is the return value the policy declares for d:
//   - any arch but the native one, and on x86_64 any number with the x32
//     bit, kills the process (Seccomp.Arch, Seccomp.BadArch);
//   - otherwise the rules of that syscall whose argument conditions all
//     hold decide; when several hold, the most restrictive action wins, as
//     it would between stacked filters (the policy never orders its rules);
//   - otherwise the default action.
func (e *Evaluator) Verdict(d seccompabi.Data) uint32 {
	if d.Arch != e.arch || e.x32 && uint32(d.Nr)&seccompabi.X32Bit != 0 {
		return seccompabi.RetKillProcess
	}
	var matched []uint32
	for _, r := range e.rules[d.Nr] {
		if holds(r.Args, d.Args) {
			matched = append(matched, r.ret)
		}
	}
	if len(matched) == 0 {
		return e.def
	}
	return seccompabi.Combine(matched)
}

func holds(conds []policy.Arg, args [6]uint64) bool {
	for _, c := range conds {
		v := args[c.Index]
		var ok bool
		switch c.Op {
		case "eq":
			ok = v == c.Value
		case "ne":
			ok = v != c.Value
		case "masked_eq":
			ok = v&c.Mask == c.Value
		case "masked_ne":
			ok = v&c.Mask != c.Value
		}
		if !ok {
			return false
		}
	}
	return true
}

// Conditional is one syscall whose rules test arguments.
type Conditional struct {
	Syscall string
	Nr      int32
	Conds   []policy.Arg // every condition of every rule of the syscall
}

// Conditionals lists the syscalls with argument conditions, by number.
func (e *Evaluator) Conditionals() []Conditional {
	var out []Conditional
	for nr, rs := range e.rules {
		c := Conditional{Nr: nr, Syscall: rs[0].Syscall}
		for _, r := range rs {
			c.Conds = append(c.Conds, r.Args...)
		}
		if len(c.Conds) > 0 {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Nr < out[j].Nr })
	return out
}
