package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/audit"
	"github.com/blvm/blvm-sandbox/audit/bpf"
	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
	"github.com/blvm/blvm-sandbox/audit/live"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/runtime"
)

// liveStack reads the filters of a running module's main thread from the
// host and readies them to run.
func liveStack(t *testing.T, pid int) bpf.Stack {
	t.Helper()
	progs, err := kernelfilter.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	names := kernelfilter.Names(progs)
	var s bpf.Stack
	for i, p := range progs {
		prog, err := bpf.New(names[i], p)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, prog)
	}
	return s
}

// seccompFilters is the Seccomp_filters count of /proc/PID/status.
func seccompFilters(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp_filters:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// TestRootInspectLiveFilters reads the filters the kernel holds for a
// running module, from the host with PTRACE_SECCOMP_GET_FILTER, and checks
// every syscall number and argument boundary against the module's policy:
// zero mismatches. Checked against a policy that differs (EPERM instead of
// ENOSYS for unknown syscalls), the same live filters must mismatch.
func TestRootInspectLiveFilters(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	var out, errw syncbuf.Buffer
	if err := s.start("inspected", "sleep", "30s", &out, &errw); err != nil {
		t.Fatal(err)
	}
	defer s.sup.Stop(context.Background(), "inspected")
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, ok := s.sup.Status("inspected")
		// Two filters: the shim has stacked its own and exec'd the module.
		if ok && st.Pid != 0 && seccompFilters(st.Pid) == 2 {
			pid = st.Pid
			break
		}
	}
	if pid == 0 {
		t.Fatalf("the module never ran under two filters; stderr %s", errw.String())
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	stack := liveStack(t, pid)
	if len(stack) != 2 || !strings.HasPrefix(stack[1].Name, "blvm-landlock-shim") {
		t.Fatalf("live filters %d, want libcontainer's then the shim's", len(stack))
	}
	p := s.compile("inspected")
	r, err := audit.Verify(p, stack)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	_ = r.WriteText(&sb, 20)
	t.Logf("pid %d (%s):\n%s", pid, exe, sb.String())
	if len(r.Mismatches) != 0 {
		t.Fatalf("%d mismatches between the live filters and the policy", len(r.Mismatches))
	}
	if r.Syscalls["x86_64"] < 450 || r.Syscalls["i386"] < 450 || r.Syscalls["x32"] < 548 || r.ArgCases == 0 {
		t.Fatalf("too few cases: %v, %d", r.Syscalls, r.ArgCases)
	}
	// What explain --format bpf and --verify load offline is, instruction
	// for instruction, what the kernel holds for the running module.
	cfg, err := p.SeccompConfig()
	if err != nil {
		t.Fatal(err)
	}
	offline, err := kernelfilter.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(offline.Programs) != len(stack) {
		t.Fatalf("offline %d filters, live %d", len(offline.Programs), len(stack))
	}
	for i, prog := range offline.Programs {
		if !slices.Equal(prog, stack[i].Insns) {
			t.Errorf("filter %d (%s): the offline program differs from the live one", i+1, stack[i].Name)
		}
	}
	rows, err := live.Inspect(pid, p, "/proc", "/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		t.Logf("%-40s want %-22q got %q", row.Control, row.Want, row.Got)
		if !row.OK {
			t.Errorf("%s: the policy wants %q, the running module has %q", row.Control, row.Want, row.Got)
		}
	}
	if len(rows) < 20 {
		t.Errorf("only %d controls inspected", len(rows))
	}
	// A policy that differs in a control must show it.
	wider := *p
	wider.Cgroup.Pids.Value++
	wider.Process.UID = 0
	rows, err = live.Inspect(pid, &wider, "/proc", "/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]bool{}
	for _, row := range rows {
		if !row.OK {
			bad[row.Control] = true
		}
	}
	if !bad["cgroup pids"] || !bad["uid inside (real effective saved fs)"] || len(bad) != 3 {
		t.Errorf("a policy with other pids and uid: controls that differ %v, want cgroup pids, uid and gid", bad)
	}
	// The CLI, from the host, on the same process and manifest.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "module.toml"), []byte(fmt.Sprintf(hostileManifest, "inspected")), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := exec.Command(buildCLI(t), "inspect", "--pid", strconv.Itoa(pid), "--arch", "amd64", "--landlock-abi", "7", "--cgroup-version", strconv.Itoa(s.host.CgroupVersion), dir)
	cliOut, err := cli.CombinedOutput()
	if err != nil || !strings.Contains(string(cliOut), "mismatches: 0\n") || strings.Contains(string(cliOut), "MISMATCH") {
		t.Errorf("blvm-sandbox inspect: %v\n%s", err, cliOut)
	}
	other := *p
	other.Seccomp.DefaultErrno = "EPERM"
	r, err = audit.Verify(&other, stack)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Mismatches) < 100 {
		t.Fatalf("a policy with another default matched the live filters (%d mismatches)", len(r.Mismatches))
	}
	t.Logf("against a different policy: %d mismatches, e.g. %s", len(r.Mismatches), r.Mismatches[0])
}
