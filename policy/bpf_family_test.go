//go:build cgo && amd64

package policy

import (
	"encoding/binary"
	"os"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Seccomp return values (linux/seccomp.h).
const (
	retAllow = 0x7fff0000
	retErrno = 0x00050000
)

// filterVM builds the filter exactly as the BPF listing and libcontainer
// do, and loads libseccomp's compiled program into an interpreter.
func filterVM(t *testing.T, p *Policy) *bpf.VM {
	t.Helper()
	cfg, err := p.SeccompConfig()
	if err != nil {
		t.Fatal(err)
	}
	f, err := seccompFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	// ExportBPFMem needs libseccomp 2.6; Debian 12 has 2.5.4.
	tmp, err := os.CreateTemp(t.TempDir(), "filter-*.bpf")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	if err := f.ExportBPF(tmp); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	var prog []bpf.Instruction
	for i := 0; i+8 <= len(raw); i += 8 {
		prog = append(prog, bpf.RawInstruction{
			Op: binary.LittleEndian.Uint16(raw[i:]), Jt: raw[i+2], Jf: raw[i+3], K: binary.LittleEndian.Uint32(raw[i+4:]),
		}.Disassemble())
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// run evaluates one syscall. The interpreter loads words big-endian, so
// each 32-bit field of struct seccomp_data is stored that way; the 64-bit
// arguments keep the kernel's little-endian order of halves (low first).
func run(t *testing.T, vm *bpf.VM, nr uint32, args ...uint64) uint32 {
	t.Helper()
	in := make([]byte, 64)
	binary.BigEndian.PutUint32(in[0:], nr)
	binary.BigEndian.PutUint32(in[4:], unix.AUDIT_ARCH_X86_64)
	for i, a := range args {
		binary.BigEndian.PutUint32(in[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(in[20+8*i:], uint32(a>>32))
	}
	out, err := vm.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(out)
}

func TestFilterModeChanges(t *testing.T) {
	vm := filterVM(t, compileNames(t, catalog(t), permissive(), nil))
	eperm := uint32(retErrno | unix.EPERM)
	const garbage = 0xdeadbeef << 32 // high half the kernel drops: mode is a umode_t
	for _, tc := range []struct {
		name string
		nr   uint32
		mode int // position of the mode argument
	}{
		{"chmod", unix.SYS_CHMOD, 1}, {"fchmod", unix.SYS_FCHMOD, 1},
		{"fchmodat", unix.SYS_FCHMODAT, 2}, {"fchmodat2", 452, 2},
	} {
		for _, c := range []struct {
			mode uint64
			want uint32
		}{
			{0o700, retAllow}, {0o600, retAllow}, {0o400, retAllow}, {0, retAllow}, {0o4700, retAllow},
			{0o777, eperm}, {0o770, eperm}, {0o701, eperm}, {0o640, eperm}, {0o002, eperm},
			{garbage | 0o700, retAllow}, {garbage | 0o777, eperm}, {0xffffffff<<32 | 0o070, eperm},
		} {
			args := make([]uint64, 4)
			args[0] = 0xffffff9c // AT_FDCWD as the kernel's int
			// Whatever sits in the other arguments must not matter.
			for i := range args {
				if i != tc.mode && i != 0 {
					args[i] = 0o777
				}
			}
			args[tc.mode] = c.mode
			if got := run(t, vm, tc.nr, args...); got != c.want {
				t.Errorf("%s(mode %#o) = %#x, want %#x", tc.name, c.mode, got, c.want)
			}
		}
	}
}

func TestFilterProcessFamilies(t *testing.T) {
	vm := filterVM(t, compileNames(t, catalog(t), permissive(), nil))
	enosys := uint32(retErrno | unix.ENOSYS)
	eperm := uint32(retErrno | unix.EPERM)
	for _, c := range []struct {
		name string
		nr   uint32
		args []uint64
		want uint32
	}{
		{"wait4", unix.SYS_WAIT4, nil, retAllow},
		{"waitid", unix.SYS_WAITID, nil, retAllow},
		{"kill", unix.SYS_KILL, []uint64{1, 9}, retAllow},
		{"pidfd_open", unix.SYS_PIDFD_OPEN, nil, retAllow},
		{"pidfd_send_signal", unix.SYS_PIDFD_SEND_SIGNAL, nil, retAllow},
		{"pidfd_getfd", unix.SYS_PIDFD_GETFD, nil, eperm},
		{"fork", unix.SYS_FORK, nil, retAllow},
		{"clone(SIGCHLD)", unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}, retAllow},
		{"clone(CLONE_NEWPID)", unix.SYS_CLONE, []uint64{unix.CLONE_NEWPID}, eperm},
		{"clone3", unix.SYS_CLONE3, nil, enosys},
		{"statfs", unix.SYS_STATFS, nil, retAllow},
		{"fstatfs", unix.SYS_FSTATFS, nil, retAllow},
		{"openat2", unix.SYS_OPENAT2, nil, enosys},
		{"open", unix.SYS_OPEN, nil, retAllow},
		{"socketpair(AF_INET)", unix.SYS_SOCKETPAIR, []uint64{unix.AF_INET}, retErrno | uint32(unix.EAFNOSUPPORT)},
		{"fchown", unix.SYS_FCHOWN, nil, enosys},
	} {
		if got := run(t, vm, c.nr, c.args...); got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, got, c.want)
		}
	}
}
