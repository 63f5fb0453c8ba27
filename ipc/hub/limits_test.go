package hub_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/hub/hubtest"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// TestFrameDeadline: a frame that has begun must be complete within
// FrameTimeout, however steadily its bytes trickle in; an idle connection
// between frames stays open, and a frame split over a short pause is fine.
func TestFrameDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, hub.Config{FrameTimeout: timeout})
	slow := e.module("slow", "read_blockchain")
	idle := e.dial("slow")
	if _, err := idle.Hello("slow", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	split := e.dial("slow")
	if _, err := split.Hello("slow", "1.0.0"); err != nil {
		t.Fatal(err)
	}

	// A header for 100 bytes, then one byte every 50 ms: never finishes.
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		slow.SendRaw(binary.BigEndian.AppendUint32(nil, 100))
		for i := 0; i < 100; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if slow.SendRaw([]byte{0}) != nil {
				return
			}
		}
	}()
	expectClosed(t, slow)
	close(stop)
	if d := time.Since(start); d < timeout || d > 3*timeout {
		t.Fatalf("closed after %v; want about %v", d, timeout)
	}
	if s := e.h.Stats("slow"); s.BadFrames != 1 {
		t.Fatalf("stats %+v", s)
	}
	if !strings.Contains(e.logs.String(), "frame not complete within the deadline") {
		t.Fatalf("not logged: %s", e.logs.String())
	}

	// A frame in two writes, a pause well inside the deadline between.
	req, _ := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: 9, Method: "hub.Ping"}}}, 0)
	split.SendRaw(req[:3])
	time.Sleep(timeout / 3)
	split.SendRaw(req[3:])
	if r, err := split.Await(9); err != nil || r.Code != pb.ErrorCode_OK {
		t.Fatalf("split frame: %v %v", r, err)
	}

	// Idle for several deadlines without a byte: still served.
	time.Sleep(3 * timeout)
	ping(t, idle, 1)
	ping(t, split, 2)
}

// TestPublishedPayloadLimit: a payload over MaxEventPayload is INVALID and
// counted, never published; one at the limit goes through.
func TestPublishedPayloadLimit(t *testing.T) {
	e := newEnv(t, hub.Config{MaxEventPayload: 4 << 10})
	sub := e.module("sub", "subscribe_events")
	pub := e.module("pub", "publish_events")
	mustCall(t, sub, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"pub.Big"}}, pb.ErrorCode_OK)
	r := mustCall(t, pub, 1, "events.Publish", &pb.PublishParams{Type: "pub.Big", Payload: make([]byte, 4<<10+1)}, pb.ErrorCode_INVALID)
	if !strings.Contains(r.Message, "limit 4096") {
		t.Fatalf("message %q", r.Message)
	}
	if s := e.h.Stats("pub"); s.Invalid != 1 {
		t.Fatalf("stats %+v", s)
	}
	noEvent(t, sub, 2)
	mustCall(t, pub, 2, "events.Publish", &pb.PublishParams{Type: "pub.Big", Payload: make([]byte, 4<<10)}, pb.ErrorCode_OK)
	if ev := nextEvent(t, sub, 2*time.Second); len(ev.Payload) != 4<<10 {
		t.Fatalf("payload %d bytes", len(ev.Payload))
	}

	// The default is 64 KiB, well below the 1 MiB frame.
	d := newEnv(t, hub.Config{})
	pub2 := d.module("pub", "publish_events")
	mustCall(t, pub2, 1, "events.Publish", &pb.PublishParams{Type: "pub.Big", Payload: make([]byte, 64<<10+1)}, pb.ErrorCode_INVALID)
	mustCall(t, pub2, 2, "events.Publish", &pb.PublishParams{Type: "pub.Big", Payload: make([]byte, 64<<10)}, pb.ErrorCode_OK)
}

// TestInFlightBytes: requests waiting on a slow call hold their params in
// the hub; past InFlightBytes further requests are RATE_LIMITED, and once
// the calls end the module is served again.
func TestInFlightBytes(t *testing.T) {
	e := newEnv(t, hub.Config{InFlightBytes: 1 << 20, CallTimeout: time.Second})
	prov := e.module("stratum-v2", "register_module_api")
	caller := e.module("merge-mining", "read_stratum")
	mustCall(t, prov, 1, "modules.RegisterApi", &pb.ApiSpec{Methods: []string{"Hang"}}, pb.ErrorCode_OK)
	// The provider never answers; each call holds 300 KiB of params.
	big := &pb.ModuleCallParams{Method: "Hang", Params: make([]byte, 300<<10)}
	for id := uint64(1); id <= 4; id++ {
		if err := caller.Request(id, "modules.Call:stratum-v2", big); err != nil {
			t.Fatal(err)
		}
	}
	r, err := caller.Await(4)
	if err != nil || r.Code != pb.ErrorCode_RATE_LIMITED || !strings.Contains(r.Message, "bytes of requests in flight") {
		t.Fatalf("4th call: %v %v", r, err)
	}
	// Small requests still fit beside them.
	ping(t, caller, 5)
	for id := uint64(1); id <= 3; id++ {
		if r, err := caller.Await(id); err != nil || r.Code != pb.ErrorCode_TIMEOUT {
			t.Fatalf("call %d: %v %v", id, r, err)
		}
	}
	mustCall(t, caller, 6, "modules.Call:stratum-v2", big, pb.ErrorCode_TIMEOUT)
}

// TestPendingInvocationsBounded: invocations waiting on a module that never
// answers are bounded per module; past the bound the caller is refused at
// once, and the module's other callers are unaffected once it answers.
func TestPendingInvocationsBounded(t *testing.T) {
	e := newEnv(t, hub.Config{CallTimeout: 3 * time.Second, OutQueueBytes: 64 << 20})
	mute := e.module("mute", "register_cli")
	mute.Send(&pb.Envelope{Body: &pb.Envelope_RegisterCliSpec{RegisterCliSpec: &pb.RegisterCliSpec{Id: 1,
		Commands: []*pb.CliCommand{{Name: "hang"}}}}})
	if r, err := mute.Await(1); err != nil || r.Code != pb.ErrorCode_OK {
		t.Fatalf("%v %v", r, err)
	}
	// The module never answers. Its socket is read (by nobody here), so
	// invocations pile up in the hub.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	start := time.Now()
	for i := 0; i < 300; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.h.RunCli(ctx, "mute", "hang", nil)
			if errors.Is(err, hub.ErrUnavailable) && strings.Contains(err.Error(), "invocations already waiting") {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		}()
	}
	// The refused ones come back at once, long before the call timeout.
	eventually(t, "refusals", func() bool { mu.Lock(); defer mu.Unlock(); return refused >= 300-256 })
	if time.Since(start) > 2*time.Second {
		t.Fatalf("refusals took %v", time.Since(start))
	}
	cancel()
	wg.Wait()
	if refused != 300-256 {
		t.Fatalf("%d refused, want %d", refused, 300-256)
	}
}

// TestRegistrationsBounded: a CLI spec or an API registration over its byte
// bound is INVALID, as are registered names and help text carrying control
// characters; clean ones are stored.
func TestRegistrationsBounded(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.module("m", "register_cli", "register_module_api")
	cli := func(id uint64, spec *pb.RegisterCliSpec) *pb.Response {
		t.Helper()
		spec.Id = id
		if err := c.Send(&pb.Envelope{Body: &pb.Envelope_RegisterCliSpec{RegisterCliSpec: spec}}); err != nil {
			t.Fatal(err)
		}
		r, err := c.Await(id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cmd := func(name, about, usage string) *pb.RegisterCliSpec {
		return &pb.RegisterCliSpec{Commands: []*pb.CliCommand{{Name: name, About: about, Usage: usage}}}
	}
	bigCmds := &pb.RegisterCliSpec{}
	for i := 0; i < 64; i++ {
		bigCmds.Commands = append(bigCmds.Commands, &pb.CliCommand{Name: fmt.Sprintf("c%d", i), About: strings.Repeat("a", 1500)})
	}
	bad := []struct {
		name string
		spec *pb.RegisterCliSpec
		want string
	}{
		{"over the byte bound", bigCmds, "bytes, limit"},
		{"escape in a command name", cmd("x\x1b[2J", "", ""), "commands[0].name"},
		{"C1 control in a command name", cmd("x\u009b", "", ""), "commands[0].name"},
		{"space in a command name", cmd("two words", "", ""), "commands[0].name"},
		{"escape in about", cmd("x", "red \x1b[31m", ""), "about"},
		{"C1 control in usage", cmd("x", "", "x \u0085"), "usage"},
		{"bidi override in usage", cmd("x", "", "\u202e"), "usage"},
		{"carriage return in about", cmd("x", "a\rb", ""), "about"},
		{"escape in the spec's about", &pb.RegisterCliSpec{About: "\x07", Commands: []*pb.CliCommand{{Name: "x"}}}, "about"},
		{"escape in the spec's name", &pb.RegisterCliSpec{Name: "n\x00", Commands: []*pb.CliCommand{{Name: "x"}}}, "name"},
	}
	for i, tt := range bad {
		r := cli(uint64(10+i), tt.spec)
		if r.Code != pb.ErrorCode_INVALID || !strings.Contains(r.Message, tt.want) {
			t.Errorf("%s: %v %q", tt.name, r.Code, r.Message)
		}
		for _, ch := range r.Message {
			if ch < 0x20 || (ch >= 0x7f && ch < 0xa0) {
				t.Errorf("%s: the refusal echoes a control character: %q", tt.name, r.Message)
			}
		}
	}
	if len(e.h.CliSpecs()) != 0 {
		t.Fatalf("a refused spec was stored: %v", e.h.CliSpecs())
	}
	if r := cli(99, cmd("recent", "Lists blocks.\n\tNewest first.", "recent [n]")); r.Code != pb.ErrorCode_OK {
		t.Fatalf("clean spec: %v %q", r.Code, r.Message)
	}

	var long []string
	for i := 0; i < 200; i++ {
		long = append(long, fmt.Sprintf("%0100d", i))
	}
	mustCall(t, c, 1, "modules.RegisterApi", &pb.ApiSpec{Methods: long}, pb.ErrorCode_INVALID)
	mustCall(t, c, 2, "modules.RegisterApi", &pb.ApiSpec{Methods: []string{"ok", "bad\x1b"}}, pb.ErrorCode_INVALID)
	mustCall(t, c, 3, "modules.RegisterApi", &pb.ApiSpec{Methods: []string{"ok", "c1\u0085"}}, pb.ErrorCode_INVALID)
	mustCall(t, c, 4, "modules.RegisterApi", &pb.ApiSpec{Methods: []string{"GetJob"}}, pb.ErrorCode_OK)
	if s := e.h.Stats("m"); s.Invalid != uint64(len(bad)+3) {
		t.Fatalf("stats %+v", s)
	}
}

// TestProviderNameCheckedBeforeLogging: modules.Call to something that is
// no module name is INVALID, and nothing of it reaches the log.
func TestProviderNameCheckedBeforeLogging(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.module("nocaps")
	huge := "modules.Call:" + strings.Repeat("A", 500_000)
	before := len(e.logs.String())
	for id := uint64(1); id <= 20; id++ {
		r := mustCall(t, c, id, huge, &pb.ModuleCallParams{Method: "x"}, pb.ErrorCode_INVALID)
		if len(r.Message) > 200 {
			t.Fatalf("the refusal echoes %d bytes", len(r.Message))
		}
	}
	for id, m := range []string{"modules.Call:Bad_Name", "modules.Call:-x", "modules.Call:a\x1b"} {
		mustCall(t, c, uint64(100+id), m, nil, pb.ErrorCode_INVALID)
	}
	if grown := len(e.logs.String()) - before; grown != 0 {
		t.Fatalf("log grew by %d bytes: %s", grown, e.logs.String()[before:])
	}
	if s := e.h.Stats("nocaps"); s.Invalid != 23 || s.Denied != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A well-formed name that is not granted is denied, and logged short.
	mustCall(t, c, 200, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "x"}, pb.ErrorCode_PERMISSION_DENIED)
	if !strings.Contains(e.logs.String(), `method=modules.Call:stratum-v2`) {
		t.Fatalf("denial not logged: %s", e.logs.String())
	}
}

// TestModuleTextEscapedInLog: what a module says in a refused handshake or
// its own Log lines reaches the log truncated and escaped.
func TestModuleTextEscapedInLog(t *testing.T) {
	e := newEnv(t, hub.Config{HandshakeTimeout: time.Second})
	path := e.attach("victim", "read_blockchain")
	// (Protobuf strings are valid UTF-8, or the frame is refused as bad.)
	forged := "x\x1b[2J\ntime=2026 level=ERROR msg=\"forged\"\u0085\u202e" + strings.Repeat("y", 100_000)
	c, err := hubtest.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send(&pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{ProtocolVersion: ipc.ProtocolVersion, ModuleName: forged, ModuleVersion: forged}}})
	expectClosed(t, c)

	good, err := hubtest.Connect(path, "victim", forged)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	good.Send(&pb.Envelope{Body: &pb.Envelope_Log{Log: &pb.Log{Level: pb.LogLevel_ERROR, Message: forged,
		Fields: map[string]string{forged: forged}}}})
	ping(t, good, 1)

	logs := e.logs.String()
	for _, bad := range []string{"\x1b", "\u0085", "\u202e", "\nlevel=ERROR msg=\"forged\"", strings.Repeat("y", 5000)} {
		if strings.Contains(logs, bad) {
			t.Errorf("log holds %q", bad)
		}
	}
	for _, want := range []string{`claimed="x\\x1b[2J\\x0atime=2026`, "bytes)", "module claims a version other than the verified one"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%.2000s", want, logs)
		}
	}
	if n := strings.Count(logs, "\n"); n > 12 {
		t.Errorf("%d log lines: the module's newlines split lines", n)
	}
}

// TestHubLinesWithinLogBudget drives every line the hub writes because of a
// module, in a loop: denials, refused handshakes, extra connections, bad
// frames and protocol violations. The node's log grows by no more than the
// module's budget allows plus one summary line per interval, and the
// suppressed lines are counted.
func TestHubLinesWithinLogBudget(t *testing.T) {
	const budget, run = 4 << 10, 2 * time.Second
	e := newEnv(t, hub.Config{LogBytesPerSecond: budget, LogSummaryEvery: time.Second, MaxConnections: 2, RequestsPerSecond: 1e6})
	path := e.attach("flood")
	// Other modules' lines are not this module's: the flood is measured
	// from the start, after the attach.
	before := len(e.logs.String())
	main, err := hubtest.Connect(path, "flood", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	hello := func(name string) *pb.Envelope {
		return &pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{ProtocolVersion: ipc.ProtocolVersion, ModuleName: name, ModuleVersion: "9"}}}
	}
	long := strings.Repeat("Z", 200_000)
	end := time.Now().Add(run)
	rounds := 0
	for id := uint64(1); time.Now().Before(end); id += 2 {
		rounds++
		// Denied: a granted name shape, a method not granted.
		main.Request(id, "chain.GetBlock"+long[:1000], nil)
		main.Request(id+1, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: long[:50000]})
		// Refused handshake, wrong version, bad frame, protocol violation.
		for _, send := range []func(*hubtest.Client){
			func(c *hubtest.Client) { c.Send(hello("not-flood" + long[:10000])) },
			func(c *hubtest.Client) { c.Hello("flood", long[:10000]) },
			func(c *hubtest.Client) { c.Hello("flood", "1.0.0"); c.SendRaw([]byte{0, 0, 0, 3, 0xff, 0xff, 0xff}) },
			func(c *hubtest.Client) {
				c.Hello("flood", "1.0.0")
				c.Send(&pb.Envelope{Body: &pb.Envelope_Welcome{Welcome: &pb.Welcome{NodeVersion: long[:1000]}}})
			},
		} {
			c, err := hubtest.Dial(path)
			if err != nil {
				continue
			}
			// The third connection is one too many.
			if extra, err := hubtest.Dial(path); err == nil {
				extra.Close()
			}
			send(c)
			c.Close()
		}
		if rounds%10 == 0 {
			// Keep the main connection's responses read.
			main.Conn.SetReadDeadline(time.Now().Add(time.Millisecond))
			for {
				if _, err := main.ReadTimeout(time.Millisecond); err != nil {
					break
				}
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	grown := len(e.logs.String()) - before
	s := e.h.Stats("flood")
	t.Logf("%d rounds in %v: log grew %d bytes; stats %+v", rounds, run, grown, s)
	if s.Denied < 100 || s.HandshakeFailures < 100 || s.BadFrames < 100 {
		t.Fatalf("the flood did not flood: %+v", s)
	}
	if s.LogSuppressed < 100 {
		t.Fatalf("only %d lines suppressed", s.LogSuppressed)
	}
	// Burst plus rate for the run, and a summary line per second.
	summaries := int(run/time.Second) + 2
	if limit := budget + int(budget*run.Seconds()) + summaries*300; grown > limit {
		t.Fatalf("log grew %d bytes; the budget allows %d:\n%.3000s", grown, limit, e.logs.String()[before:])
	}
	if n := strings.Count(e.logs.String()[before:], "log budget exhausted"); n < 2 || n > summaries {
		t.Fatalf("%d summary lines, want 2 to %d", n, summaries)
	}
}
