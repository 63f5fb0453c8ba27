// Package bpf runs classic BPF seccomp programs on seccomp_data without a
// kernel. It checks a program as the kernel's seccomp_check_filter does and
// runs it on golang.org/x/net/bpf's VM, a well-kept interpreter written for
// packets: the adaptation is in how the input is laid out (see Run).
package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"

	xbpf "golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/audit/seccompabi"
)

// dataSize is sizeof(struct seccomp_data).
const dataSize = 64

// maxInsns is BPF_MAXINSNS.
const maxInsns = 4096

// Program is one loaded seccomp filter.
type Program struct {
	Name  string // what loads it, for reports
	Insns []unix.SockFilter
	vm    *xbpf.VM
}

// New checks insns the way the kernel checks a seccomp filter at load time
// and readies it to run.
func New(name string, insns []unix.SockFilter) (*Program, error) {
	if len(insns) == 0 || len(insns) > maxInsns {
		return nil, fmt.Errorf("%s: %d instructions, the kernel accepts 1 to %d", name, len(insns), maxInsns)
	}
	prog := make([]xbpf.Instruction, len(insns))
	for i, in := range insns {
		if err := check(in); err != nil {
			return nil, fmt.Errorf("%s: instruction %d (%#04x %d %d %#x): %w", name, i, in.Code, in.Jt, in.Jf, in.K, err)
		}
		prog[i] = xbpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}.Disassemble()
	}
	if last := insns[len(insns)-1]; last.Code&0x07 != unix.BPF_RET {
		return nil, fmt.Errorf("%s: the last instruction is not a return", name)
	}
	vm, err := xbpf.NewVM(prog)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Program{Name: name, Insns: insns, vm: vm}, nil
}

// check admits what seccomp_check_filter admits: word loads from an
// aligned offset inside seccomp_data, the length, immediates, scratch
// memory, ALU, jumps and returns; no byte or half-word loads, no indirect
// loads. Anything the kernel would refuse, or read differently, is refused.
func check(in unix.SockFilter) error {
	const (
		ld, ldx, st, stx, alu, jmp, ret, misc = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
	)
	code := in.Code
	switch code & 0x07 {
	case ld:
		switch code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K >= dataSize || in.K&3 != 0 {
				return fmt.Errorf("load from offset %d: seccomp_data has aligned words at 0-60", in.K)
			}
		case unix.BPF_LD | unix.BPF_W | unix.BPF_LEN, unix.BPF_LD | unix.BPF_IMM, unix.BPF_LD | unix.BPF_MEM:
		default:
			return errors.New("load the kernel refuses in a seccomp filter")
		}
	case ldx:
		switch code {
		case unix.BPF_LDX | unix.BPF_W | unix.BPF_LEN, unix.BPF_LDX | unix.BPF_IMM, unix.BPF_LDX | unix.BPF_MEM:
		default:
			return errors.New("load the kernel refuses in a seccomp filter")
		}
	case st, stx:
		if code != st && code != stx {
			return errors.New("unknown store")
		}
	case alu, jmp, ret:
		// x/net/bpf refuses the ones that do not exist.
	case misc:
		if code != unix.BPF_MISC|unix.BPF_TAX && code != unix.BPF_MISC|unix.BPF_TXA {
			return errors.New("unknown misc instruction")
		}
	}
	if (code == st || code == stx || code == unix.BPF_LD|unix.BPF_MEM || code == unix.BPF_LDX|unix.BPF_MEM) && in.K >= 16 {
		return fmt.Errorf("scratch memory slot %d out of range 0-15", in.K)
	}
	return nil
}

// Run is the program's return value for d. The VM loads words big-endian
// like network packets, while the kernel gives a filter seccomp_data in
// native (little-endian) order; since a seccomp filter can only load whole
// aligned words (check), storing each 32-bit word of seccomp_data
// big-endian gives the VM exactly the values the kernel's loads give. A
// 64-bit field keeps the native order of its halves: low word first.
func (p *Program) Run(d seccompabi.Data) (uint32, error) {
	var in [dataSize]byte
	binary.BigEndian.PutUint32(in[0:], uint32(d.Nr))
	binary.BigEndian.PutUint32(in[4:], d.Arch)
	binary.BigEndian.PutUint32(in[8:], uint32(d.IP))
	binary.BigEndian.PutUint32(in[12:], uint32(d.IP>>32))
	for i, a := range d.Args {
		binary.BigEndian.PutUint32(in[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(in[20+8*i:], uint32(a>>32))
	}
	out, err := p.vm.Run(in[:])
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.Name, err)
	}
	return uint32(out), nil
}

// Stack is the filters of one thread in load order.
type Stack []*Program

// Run is the kernel's answer for d: every filter runs, the most
// restrictive action wins (seccompabi.Combine).
func (s Stack) Run(d seccompabi.Data) (uint32, error) {
	rets := make([]uint32, len(s))
	for i, p := range s {
		r, err := p.Run(d)
		if err != nil {
			return 0, err
		}
		rets[i] = r
	}
	return seccompabi.Combine(rets), nil
}

// Len is the number of instructions of the whole stack.
func (s Stack) Len() int {
	n := 0
	for _, p := range s {
		n += len(p.Insns)
	}
	return n
}
