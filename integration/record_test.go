package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/record"
	"github.com/blvm/blvm-sandbox/runtime"
)

// The record command, from outside: the real binary runs the hostile
// module in its real container with the record filter and the hub
// observer, and the report must name what the module did.

// moduleResult is the hostile module's own line: what each step got.
type moduleResult struct {
	Errno string            `json:"errno"`
	Info  map[string]string `json:"info"`
}

// splitRecordOutput separates the module's framed lines ("hostile| ")
// from record's JSON report on stdout.
func splitRecordOutput(t *testing.T, stdout string) (moduleResult, record.Report) {
	t.Helper()
	var mod moduleResult
	var rest []string
	for _, l := range strings.Split(stdout, "\n") {
		if line, ok := strings.CutPrefix(l, "hostile| "); ok {
			if strings.HasPrefix(line, "{") {
				if err := json.Unmarshal([]byte(line), &mod); err != nil {
					t.Fatalf("module line %q: %v", line, err)
				}
			}
			continue
		}
		rest = append(rest, l)
	}
	var rep record.Report
	if err := json.Unmarshal([]byte(strings.Join(rest, "\n")), &rep); err != nil {
		t.Fatalf("report: %v\nstdout:\n%s", err, stdout)
	}
	return mod, rep
}

func findUse(uses []record.HubUse, name string) *record.HubUse {
	for i := range uses {
		if uses[i].Name == name {
			return &uses[i]
		}
	}
	return nil
}

func findSyscall(sys []record.SyscallUse, name string) *record.SyscallUse {
	for i := range sys {
		if sys[i].Name == name {
			return &sys[i]
		}
	}
	return nil
}

// TestRootRecordReportsWhatItLacks: a module holding read_blockchain calls
// a method of read_mempool, makes a syscall outside its allowlist (mlock)
// and one the deny list refuses (ptrace). The report must count each, map
// the method to the capability that grants it, suggest adding it, and the
// recorder must have let mlock run (run answers ENOSYS) while still
// answering ptrace with EPERM.
func TestRootRecordReportsWhatItLacks(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	// The sleep lets the sampler read the running module a few times.
	steps := "method=chain.GetChainTip*2,method=mempool.GetMempoolInfo*3,syscall=mlock,syscall=ptrace," +
		"write=/tmp:3145728,write=/data:2097152,sleep=400ms"
	dir, nodeConfig, root := signedHostileWith(t, bin, "uses", steps, []string{"read_blockchain"})
	manifestBefore, err := os.ReadFile(filepath.Join(dir, "module.toml"))
	if err != nil {
		t.Fatal(err)
	}
	suggestion := filepath.Join(filepath.Dir(dir), "suggested.toml")

	r := runCLI(t, bin, "record", "--node-config", nodeConfig, "--duration", "20s", "--format", "json", "--write", suggestion, dir)
	if r.code != 0 {
		t.Fatalf("record: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "DEVELOPMENT MODE") {
		t.Errorf("no development banner on stderr: %q", r.stderr)
	}
	mod, rep := splitRecordOutput(t, r.stdout)

	// What the module itself saw.
	if mod.Errno != "ok" {
		t.Fatalf("module: %+v", mod)
	}
	if got := mod.Info["method=mempool.GetMempoolInfo*3"]; got != "PERMISSION_DENIED" {
		t.Errorf("mempool.GetMempoolInfo answered %q under record, want PERMISSION_DENIED: record observes the ACL, never widens it", got)
	}
	if got := mod.Info["syscall=mlock"]; got == "ENOSYS" || got == "" {
		t.Errorf("mlock returned %q under record: the recorder should have let it run", got)
	}
	if got := mod.Info["syscall=ptrace"]; got != "EPERM" {
		t.Errorf("ptrace returned %q under record, want EPERM as the deny list answers", got)
	}

	// The hub observer.
	if u := findUse(rep.Methods, "chain.GetChainTip"); u == nil || u.Count != 2 || !u.Granted || strings.Join(u.Capabilities, ",") != "read_blockchain" {
		t.Errorf("chain.GetChainTip: %+v, want 2 granted calls by read_blockchain", u)
	}
	if u := findUse(rep.Methods, "mempool.GetMempoolInfo"); u == nil || u.Count != 3 || u.Granted || strings.Join(u.Capabilities, ",") != "read_mempool" {
		t.Errorf("mempool.GetMempoolInfo: %+v, want 3 denied calls, granted by read_mempool", u)
	}
	// The seccomp agent.
	if s := findSyscall(rep.Syscalls, "mlock"); s == nil || s.Nr != 149 || s.Count != 1 || s.Refused != "" || s.By != record.ByModule {
		t.Errorf("mlock: %+v, want nr 149 once, let run", s)
	}
	if s := findSyscall(rep.Syscalls, "ptrace"); s == nil || s.Nr != 101 || s.Count != 1 || s.Refused != "EPERM" || !strings.Contains(s.Reason, "deny") || s.By != record.ByModule {
		t.Errorf("ptrace: %+v, want nr 101 once, refused EPERM by the deny list", s)
	}
	// The suggestion.
	sg := rep.Suggestion
	if len(sg.Add) != 1 || sg.Add[0].Capability != "read_mempool" || !strings.Contains(sg.Add[0].Because, "mempool.GetMempoolInfo was called 3 times") {
		t.Errorf("add: %+v, want read_mempool because of the 3 calls", sg.Add)
	}
	if len(sg.Remove) != 0 {
		t.Errorf("remove: %+v, want none (read_blockchain was used)", sg.Remove)
	}
	if strings.Join(sg.Capabilities, ",") != "read_blockchain,read_mempool" {
		t.Errorf("suggested capabilities %v", sg.Capabilities)
	}
	if res := rep.Resources; res.Samples == 0 || res.PeakMemory == 0 || res.PeakPids == 0 {
		t.Errorf("resources: %+v, want sampled peaks", res)
	}
	// The module wrote 3 MiB to /tmp and 2 MiB to /data: read from the
	// host, through its mount namespace and its quota.
	if res := rep.Resources; res.PeakTmp < 3<<20 || res.PeakData < 2<<20 || res.PeakTmp > 4<<20 || res.PeakData > 3<<20 {
		t.Errorf("disk peaks: /tmp %d, /data %d bytes; want about 3 MiB and 2 MiB (info %v)", res.PeakTmp, res.PeakData, mod.Info)
	}

	// The host side: the manifest untouched, the suggestion beside it, the
	// recorder's socket and the container gone.
	if after, _ := os.ReadFile(filepath.Join(dir, "module.toml")); !bytes.Equal(after, manifestBefore) {
		t.Error("record changed module.toml")
	}
	written, err := os.ReadFile(suggestion)
	if err != nil {
		t.Fatalf("--write: %v", err)
	}
	t.Logf("suggestion file:\n%s", written)
	if !strings.Contains(string(written), `capabilities = ["read_blockchain", "read_mempool"]`) || !strings.Contains(string(written), "[modules.hostile.limits]") {
		t.Errorf("suggestion file:\n%s", written)
	}
	if _, err := os.Lstat(runtime.Layout{Root: root}.RecordAgent("hostile")); !os.IsNotExist(err) {
		t.Errorf("the recorder's socket is still there: %v", err)
	}
	if left, err := (runtime.Layout{Root: root}).Orphans(); err != nil || len(left) != 0 {
		t.Errorf("left behind: %v %v", left, err)
	}
	// A second --write to the same file is refused: record writes only
	// new files.
	again := runCLI(t, bin, "record", "--node-config", nodeConfig, "--write", suggestion, dir)
	if again.code != 2 || !strings.Contains(again.stderr, "exists") {
		t.Errorf("record --write onto an existing file: exit %d, %q", again.code, again.stderr)
	}

	// The same module under run: the normal filter answers mlock with
	// ENOSYS, so the difference above is the recorder's doing.
	normal := runCLI(t, bin, "run", "--node-config", nodeConfig, dir)
	if normal.code != 0 {
		t.Fatalf("run: exit %d\nstdout %s\nstderr %s", normal.code, normal.stdout, normal.stderr)
	}
	var runMod moduleResult
	for _, l := range strings.Split(normal.stdout, "\n") {
		if line, ok := strings.CutPrefix(l, "hostile| "); ok && strings.HasPrefix(line, "{") {
			json.Unmarshal([]byte(line), &runMod)
		}
	}
	if got := runMod.Info["syscall=mlock"]; got != "ENOSYS" {
		t.Errorf("mlock under run returned %q, want ENOSYS", got)
	}
}

// TestRootRecordEmptyDiff: a module that uses everything it declares gets
// no capability change.
func TestRootRecordEmptyDiff(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostileWith(t, bin, "uses", "method=chain.GetBlockHeight,event=node.BlockConnected,sleep=200ms",
		[]string{"read_blockchain", "subscribe_events"})
	r := runCLI(t, bin, "record", "--node-config", nodeConfig, "--duration", "20s", "--format", "json", dir)
	if r.code != 0 {
		t.Fatalf("record: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	mod, rep := splitRecordOutput(t, r.stdout)
	if mod.Errno != "ok" || mod.Info["event=node.BlockConnected"] != "OK" || mod.Info["method=chain.GetBlockHeight"] != "OK" {
		t.Fatalf("module: %+v", mod)
	}
	if u := findUse(rep.Events, "node.BlockConnected"); u == nil || !u.Granted || u.Count != 1 || strings.Join(u.Capabilities, ",") != "subscribe_events" {
		t.Errorf("node.BlockConnected: %+v", u)
	}
	if !rep.Suggestion.Empty() || strings.Join(rep.Suggestion.Capabilities, ",") != "read_blockchain,subscribe_events" {
		t.Errorf("suggestion: %+v, want no change", rep.Suggestion)
	}
	// The text report says so too.
	text := runCLI(t, bin, "record", "--node-config", nodeConfig, "--duration", "20s", dir)
	t.Logf("text report:\n%s\nstderr:\n%s", text.stdout, text.stderr)
	if text.code != 0 || !strings.Contains(text.stdout, "capabilities: no change") {
		t.Errorf("text report: exit %d\n%s\n%s", text.code, text.stdout, text.stderr)
	}
}

// TestRootRecordPolicyNeedsItsRecorder: the runtime refuses to start a
// record-mode policy when nothing listens for its filter, which is how a
// daemon runs every module; a stale file where the recorder would listen
// does not count.
func TestRootRecordPolicyNeedsItsRecorder(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	normal := s.compile("hostile")
	dec, err := record.NewDecider(normal.Seccomp)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := policy.Record(normal, dec.Native())
	if err != nil {
		t.Fatal(err)
	}
	start := func() error {
		return s.sup.Start(context.Background(), runtime.Module{
			Policy: rp, Binary: s.hostile, Config: []byte("attack = \"exit\"\narg = \"0\"\n"), Serve: drainHub,
		})
	}
	err = start()
	if err == nil || !strings.Contains(err.Error(), "recorder") {
		t.Fatalf("start of a record-mode policy without a recorder: %v, want a refusal naming the recorder", err)
	}
	s.sup.Stop(context.Background(), "hostile")
	agent := runtime.Layout{Root: s.root}.RecordAgent("hostile")
	if err := os.MkdirAll(filepath.Dir(agent), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agent, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := start(); err == nil || !strings.Contains(err.Error(), "recorder") {
		t.Fatalf("start with a plain file at %s: %v, want a refusal", agent, err)
	}
	s.sup.Stop(context.Background(), "hostile")
}

// TestRootRecordStillKillsX32: the record filter relaxes only native
// syscalls; one with the x32 bit still kills the whole module (the shim's
// stacked KILL_PROCESS filter), and record still reports.
func TestRootRecordStillKillsX32(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostileWith(t, bin, "x32", "", []string{"read_blockchain"})
	r := runCLI(t, bin, "record", "--node-config", nodeConfig, "--duration", "20s", "--format", "json", dir)
	if r.code != 0 {
		t.Fatalf("record: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	_, rep := splitRecordOutput(t, r.stdout)
	if rep.Exit != "killed by SIGSYS" {
		t.Errorf("x32 getpid under record: the module %s, want killed by SIGSYS", rep.Exit)
	}
	if s := findSyscall(rep.Syscalls, "getpid"); s != nil {
		t.Errorf("the x32 call reached the recorder: %+v", s)
	}
}

// TestRootRecordRefusesADaemonsRoot: with the root's owner lock held (as a
// daemon under `up` holds it), record refuses before anything runs.
func TestRootRecordRefusesADaemonsRoot(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, root := signedHostileWith(t, bin, "exit", "0", []string{"read_blockchain"})
	lock, err := runtime.LockRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	r := runCLI(t, bin, "record", "--node-config", nodeConfig, "--duration", "5s", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "never shares a root") {
		t.Errorf("record on a held root: exit %d\nstderr %s", r.code, r.stderr)
	}
	if _, err := os.Lstat(runtime.Layout{Root: root}.RecordAgent("hostile")); !os.IsNotExist(err) {
		t.Errorf("a recorder socket appeared on the daemon's root: %v", err)
	}
}
