//go:build cgo && amd64

package policy

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

const retUserNotif = 0x7fc00000

// TestRecordFilterInBPF runs the record filter libseccomp builds: what the
// normal filter refuses reaches the recorder, what it allows stays allowed,
// and x32 or foreign-arch numbers are still killed.
func TestRecordFilterInBPF(t *testing.T) {
	p := compileNames(t, catalog(t), permissive(), nil)
	rp, err := Record(p, testNative(p))
	if err != nil {
		t.Fatal(err)
	}
	vm := filterVM(t, rp)
	for _, c := range []struct {
		name string
		nr   uint32
		args []uint64
		want uint32
	}{
		{"getpid", unix.SYS_GETPID, nil, retAllow},
		{"write", unix.SYS_WRITE, nil, retAllow},
		{"mlock", unix.SYS_MLOCK, nil, retUserNotif},
		{"chmod 0700", unix.SYS_CHMOD, []uint64{0, 0o700}, retUserNotif},
		{"chmod 0777", unix.SYS_CHMOD, []uint64{0, 0o777}, retUserNotif},
		{"ptrace", unix.SYS_PTRACE, nil, retUserNotif},
		{"ioctl TCGETS", unix.SYS_IOCTL, []uint64{0, 0x5401}, retUserNotif},
		{"x32 getpid", unix.SYS_GETPID | 0x40000000, nil, unix.SECCOMP_RET_KILL_THREAD},
	} {
		if got := run(t, vm, c.nr, c.args...); got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, got, c.want)
		}
	}
	// A foreign arch (i386) goes to libseccomp's bad-arch action, as in
	// the normal filter; the shim's stacked filter makes it KILL_PROCESS.
	in := make([]byte, 64)
	binary.BigEndian.PutUint32(in[0:], 20) // i386 getpid
	binary.BigEndian.PutUint32(in[4:], unix.AUDIT_ARCH_I386)
	if out, err := vm.Run(in); err != nil || uint32(out) != unix.SECCOMP_RET_KILL_THREAD {
		t.Errorf("i386 getpid = %#x (%v), want kill", out, err)
	}
}
