package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/internal/testbuild"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/hub/hubtest"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime"
)

// hubManifest is the hostile module with the capabilities a hub attack
// needs.
const hubManifest = `
name = %q
version = "1.0.0"
entry_point = "hostile"
capabilities = [%s]
`

// compileHub compiles the hostile module as name, holding caps.
func (s *sandbox) compileHub(name string, caps ...string) *policy.Policy {
	s.t.Helper()
	quoted := make([]string, len(caps))
	for i, c := range caps {
		quoted[i] = strconv.Quote(c)
	}
	m, err := manifest.ParseBytes("module.toml", []byte(fmt.Sprintf(hubManifest, name, strings.Join(quoted, ", "))))
	if err != nil {
		s.t.Fatal(err)
	}
	cat, err := capabilities.Default()
	if err != nil {
		s.t.Fatal(err)
	}
	set, err := cat.Resolve(m, s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := policy.Compile(m, set, s.cfg, s.host)
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

// runOnHub runs the hostile module with one attack in a real container,
// served by the real hub h, and returns its result once it exits.
func (s *sandbox) runOnHub(h *hub.Hub, p *policy.Policy, attack, arg string) outcome {
	s.t.Helper()
	name := p.Module.Name
	spec := hub.ModuleSpec{ID: name + "#1", Name: name, Version: "1.0.0", ACL: p.Hub}
	var out, errw syncbuf.Buffer
	err := s.sup.Start(context.Background(), runtime.Module{
		Policy: p, Binary: s.hostile, Config: []byte(fmt.Sprintf("attack = %q\narg = %q\n", attack, arg)),
		Serve: func(ln net.Listener, uid int, ready func()) error {
			spec.PeerUID, spec.OnReady = uid, ready
			return h.Attach(spec, ln)
		},
		Stdout: &out, Stderr: &errw,
	})
	if err != nil {
		s.t.Fatalf("start %s: %v", attack, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exit, err := s.sup.Wait(ctx, name)
	if err != nil {
		s.t.Fatalf("wait %s: %v", attack, err)
	}
	s.sup.Stop(ctx, name)
	h.Detach(name)
	o := outcome{exit: exit, stdout: out.String(), stderr: errw.String()}
	sc := bufio.NewScanner(strings.NewReader(o.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &o.res) == nil {
			break
		}
	}
	if o.res.Errno != "ok" {
		s.t.Fatalf("%s did not run: %+v\nstderr %s", attack, o.res, o.stderr)
	}
	return o
}

// vmRSS is this process's resident set, in bytes.
func vmRSS(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func testHub(logs *syncbuf.Buffer, cfg hub.Config) *hub.Hub {
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return hub.New(hubtest.NewBackend(10), cfg)
}

// TestRootHubEventFloodBoundedInBytes: a module subscribes on one
// connection and never reads it, and publishes as fast as it can on
// another, 1 MiB payloads and 64 KiB ones. The hub, in this process, stays
// within 64 MiB of its baseline; the 1 MiB payloads are refused INVALID;
// the sleeping subscriber's events are dropped and counted.
func TestRootHubEventFloodBoundedInBytes(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	var logs syncbuf.Buffer
	h := testHub(&logs, hub.Config{})
	defer h.Close()
	p := s.compileHub("flooder", "subscribe_events", "publish_events")

	goruntime.GC()
	debug.FreeOSMemory()
	base := vmRSS(t)
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if r := vmRSS(t); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	o := s.runOnHub(h, p, "hub-event-flood", "4s")
	close(stop)
	<-sampled

	st := h.Stats("flooder")
	grew := peak.Load() - base
	t.Logf("RSS %d MiB -> peak %d MiB (+%d MiB); module: %d publishes, %v; hub: %+v",
		base>>20, peak.Load()>>20, grew>>20, o.res.Count, o.res.Info, st)
	if grew > 64<<20 {
		t.Fatalf("the hub's process grew %d MiB over its baseline; the bound is 64 MiB", grew>>20)
	}
	ok, _ := strconv.Atoi(o.res.Info["OK"])
	invalid, _ := strconv.Atoi(o.res.Info["INVALID"])
	if ok < 100 || invalid < 10 {
		t.Fatalf("the flood did not flood: %v", o.res.Info)
	}
	if st.EventsDropped == 0 || st.Invalid < uint64(invalid) {
		t.Fatalf("drops or refusals not counted: %+v", st)
	}
	// Each 64 KiB event that was not dropped reached the subscriber's
	// socket; far fewer than were published.
	if st.EventsDelivered >= uint64(ok) {
		t.Fatalf("%d delivered of %d published: nothing was dropped", st.EventsDelivered, ok)
	}
}

// TestRootSpoofedHelloIsNoStart: a module whose Hello claims another
// module's name is refused by the real hub, and its start is not taken as
// done: Start fails at the ready deadline, not before, the hub counted
// and logged the refused handshake, and the module's process, seen
// sleeping in its cgroup from the host, is gone afterwards.
func TestRootSpoofedHelloIsNoStart(t *testing.T) {
	const ready = 2 * time.Second
	s := newSandbox(t, runtime.RestartPolicy{Never: true}, func(o *runtime.Options) { o.Ready = ready })
	var logs syncbuf.Buffer
	h := testHub(&logs, hub.Config{})
	defer h.Close()
	p := s.compileHub("spoofer")
	spec := hub.ModuleSpec{ID: "spoofer#1", Name: "spoofer", Version: "1.0.0", ACL: p.Hub}
	pids := make(chan []int, 1)
	go func() {
		// Halfway to the deadline the module has sent its Hello and sleeps.
		time.Sleep(ready / 2)
		pids <- modulePids(t, runtime.Layout{Root: s.root}, "spoofer")
	}()
	start := time.Now()
	err := s.sup.Start(context.Background(), runtime.Module{
		Policy: p, Binary: s.hostile, Config: []byte("greet_as = \"victim\"\nattack = \"sleep\"\narg = \"60s\"\n"),
		Serve: func(ln net.Listener, uid int, ready func()) error {
			spec.PeerUID, spec.OnReady = uid, ready
			return h.Attach(spec, ln)
		},
	})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no Hello on its socket within") {
		t.Fatalf("a module greeting as another started: %v", err)
	}
	if took < ready {
		t.Fatalf("start failed after %v, before the %v deadline: %v", took, ready, err)
	}
	st := h.Stats("spoofer")
	if st.HandshakeFailures == 0 || st.Connections == 0 {
		t.Fatalf("the refused Hello was not counted: %+v", st)
	}
	if !strings.Contains(logs.String(), "module name does not match the socket") {
		t.Fatalf("the refusal was not logged: %s", logs.String())
	}
	seen := <-pids
	if len(seen) == 0 {
		t.Fatal("no process in the module's cgroup while it slept: the attack did not run")
	}
	for _, pid := range seen {
		if alive(pid) {
			t.Errorf("the spoofer's process %d outlived its refused start", pid)
		}
	}
}

// TestRootHubLogFloodWithinBudget: a module with no capabilities makes the
// hub log because of it, every way it can, for a few seconds. The node's
// log grows by no more than the module's budget allows (plus one summary
// line per interval); nothing of the 500,000-byte method reaches it.
func TestRootHubLogFloodWithinBudget(t *testing.T) {
	const budget = 8 << 10
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	var logs syncbuf.Buffer
	h := testHub(&logs, hub.Config{LogBytesPerSecond: budget, LogSummaryEvery: time.Second})
	defer h.Close()
	p := s.compileHub("chatter")

	start := time.Now()
	o := s.runOnHub(h, p, "hub-log-flood", "4s")
	elapsed := time.Since(start)
	st := h.Stats("chatter")
	grown := len(logs.String())
	t.Logf("%d rounds; module saw %v; log grew %d bytes in %v; hub: %+v", o.res.Count, o.res.Info, grown, elapsed, st)

	if st.Denied < 100 || st.HandshakeFailures < 100 || st.BadFrames < 100 || st.Invalid < 100 {
		t.Fatalf("the flood did not flood: %+v", st)
	}
	if st.LogSuppressed < 100 {
		t.Fatalf("only %d lines suppressed", st.LogSuppressed)
	}
	summaries := int(elapsed/time.Second) + 2
	if limit := budget + int(budget*elapsed.Seconds()) + summaries*300; grown > limit {
		t.Fatalf("log grew %d bytes in %v; the budget allows %d:\n%.3000s", grown, elapsed, limit, logs.String())
	}
	if strings.Contains(logs.String(), strings.Repeat(`\x1b[2J`, 100)) || strings.Contains(logs.String(), "\x1b") {
		t.Fatal("the module's long or raw strings reached the log")
	}
	if !strings.Contains(logs.String(), "log budget exhausted") {
		t.Fatal("no summary line")
	}
}

// TestRootHubPeerUIDChecked tests the hub's own layer of the peer check:
// the socket is left open to everyone (a world-searchable directory, mode
// 0666), so only SO_PEERCRED stands between another uid and the module's
// API. A process running as uid 65534 is closed and counted; one running
// as the module's uid is served.
func TestRootHubPeerUIDChecked(t *testing.T) {
	requireRoot(t)
	const moduleUID, otherUID = 65533, 65534
	bins := testbuild.Static(t)
	dir, err := os.MkdirTemp("", "blvm-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hub.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	h := testHub(&logs, hub.Config{})
	defer h.Close()
	acl, err := hubtest.ACL("probe", "read_blockchain")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Attach(hub.ModuleSpec{ID: "probe#1", Name: "probe", Version: "1.0.0", ACL: acl, PeerUID: moduleUID}, ln); err != nil {
		t.Fatal(err)
	}
	probe := func(uid uint32) string {
		t.Helper()
		cmd := exec.Command(bins.Hostile)
		cmd.Env = []string{"BLVM_HOSTILE_PEER_PROBE=" + path, "BLVM_MODULE_NAME=probe"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("probe as %d: %v: %s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}

	if out := probe(otherUID); !strings.HasPrefix(out, "refused") {
		t.Fatalf("uid %d: %s", otherUID, out)
	}
	if st := h.Stats("probe"); st.PeerRefused != 1 || st.Connections != 0 || st.HandshakeFailures != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "connection from another uid refused") || !strings.Contains(logs.String(), "uid=65534") {
		t.Fatalf("not logged: %s", logs.String())
	}
	if out := probe(moduleUID); out != "welcome" {
		t.Fatalf("module uid %d: %s", moduleUID, out)
	}
	if st := h.Stats("probe"); st.PeerRefused != 1 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}
}
