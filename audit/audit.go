// Package audit proves that the seccomp filters a module runs under say
// what its Policy says: for every syscall number of the native arch, every
// x32 number, every i386 number, numbers past the last known one, and the
// boundary values of every argument condition, the verdict the Policy
// declares (audit/eval) must equal the answer of the loaded filters run
// together as the kernel runs them (audit/bpf).
package audit

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/blvm/blvm-sandbox/audit/bpf"
	"github.com/blvm/blvm-sandbox/audit/eval"
	"github.com/blvm/blvm-sandbox/audit/seccompabi"
	"github.com/blvm/blvm-sandbox/policy"
)

// pastKnown is how many numbers past each table's last are checked; the
// numbers around the sign bit are checked as well.
const pastKnown = 128

// x32Span covers the x32 table (the highest x32 number is 547).
const x32Span = 1024

// Report is the outcome of one verification.
type Report struct {
	Filters    []string       // the filters checked, in load order, with their sizes
	Syscalls   map[string]int // cases checked per arch ("x86_64", "x32", "i386")
	ArgCases   int            // argument boundary cases checked
	ArgRules   int            // syscalls with argument conditions
	Mismatches []Mismatch
}

// Mismatch is one case where the filters and the policy disagree.
type Mismatch struct {
	Arch    string
	Nr      int32
	Syscall string
	Args    [6]uint64
	Policy  uint32 // what the Policy declares
	Filter  uint32 // what the filters answer
}

func (m Mismatch) String() string {
	name := m.Syscall
	if name == "" {
		name = "?"
	}
	return fmt.Sprintf("%s %s (%d) args %#x: policy %s, filter %s", m.Arch, name, m.Nr, m.Args,
		seccompabi.String(m.Policy), seccompabi.String(m.Filter))
}

// Verify checks stack against the seccomp part of p.
func Verify(p *policy.Policy, stack bpf.Stack) (*Report, error) {
	ev, err := eval.New(p.Seccomp)
	if err != nil {
		return nil, err
	}
	native, err := eval.ArchOf(p.Seccomp.Arch)
	if err != nil {
		return nil, err
	}
	r := &Report{Syscalls: map[string]int{}}
	for _, f := range stack {
		r.Filters = append(r.Filters, fmt.Sprintf("%s: %d instructions", f.Name, len(f.Insns)))
	}
	names := func(a eval.Arch) map[int32]string {
		m := map[int32]string{}
		for n, nr := range a.Nums {
			if old, ok := m[nr]; !ok || n < old {
				m[nr] = n
			}
		}
		return m
	}
	nativeNames := names(native)
	check := func(arch string, d seccompabi.Data, name string) error {
		want := ev.Verdict(d)
		got, err := stack.Run(d)
		if err != nil {
			return err
		}
		if got != want {
			r.Mismatches = append(r.Mismatches, Mismatch{Arch: arch, Nr: d.Nr, Syscall: name, Args: d.Args, Policy: want, Filter: got})
		}
		return nil
	}
	sweep := func(arch string, audit uint32, numbers []int32, bit int32, nm map[int32]string) error {
		for _, nr := range numbers {
			if err := check(arch, seccompabi.Data{Nr: nr | bit, Arch: audit}, nm[nr]); err != nil {
				return err
			}
			r.Syscalls[arch]++
		}
		return nil
	}
	edges := []int32{0x3fffffff, 0x7fffffff, -0x80000000, -1}
	if err := sweep("x86_64", native.Audit, append(span(native.Last+pastKnown), edges...), 0, nativeNames); err != nil {
		return nil, err
	}
	if native.X32 {
		if err := sweep("x32", native.Audit, span(x32Span-1), seccompabi.X32Bit, nil); err != nil {
			return nil, err
		}
	}
	if native.Audit == seccompabi.ArchX86_64 {
		i386 := eval.I386()
		if err := sweep("i386", i386.Audit, append(span(i386.Last+pastKnown), edges...), 0, names(i386)); err != nil {
			return nil, err
		}
	}
	for _, c := range ev.Conditionals() {
		r.ArgRules++
		for _, d := range argCases(native.Audit, c) {
			if err := check("x86_64", d, c.Syscall); err != nil {
				return nil, err
			}
			r.ArgCases++
		}
	}
	return r, nil
}

func span(last int32) []int32 {
	out := make([]int32, last+1)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

// argCases are the boundary values of every condition of one syscall: the
// pinned value and its neighbours, each bit of a mask set and cleared on
// the value, the high 32 bits set on each, and 0 and all ones; each placed
// in its argument with the other arguments 0, and again with them all ones
// (what the other arguments hold must not matter unless a rule tests them).
func argCases(audit uint32, c eval.Conditional) []seccompabi.Data {
	values := map[uint][]uint64{}
	for _, a := range c.Conds {
		vs := []uint64{0, ^uint64(0), a.Value, a.Value + 1, a.Value - 1}
		if a.Op == "masked_eq" || a.Op == "masked_ne" {
			vs = append(vs, a.Mask, ^a.Mask)
			for bit := uint64(1); bit != 0; bit <<= 1 {
				if a.Mask&bit != 0 {
					vs = append(vs, a.Value|bit, a.Value&^bit)
				}
			}
		}
		for _, v := range vs[:len(vs):len(vs)] {
			vs = append(vs, v|0xffffffff00000000, v|1<<32, v&0xffffffff)
		}
		values[a.Index] = append(values[a.Index], vs...)
	}
	idx := make([]uint, 0, len(values))
	for i := range values {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	seen := map[[6]uint64]bool{}
	var out []seccompabi.Data
	for _, i := range idx {
		for _, v := range values[i] {
			for _, fill := range []uint64{0, ^uint64(0)} {
				var args [6]uint64
				for k := range args {
					args[k] = fill
				}
				args[i] = v
				if !seen[args] {
					seen[args] = true
					out = append(out, seccompabi.Data{Nr: c.Nr, Arch: audit, Args: args})
				}
			}
		}
	}
	return out
}

// WriteText prints the summary and up to limit mismatches.
func (r *Report) WriteText(w io.Writer, limit int) error {
	var b strings.Builder
	b.WriteString("filters, in load order:\n")
	for i, f := range r.Filters {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, f)
	}
	fmt.Fprintf(&b, "syscall numbers checked: x86_64 %d, x32 %d, i386 %d\n", r.Syscalls["x86_64"], r.Syscalls["x32"], r.Syscalls["i386"])
	fmt.Fprintf(&b, "argument cases checked: %d, over %d syscalls with argument conditions\n", r.ArgCases, r.ArgRules)
	fmt.Fprintf(&b, "mismatches: %d\n", len(r.Mismatches))
	for i, m := range r.Mismatches {
		if i == limit {
			fmt.Fprintf(&b, "  ... and %d more\n", len(r.Mismatches)-limit)
			break
		}
		fmt.Fprintf(&b, "  %s\n", m)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
