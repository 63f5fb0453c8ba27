package policy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestOCISpecRoundTrip(t *testing.T) {
	p := handPolicy()
	s, err := p.OCISpec(testHostPaths())
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var back specs.Spec
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	again, err := json.MarshalIndent(&back, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Fatalf("config.json does not round-trip:\n%s\n---\n%s", data, again)
	}
	sc := back.Linux.Seccomp
	if sc.DefaultAction != specs.ActErrno || sc.DefaultErrnoRet == nil || *sc.DefaultErrnoRet != 38 {
		t.Errorf("default = %s/%v, want SCMP_ACT_ERRNO/38", sc.DefaultAction, sc.DefaultErrnoRet)
	}
	if !reflect.DeepEqual(sc.Architectures, []specs.Arch{specs.ArchX86_64}) {
		t.Errorf("architectures = %v", sc.Architectures)
	}
	if len(sc.Syscalls) != len(p.Seccomp.Rules) {
		t.Fatalf("%d syscall entries for %d rules", len(sc.Syscalls), len(p.Seccomp.Rules))
	}
	for i, r := range p.Seccomp.Rules {
		got := sc.Syscalls[i]
		if got.Names[0] != r.Syscall || len(got.Args) != len(r.Args) {
			t.Errorf("rule %d: %+v does not render %+v", i, got, r)
		}
	}
	wantActs := []specs.LinuxSeccompAction{specs.ActAllow, specs.ActAllow, specs.ActErrno, specs.ActAllow, specs.ActErrno, specs.ActKillProcess}
	for i, a := range wantActs {
		if sc.Syscalls[i].Action != a {
			t.Errorf("rule %d action = %s, want %s", i, sc.Syscalls[i].Action, a)
		}
	}
	if a := sc.Syscalls[1].Args[0]; a.Op != specs.OpMaskedEqual || a.Value != 0x7E020080 || a.ValueTwo != 0 {
		t.Errorf("clone arg = %+v, want MASKED_EQ mask 0x7E020080 value 0", a)
	}
	if a := sc.Syscalls[2].Args[0]; a.Op != specs.OpNotEqual || *sc.Syscalls[2].ErrnoRet != 97 {
		t.Errorf("socket = %+v", sc.Syscalls[2])
	}
	if !reflect.DeepEqual(back.Process.Args, p.ShimArgs()) {
		t.Errorf("process args = %q, want the shim args", back.Process.Args)
	}
	if !back.Process.NoNewPrivileges || !back.Root.Readonly || len(back.Process.Capabilities.Bounding) != 0 {
		t.Errorf("process hardening lost: %+v root %+v", back.Process, back.Root)
	}
	if back.Linux.UIDMappings[0].HostID != 200000 || back.Linux.GIDMappings[0].HostID != 300000 {
		t.Errorf("id mappings = %+v %+v", back.Linux.UIDMappings, back.Linux.GIDMappings)
	}
	if *back.Linux.Resources.Pids.Limit != 32 || *back.Linux.Resources.Memory.Limit != 64<<20 {
		t.Errorf("resources = %+v", back.Linux.Resources)
	}
}

func TestDefaultHostPaths(t *testing.T) {
	h := DefaultHostPaths("/var/lib/blvm-sandbox", handPolicy())
	want := HostPaths{
		Rootfs: "/var/lib/blvm-sandbox/bundles/demo/rootfs", Binary: "/var/lib/blvm-sandbox/store/sha256/abcd",
		Shim: DefaultShimHostPath, Config: "/var/lib/blvm-sandbox/bundles/demo/private/config.toml",
		Socket: "/var/lib/blvm-sandbox/sockets/demo/hub.sock", Data: "/var/lib/blvm-sandbox/data/modules/demo/db",
		CgroupPath: "/blvm-sandbox/demo", UIDBase: 100000, GIDBase: 100000, IDCount: 65536,
	}
	if h != want {
		t.Fatalf("DefaultHostPaths:\n got %+v\nwant %+v", h, want)
	}
}
