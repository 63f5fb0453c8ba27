//go:build cgo

package policy

import (
	"bytes"
	"strings"
	"testing"
)

func TestBPF(t *testing.T) {
	var a, b bytes.Buffer
	if err := handPolicy().BPF(&a); err != nil {
		t.Fatal(err)
	}
	if err := handPolicy().BPF(&b); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatal("BPF output is not deterministic")
	}
	out := a.String()
	for _, want := range []string{
		`filter for arch x86_64`,
		`"getpid"`, `"clone"`, `"socket"`, `"ioctl"`, `"bpf"`, `"kexec_load"`,
		`$a0.lo32 & 0x7e020080 == 0`, // masked_eq: mask, then value
		`action ERRNO(97)`, `action ERRNO(1)`, `action KILL_PROCESS`,
		"# default action\n  action ERRNO(38);",
		"# invalid architecture action\naction KILL;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
}
