package bpf

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/audit/seccompabi"
	"github.com/blvm/blvm-sandbox/internal/archfilter"
)

const (
	ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	ret   = unix.BPF_RET | unix.BPF_K
)

func TestArchFilter(t *testing.T) {
	insns, err := archfilter.Program("amd64")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New("arch", insns)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d    seccompabi.Data
		want uint32
	}{
		{seccompabi.Data{Nr: 1, Arch: seccompabi.ArchX86_64}, seccompabi.RetAllow},
		{seccompabi.Data{Nr: 1 | seccompabi.X32Bit, Arch: seccompabi.ArchX86_64}, seccompabi.RetKillProcess},
		{seccompabi.Data{Nr: 1, Arch: seccompabi.ArchI386}, seccompabi.RetKillProcess},
	} {
		if got, err := p.Run(c.d); err != nil || got != c.want {
			t.Errorf("%+v = %s, %v; want %s", c.d, seccompabi.String(got), err, seccompabi.String(c.want))
		}
	}
}

// Each word of seccomp_data must reach the program as the kernel gives it:
// a program that tests one word of one argument sees that word only.
func TestWordOrder(t *testing.T) {
	for off := uint32(0); off < 64; off += 4 {
		p, err := New("word", []unix.SockFilter{
			{Code: ldAbs, K: off},
			{Code: jeq, Jt: 0, Jf: 1, K: 0x11223344},
			{Code: ret, K: seccompabi.RetAllow},
			{Code: ret, K: seccompabi.Errno(1)},
		})
		if err != nil {
			t.Fatal(err)
		}
		var d seccompabi.Data
		v := uint64(0x11223344)
		switch {
		case off == 0:
			d.Nr = 0x11223344
		case off == 4:
			d.Arch = 0x11223344
		case off == 8:
			d.IP = v
		case off == 12:
			d.IP = v << 32
		default:
			d.Args[(off-16)/8] = v << (32 * ((off - 16) % 8 / 4))
		}
		if got, _ := p.Run(d); got != seccompabi.RetAllow {
			t.Errorf("offset %d: the program did not see the word there", off)
		}
		d = seccompabi.Data{Args: [6]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}}
		if got, _ := p.Run(d); got != seccompabi.Errno(1) {
			t.Errorf("offset %d: matched on other words", off)
		}
	}
}

func TestRefusesWhatTheKernelRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		insns []unix.SockFilter
		want  string
	}{
		{"byte load", []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 0}, {Code: ret}}, "refuses"},
		{"unaligned", []unix.SockFilter{{Code: ldAbs, K: 2}, {Code: ret}}, "aligned"},
		{"past seccomp_data", []unix.SockFilter{{Code: ldAbs, K: 64}, {Code: ret}}, "aligned"},
		{"indirect", []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_IND, K: 0}, {Code: ret}}, "refuses"},
		{"no return", []unix.SockFilter{{Code: ldAbs, K: 0}}, "not a return"},
		{"empty", nil, "instructions"},
	} {
		if _, err := New(c.name, c.insns); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestStackMostRestrictive(t *testing.T) {
	mk := func(r uint32) *Program {
		p, err := New("r", []unix.SockFilter{{Code: ret, K: r}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := Stack{mk(seccompabi.Errno(38)), mk(seccompabi.RetAllow), mk(seccompabi.Errno(1))}
	if got, _ := s.Run(seccompabi.Data{}); got != seccompabi.Errno(1) {
		t.Fatalf("stack = %s, want ERRNO(1): the last loaded runs first and keeps a tie", seccompabi.String(got))
	}
}
