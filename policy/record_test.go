package policy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// testNative stands in for the amd64 table: every syscall the policy names,
// plus a few it does not.
func testNative(p *Policy) []string {
	names := []string{"mlock", "sched_setaffinity", "openat2", "fchown"}
	for _, r := range p.Seccomp.Rules {
		if !slices.Contains(names, r.Syscall) {
			names = append(names, r.Syscall)
		}
	}
	return names
}

func rulesFor(p *Policy, name string) []SyscallRule { return rulesOf(p.Seccomp.Rules, name) }

func TestRecordLeavesTheNormalPolicyAlone(t *testing.T) {
	p := compileNames(t, catalog(t), permissive(), availableNames(catalog(t)))
	before, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(before), `"mode"`) {
		t.Fatalf("a normal policy's JSON carries a mode: %.200s", before)
	}
	rp, err := Record(p, testNative(p))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(p)
	if string(before) != string(after) {
		t.Error("Record changed the policy it was given")
	}
	if rp.Mode != ModeRecord || p.Mode != "" {
		t.Errorf("modes: record %q, normal %q", rp.Mode, p.Mode)
	}
	if _, err := Record(rp, testNative(p)); err == nil {
		t.Error("Record accepted a record-mode policy")
	}
	// Only the filter differs.
	rp.Seccomp, rp.Mode = p.Seccomp, ""
	same, _ := json.Marshal(rp)
	if string(same) != string(before) {
		t.Error("Record changed more than the seccomp filter")
	}
}

func TestRecordRows(t *testing.T) {
	p := compileNames(t, catalog(t), permissive(), nil)
	rp, err := Record(p, testNative(p))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want string // the record treatment
	}{
		{"write", "allow"},    // unconditional allow: stays in the kernel
		{"getpid", "allow"},   //
		{"mlock", "notify"},   // no rule: the recorder lets it run
		{"openat2", "notify"}, //
		{"chmod", "notify"},   // an argument test: the recorder evaluates it
		{"ioctl", "notify"},   // conditional allows only
		{"ptrace", "notify"},  // the deny list: the recorder answers EPERM
		{"clone3", "notify"},  // a deliberate ENOSYS
		{"socket", "notify"},  // EAFNOSUPPORT for the other families
		{"execve", "allow"},   //
	} {
		rules := rulesFor(rp, c.name)
		if len(rules) == 0 {
			t.Errorf("%s: no rule in the record policy", c.name)
			continue
		}
		got := treatment(stripFamily(rules), rp.Seccomp.DefaultAction, rp.Seccomp.DefaultErrno)
		if got != c.want {
			t.Errorf("%s: record treatment %q, want %q", c.name, got, c.want)
		}
		if c.want == "notify" && (len(rules) != 1 || len(rules[0].Args) != 0 || rules[0].Sources[0].Source != SourceRecord) {
			t.Errorf("%s: want one unconditional notify row from %q, got %+v", c.name, SourceRecord, rules)
		}
	}
	if rp.Seccomp.DefaultAction != ActErrno || rp.Seccomp.DefaultErrno != "ENOSYS" {
		t.Errorf("record default %s %s, want errno ENOSYS (libcontainer refuses a notifying default)", rp.Seccomp.DefaultAction, rp.Seccomp.DefaultErrno)
	}
	cfg, err := rp.SeccompConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultAction == configs.Notify {
		t.Error("libcontainer config has a notifying default, which its init refuses")
	}
	notify := 0
	for _, sc := range cfg.Syscalls {
		if sc.Action == configs.Notify {
			notify++
			if sc.Name == "write" {
				t.Error("write notifies: libcontainer's init could never hand over the fd")
			}
		}
	}
	if notify == 0 {
		t.Error("the record filter has no notifying rule")
	}
	if got := len(rp.Seccomp.Families); got != len(p.Seccomp.Families) {
		t.Errorf("families: %d, want %d", got, len(p.Seccomp.Families))
	}
}

func TestRecordRefusesANotifyingWrite(t *testing.T) {
	p := compileNames(t, catalog(t), permissive(), nil)
	p.Seccomp.Rules = append(p.Seccomp.Rules, SyscallRule{Syscall: "write", Action: ActErrno, Errno: "EPERM",
		Args: []Arg{{Index: 0, Op: "eq", Value: 99}}, Sources: []Provenance{{Source: "test"}}})
	if _, err := Record(p, testNative(p)); err == nil || !strings.Contains(err.Error(), "write") {
		t.Errorf("Record with a conditional write: %v, want a refusal naming write", err)
	}
}

func TestRecordChanges(t *testing.T) {
	p := compileNames(t, catalog(t), permissive(), nil)
	rp, err := Record(p, testNative(p))
	if err != nil {
		t.Fatal(err)
	}
	changes := RecordChanges(p, rp)
	byName := map[string]RecordChange{}
	for _, c := range changes {
		byName[c.Syscall] = c
	}
	for _, name := range []string{"getpid", "write", "execve"} {
		if c, ok := byName[name]; ok {
			t.Errorf("%s listed as changed: %+v", name, c)
		}
	}
	for name, normal := range map[string]string{
		"mlock":  "errno ENOSYS (not in the policy)",
		"ptrace": "errno EPERM",
		"chmod":  "allow if arg&0x3f==0x0; errno EPERM if arg&0x3f!=0x0; otherwise errno ENOSYS",
	} {
		c, ok := byName[name]
		if !ok {
			t.Errorf("%s not listed as changed", name)
			continue
		}
		if c.Normal != normal || c.Record != "notify" || c.Reason == "" {
			t.Errorf("%s: %+v, want normal %q, record notify, a reason", name, c, normal)
		}
	}
	if !slices.IsSortedFunc(changes, func(a, b RecordChange) int { return strings.Compare(a.Syscall, b.Syscall) }) {
		t.Error("changes are not sorted by syscall")
	}
}
