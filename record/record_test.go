package record

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"golang.org/x/sys/unix"
)

func compile(t *testing.T, caps ...string) (*policy.Policy, *capabilities.Catalog) {
	t.Helper()
	cat, err := capabilities.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeconfig.Default()
	cfg.Capabilities.MaxTier = nodeconfig.Tiers[len(nodeconfig.Tiers)-1]
	m := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "probe", Capabilities: caps}
	set, err := cat.Resolve(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(m, set, cfg, policy.Host{Arch: "amd64", LandlockABI: 7, CgroupVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	return p, cat
}

// TestDecideAnswersAsTheNormalFilter: the recorder lets run only what the
// normal filter allows or refuses by default, answers a rule's errno
// itself, and logs every refusal.
func TestDecideAnswersAsTheNormalFilter(t *testing.T) {
	p, _ := compile(t)
	d, err := NewDecider(p.Seccomp)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		nr     int32
		args   [6]uint64
		errno  uint16
		record bool
		arg    int
	}{
		{"getpid: allowed", unix.SYS_GETPID, [6]uint64{}, 0, false, -1},
		{"chmod 0700: allowed by its argument test", unix.SYS_CHMOD, [6]uint64{0, 0o700}, 0, false, -1},
		{"chmod 0777: a rule refuses", unix.SYS_CHMOD, [6]uint64{0, 0o777}, uint16(unix.EPERM), true, 1},
		{"ptrace: the deny list", unix.SYS_PTRACE, [6]uint64{}, uint16(unix.EPERM), true, -1},
		{"clone3: a deliberate ENOSYS", unix.SYS_CLONE3, [6]uint64{}, uint16(unix.ENOSYS), true, -1},
		{"socket AF_INET: EAFNOSUPPORT", unix.SYS_SOCKET, [6]uint64{unix.AF_INET}, uint16(unix.EAFNOSUPPORT), true, 0},
		{"mlock: outside the allowlist, let run", unix.SYS_MLOCK, [6]uint64{}, 0, true, -1},
		{"ioctl TIOCSTI: no rule matches, let run", unix.SYS_IOCTL, [6]uint64{0, unix.TIOCSTI}, 0, true, 1},
		{"ioctl TCGETS: allowed", unix.SYS_IOCTL, [6]uint64{0, unix.TCGETS}, 0, false, -1},
	} {
		got := d.Decide(c.nr, c.args)
		if got.Errno != c.errno || got.Record != c.record || got.Arg != c.arg {
			t.Errorf("%s: %+v, want errno %d, record %v, arg %d", c.name, got, c.errno, c.record, c.arg)
		}
		if got.Errno != 0 && got.Reason == "" {
			t.Errorf("%s: a refusal without the rule's reason", c.name)
		}
	}
	if n := d.Name(unix.SYS_MLOCK); n != "mlock" {
		t.Errorf("Name(149) = %q", n)
	}
	if n := d.Name(99999); n != "syscall_99999" {
		t.Errorf("Name(99999) = %q", n)
	}
	if !slices.Contains(d.Native(), "openat2") || !slices.IsSorted(d.Native()) {
		t.Error("Native is not the sorted amd64 table")
	}
}

func TestSyscallLogCountsAndUndoes(t *testing.T) {
	l := NewSyscallLog()
	run := Decision{Record: true, Arg: 1, ArgValue: 0x5412}
	eperm := Decision{Record: true, Errno: 1, ErrnoName: "EPERM", Arg: -1}
	l.Add(16, "ioctl", ByModule, run)
	l.Add(16, "ioctl", ByModule, Decision{Record: true, Arg: 1, ArgValue: 0x5412})
	l.Add(16, "ioctl", ByModule, Decision{Record: true, Arg: 1, ArgValue: 0x1})
	l.Add(101, "ptrace", ByModule, eperm)
	l.Add(101, "ptrace", ByModule, eperm)
	l.Undo(101, ByModule, eperm) // interrupted and notified again: one call
	l.Add(437, "openat2", ByRuntime, Decision{Record: true, Arg: -1})
	got := l.List()
	if len(got) != 3 {
		t.Fatalf("%d entries: %+v", len(got), got)
	}
	io := got[0]
	if io.Name != "ioctl" || io.Count != 3 || io.Arg == nil || *io.Arg != 1 || !slices.Equal(io.Values, []uint64{0x1, 0x5412}) {
		t.Errorf("ioctl: %+v", io)
	}
	if got[1].Name != "ptrace" || got[1].Count != 1 || got[1].Refused != "EPERM" {
		t.Errorf("ptrace: %+v", got[1])
	}
	if got[2].By != ByRuntime {
		t.Errorf("openat2: %+v", got[2])
	}
}

func TestHubLogKeepsToItsModule(t *testing.T) {
	h := NewHubLog("probe")
	h.Method("probe", "chain.GetBlock", true)
	h.Method("probe", "chain.GetBlock", true)
	h.Method("other", "chain.GetBlock", true)
	h.Event("probe", "node.BlockConnected", false)
	if m := h.Methods(); len(m) != 1 || m[0] != (Use{Name: "chain.GetBlock", Count: 2, Granted: true}) {
		t.Errorf("methods %+v", m)
	}
	if e := h.Events(); len(e) != 1 || e[0] != (Use{Name: "node.BlockConnected", Count: 1}) {
		t.Errorf("events %+v", e)
	}
}

// A module names its own event types: subscribing to a new one on every
// request (1000 requests a second by default, 256 types each) must not grow
// the root-run recorder, outside the module's memory limit, without bound.
func TestHubLogBoundsDistinctNames(t *testing.T) {
	h := NewHubLog("probe")
	const asked = 20000
	for i := range asked {
		h.Event("probe", fmt.Sprintf("spam.T%d", i), true)
	}
	h.Event("probe", "spam.T0", true) // a listed name still counts
	e := h.Events()
	if len(e) > 1024 {
		t.Fatalf("kept %d distinct event types of %d asked: unbounded", len(e), asked)
	}
	if h.Unlisted() != asked-len(e) {
		t.Errorf("unlisted %d, want %d", h.Unlisted(), asked-len(e))
	}
	for _, u := range e {
		if u.Name == "spam.T0" && u.Count != 2 {
			t.Errorf("spam.T0 counted %d times, want 2", u.Count)
		}
	}
}

func TestBuildSuggestsInCapabilityTerms(t *testing.T) {
	p, cat := compile(t, "read_blockchain", "governance_read")
	g := NewGrants(cat, map[string]nodeconfig.Provided{"read_lightning": {Provider: "lnd", Tier: "observe", Danger: "medium"}})
	run := Run{
		Module: "probe", Version: "1.0.0", Declared: []string{"read_blockchain", "governance_read"}, Policy: p,
		Limits: nodeconfig.Limits{MemoryBytes: 256 << 20, Pids: 64, CPUs: 0.5, TmpBytes: 16 << 20}, DiskBytes: 1 << 30,
		Methods: []Use{
			{Name: "hub.Log", Count: 4, Granted: true},
			{Name: "chain.GetBlock", Count: 12, Granted: true},
			{Name: "governance.ListProposals", Count: 1, Granted: true}, // granted by governance_read; governance_vote grants it too
			{Name: "mempool.GetMempoolInfo", Count: 2},
			{Name: "governance.CastVote", Count: 1},
			{Name: "modules.Call:lnd", Count: 3},
		},
		Events:    []Use{{Name: "node.BlockConnected", Count: 1}},
		Syscalls:  []Syscall{{Nr: 149, Name: "mlock", Count: 2, By: ByModule}, {Nr: 437, Name: "openat2", Count: 6, By: ByRuntime}},
		Resources: Resources{PeakMemory: 40 << 20, PeakPids: 10, CPUNanos: uint64(time.Second), PeakData: 5 << 20, PeakTmp: 100, Samples: 9},
		Duration:  10 * time.Second, Exit: "exited with code 0",
	}
	rep := Build(run, g)
	var adds []string
	for _, a := range rep.Suggestion.Add {
		adds = append(adds, a.Capability+": "+a.Because)
	}
	want := []string{
		"governance_vote: method governance.CastVote was called once (denied)",
		"read_lightning: method modules.Call:lnd was called 3 times (denied)",
		"read_mempool: method mempool.GetMempoolInfo was called 2 times (denied)",
		"subscribe_events: event node.BlockConnected was asked for once (denied)",
	}
	if !slices.Equal(adds, want) {
		t.Errorf("add:\n%q\nwant\n%q", adds, want)
	}
	if len(rep.Suggestion.Remove) != 0 {
		t.Errorf("remove %+v: both declared capabilities were used", rep.Suggestion.Remove)
	}
	if h := rep.Methods[0]; h.Name != "hub.Log" || !h.Base {
		t.Errorf("hub.Log is not marked as every module's: %+v", h)
	}
	if len(rep.Syscalls) != 1 || rep.Syscalls[0].Name != "mlock" || len(rep.Sandbox) != 1 || rep.Sandbox[0].Name != "openat2" {
		t.Errorf("syscalls %+v, sandbox %+v: the runtime's own calls belong apart", rep.Syscalls, rep.Sandbox)
	}
	if !slices.ContainsFunc(rep.Suggestion.Notes, func(n string) bool { return strings.Contains(n, "mlock") && strings.Contains(n, "ENOSYS") }) {
		t.Errorf("notes %q lack mlock", rep.Suggestion.Notes)
	}
	limits := map[string]LimitSuggestion{}
	for _, l := range rep.Suggestion.Limits {
		limits[l.Key] = l
	}
	if l := limits["limits.memory_bytes"]; l.Value != int64(80<<20) {
		t.Errorf("memory: %+v, want twice the 40 MiB peak", l)
	}
	if l := limits["limits.pids"]; l.Value != int64(20) {
		t.Errorf("pids: %+v", l)
	}
	if l := limits["limits.cpus"]; l.Value != 0.2 {
		t.Errorf("cpus: %+v, want 0.2 (0.1 cores on average, doubled)", l)
	}
	if l := limits["disk_bytes"]; l.Value != int64(16<<20) {
		t.Errorf("disk: %+v, want the 16 MiB floor", l)
	}

	// The suggestion file is TOML a person can paste from.
	var b bytes.Buffer
	if err := rep.WriteSuggestion(&b); err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Capabilities []string
		Modules      map[string]struct {
			DiskBytes int64 `toml:"disk_bytes"`
			Limits    nodeconfig.Limits
		}
	}
	if _, err := toml.Decode(b.String(), &parsed); err != nil {
		t.Fatalf("suggestion is not TOML: %v\n%s", err, b.String())
	}
	wantCaps := []string{"governance_read", "governance_vote", "read_blockchain", "read_lightning", "read_mempool", "subscribe_events"}
	if !slices.Equal(parsed.Capabilities, wantCaps) || parsed.Modules["probe"].Limits.MemoryBytes != 80<<20 || parsed.Modules["probe"].DiskBytes != 16<<20 {
		t.Errorf("parsed suggestion %+v", parsed)
	}
}

func TestBuildRemovesWhatWasNeverUsed(t *testing.T) {
	p, cat := compile(t, "read_blockchain", "read_mempool")
	rep := Build(Run{
		Module: "probe", Version: "1.0.0", Declared: []string{"read_blockchain", "read_mempool"}, Policy: p,
		Methods: []Use{{Name: "chain.GetChainTip", Count: 1, Granted: true}}, Duration: time.Second,
	}, NewGrants(cat, nil))
	if r := rep.Suggestion.Remove; len(r) != 1 || r[0].Capability != "read_mempool" {
		t.Errorf("remove %+v, want read_mempool", r)
	}
	if !slices.Equal(rep.Suggestion.Capabilities, []string{"read_blockchain"}) || rep.Suggestion.Empty() {
		t.Errorf("suggestion %+v", rep.Suggestion)
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  - read_mempool: never used") {
		t.Errorf("text report:\n%s", b.String())
	}
}

func TestBuildEmptyWhenAllIsUsed(t *testing.T) {
	p, cat := compile(t, "read_blockchain", "subscribe_events")
	rep := Build(Run{
		Module: "probe", Version: "1.0.0", Declared: []string{"read_blockchain", "subscribe_events"}, Policy: p,
		Methods: []Use{{Name: "chain.GetBlock", Count: 3, Granted: true}, {Name: "events.Subscribe", Count: 1, Granted: true}},
		Events:  []Use{{Name: "node.BlockConnected", Count: 1, Granted: true}, {Name: "lightning.Invoice", Count: 1, Granted: true}},
	}, NewGrants(cat, nil))
	if !rep.Suggestion.Empty() || len(rep.Suggestion.Notes) != 0 {
		t.Errorf("suggestion %+v, want no change", rep.Suggestion)
	}
	if e := rep.Events[1]; e.Name != "lightning.Invoice" || !slices.Equal(e.Capabilities, []string{"subscribe_events"}) {
		t.Errorf("a module-published event type is granted by events.Subscribe's holders: %+v", e)
	}
}
