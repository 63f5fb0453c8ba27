package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/policy"
)

func TestHandshake(t *testing.T) {
	h := newFakeHub(t, true)
	t.Setenv(EnvSocket, h.path) // Options.Socket empty: the SDK must read BLVM_SOCKET
	t.Setenv(EnvModuleName, "demo")
	t.Setenv(EnvModuleVersion, "1.2.3")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := Connect(ctx, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := h.accept()
	if c.hello.GetProtocolVersion() != ipc.ProtocolVersion || c.hello.GetModuleName() != "demo" || c.hello.GetModuleVersion() != "1.2.3" {
		t.Errorf("hello = %v", c.hello)
	}
	if got := m.Welcome().GetModuleId(); got != "demo#1" {
		t.Errorf("module id = %q", got)
	}
	if m.maxFrame != 64<<10 {
		t.Errorf("max frame = %d, want the hub's 64 KiB", m.maxFrame)
	}
}

func TestHandshakeFailures(t *testing.T) {
	tests := []struct {
		name    string
		hub     func(c *hubConn)
		timeout time.Duration
		want    string
		wantIs  error
	}{
		{"hub closes after hello", func(c *hubConn) { c.mustRecv(); c.conn.Close() }, time.Second, "hub closed the connection", nil},
		{"hub never answers", func(c *hubConn) { c.mustRecv() }, 100 * time.Millisecond, "", context.DeadlineExceeded},
		{"hub refuses with a response", func(c *hubConn) {
			c.mustRecv()
			c.respond(0, pb.ErrorCode_PERMISSION_DENIED, "name does not match socket", nil)
		}, time.Second, "PERMISSION_DENIED", nil},
		{"wrong protocol version", func(c *hubConn) {
			c.mustRecv()
			w := testWelcome()
			w.ProtocolVersion = 99
			c.send(&pb.Envelope{Body: &pb.Envelope_Welcome{Welcome: w}})
		}, time.Second, "protocol version 99", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHub(t, false)
			go func() {
				c := <-h.conns
				defer c.conn.Close()
				tt.hub(c)
				time.Sleep(300 * time.Millisecond)
			}()
			start := time.Now()
			_, err := Connect(context.Background(), Options{Socket: h.path, Name: "demo", HandshakeTimeout: tt.timeout, Logger: quietLogger()})
			if err == nil {
				t.Fatal("Connect succeeded")
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want %v", err, tt.wantIs)
			}
			if time.Since(start) > tt.timeout+time.Second {
				t.Errorf("Connect took %v", time.Since(start))
			}
		})
	}
}

func TestConnectNoName(t *testing.T) {
	t.Setenv(EnvModuleName, "")
	_, err := Connect(context.Background(), Options{Socket: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), EnvModuleName) {
		t.Fatalf("err = %v, want it to name %s", err, EnvModuleName)
	}
}

func TestConnectNoSocket(t *testing.T) {
	_, err := Connect(context.Background(), Options{Name: "demo", Socket: filepath.Join(t.TempDir(), "none.sock")})
	if err == nil || !strings.Contains(err.Error(), "connect to hub") {
		t.Fatalf("err = %v", err)
	}
}

// Many calls in flight; the hub answers them in reverse order and each
// caller must get its own answer.
func TestConcurrentCallsOutOfOrder(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	const n = 50
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(height uint64) {
			b, err := m.BlockByHeight(context.Background(), height)
			if err == nil && b.GetHeader().GetHeight() != height {
				err = fmt.Errorf("asked for %d, got %d", height, b.GetHeader().GetHeight())
			}
			errs <- err
		}(uint64(i))
	}
	reqs := make([]*pb.Request, 0, n)
	seen := map[uint64]bool{}
	for len(reqs) < n {
		r := c.request()
		if r.GetMethod() != "chain.GetBlockByHeight" {
			t.Fatalf("method = %q", r.GetMethod())
		}
		if seen[r.GetId()] {
			t.Fatalf("id %d reused while in flight", r.GetId())
		}
		seen[r.GetId()] = true
		reqs = append(reqs, r)
	}
	for i := len(reqs) - 1; i >= 0; i-- {
		var p pb.HeightParams
		unmarshal(t, reqs[i].GetParams(), &p)
		c.respond(reqs[i].GetId(), pb.ErrorCode_OK, "", &pb.Block{Header: &pb.BlockHeader{Height: p.GetHeight()}})
	}
	for i := 0; i < n; i++ {
		if err := waitErr(t, errs); err != nil {
			t.Error(err)
		}
	}
}

func TestErrorCodesSurfaced(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	codes := []pb.ErrorCode{pb.ErrorCode_PERMISSION_DENIED, pb.ErrorCode_RATE_LIMITED, pb.ErrorCode_INVALID,
		pb.ErrorCode_UNAVAILABLE, pb.ErrorCode_TIMEOUT, pb.ErrorCode_NOT_FOUND, pb.ErrorCode_INTERNAL}
	for _, code := range codes {
		t.Run(code.String(), func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := m.CastVote(context.Background(), "p1", "yes")
				done <- err
			}()
			r := c.request()
			c.respond(r.GetId(), code, "because", nil)
			err := waitErr(t, done)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.Code != code || e.Method != "governance.CastVote" || e.Message != "because" {
				t.Errorf("err = %+v", e)
			}
			if CodeOf(err) != code {
				t.Errorf("CodeOf = %v", CodeOf(err))
			}
		})
	}
	// The connection survived every refusal.
	done := make(chan error, 1)
	go func() {
		tip, err := m.ChainTip(context.Background())
		if err == nil && tip.GetHeight() != 7 {
			err = fmt.Errorf("tip height %d", tip.GetHeight())
		}
		done <- err
	}()
	r := c.request()
	c.respond(r.GetId(), pb.ErrorCode_OK, "", &pb.BlockRef{Hash: "00ab", Height: 7})
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	if CodeOf(nil) != pb.ErrorCode_OK || CodeOf(errors.New("x")) != pb.ErrorCode_INTERNAL {
		t.Error("CodeOf of nil or a plain error")
	}
}

func TestEventsDispatched(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	var mu sync.Mutex
	var blocks, all []uint64
	lost := make(chan uint64, 4)
	got := make(chan struct{}, 16)
	m.OnEvent("node.BlockConnected", func(ctx context.Context, ev Event) {
		var b pb.BlockEvent
		unmarshal(t, ev.GetPayload(), &b)
		mu.Lock()
		blocks = append(blocks, b.GetHeight())
		mu.Unlock()
	})
	m.OnEvent(AllEvents, func(ctx context.Context, ev Event) {
		mu.Lock()
		all = append(all, ev.GetSequence())
		mu.Unlock()
		got <- struct{}{}
	})
	m.OnDropped(func(_ context.Context, n uint64) { lost <- n })

	done := make(chan error, 1)
	go func() { done <- m.Subscribe(context.Background(), "node.BlockConnected", "module.ModuleLoaded") }()
	r := c.request()
	var types pb.EventTypes
	unmarshal(t, r.GetParams(), &types)
	if r.GetMethod() != "events.Subscribe" || strings.Join(types.GetTypes(), ",") != "node.BlockConnected,module.ModuleLoaded" {
		t.Fatalf("subscribe request = %v %v", r.GetMethod(), types.GetTypes())
	}
	c.respond(r.GetId(), pb.ErrorCode_OK, "", &pb.Empty{})
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}

	for i, h := range []uint64{101, 102, 103} {
		payload, _ := marshal(&pb.BlockEvent{Height: h})
		ev := &pb.Event{Type: "node.BlockConnected", Sequence: uint64(i + 1), Payload: payload}
		if i == 2 {
			ev.Dropped = 3
		}
		c.send(&pb.Envelope{Body: &pb.Envelope_Event{Event: ev}})
	}
	c.send(&pb.Envelope{Body: &pb.Envelope_Event{Event: &pb.Event{Type: "module.ModuleLoaded", Sequence: 4}}})
	for i := 0; i < 4; i++ {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("events not delivered")
		}
	}
	mu.Lock()
	if fmt.Sprint(blocks) != "[101 102 103]" || fmt.Sprint(all) != "[1 2 3 4]" {
		t.Errorf("blocks %v, all %v: want delivery order kept", blocks, all)
	}
	mu.Unlock()
	select {
	case n := <-lost:
		if n != 3 {
			t.Errorf("OnDropped(%d), want 3", n)
		}
	case <-time.After(time.Second):
		t.Error("OnDropped not called")
	}
	if m.Dropped() != 3 {
		t.Errorf("Dropped() = %d", m.Dropped())
	}
}

// A handler that blocks must not stop responses: events beyond the local
// queue are dropped and counted instead.
func TestSlowEventHandlerDoesNotBlockCalls(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{EventQueue: 2})
	release := make(chan struct{})
	m.OnEvent(AllEvents, func(ctx context.Context, ev Event) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
	for i := 1; i <= 10; i++ {
		c.send(&pb.Envelope{Body: &pb.Envelope_Event{Event: &pb.Event{Type: "node.BlockConnected", Sequence: uint64(i)}}})
	}
	done := make(chan error, 1)
	go func() { _, err := m.BlockHeight(context.Background()); done <- err }()
	r := c.request()
	c.respond(r.GetId(), pb.ErrorCode_OK, "", &pb.Height{Height: 1})
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	close(release)
	// 10 sent: one in the handler, two queued, at least 7 dropped here.
	if d := m.Dropped(); d < 7 {
		t.Errorf("Dropped() = %d, want >= 7", d)
	}
}

func TestCLIInvocation(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	done := make(chan error, 1)
	go func() {
		done <- m.HandleCLI(context.Background(), CLISpec{About: "demo", Commands: []CLICommand{{Name: "recent", About: "recent blocks", Usage: "recent [N]"}}},
			func(ctx context.Context, cmd string, args []string) ([]byte, []byte, int) {
				if _, ok := ctx.Deadline(); !ok {
					return nil, []byte("no deadline"), 1
				}
				return []byte(cmd + " " + strings.Join(args, " ") + "\n"), nil, 0
			})
	}()
	env := c.mustRecv()
	spec := env.GetRegisterCliSpec()
	if spec == nil || len(spec.GetCommands()) != 1 || spec.GetCommands()[0].GetUsage() != "recent [N]" {
		t.Fatalf("expected RegisterCliSpec, got %v", env)
	}
	c.respond(spec.GetId(), pb.ErrorCode_OK, "", nil)
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}

	invoke := func(id uint64, cmd string, args ...string) *pb.InvocationResult {
		c.send(&pb.Envelope{Body: &pb.Envelope_Invocation{Invocation: &pb.Invocation{
			Id: id, TimeoutMs: 2000, Kind: &pb.Invocation_Cli{Cli: &pb.CliInvocation{Command: cmd, Args: args}},
		}}})
		res := c.mustRecv().GetInvocationResult()
		if res == nil || res.GetId() != id {
			t.Fatalf("result = %v, want id %d", res, id)
		}
		return res
	}
	if res := invoke(41, "recent", "5"); string(res.GetCli().GetStdout()) != "recent 5\n" || res.GetCli().GetExitCode() != 0 {
		t.Errorf("recent: %v", res)
	}
	if res := invoke(42, "nope"); res.GetCli().GetExitCode() != ExitUsage || !strings.Contains(string(res.GetCli().GetStderr()), "recent") {
		t.Errorf("unknown command: %v", res)
	}
}

func TestCLIRegistrationRefused(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	done := make(chan error, 1)
	go func() { done <- m.HandleCLI(context.Background(), CLISpec{}, nil) }()
	spec := c.mustRecv().GetRegisterCliSpec()
	c.respond(spec.GetId(), pb.ErrorCode_PERMISSION_DENIED, "no register_cli", nil)
	if err := waitErr(t, done); CodeOf(err) != pb.ErrorCode_PERMISSION_DENIED {
		t.Fatalf("err = %v", err)
	}
}

func TestAPIInvocation(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	m.HandleAPI("GetTemplate", func(ctx context.Context, caller Caller, params []byte) ([]byte, error) {
		return []byte(caller.ModuleID + "/" + caller.ModuleName + "/" + string(params)), nil
	})
	m.HandleAPI("Missing", func(ctx context.Context, caller Caller, params []byte) ([]byte, error) {
		return nil, &Error{Code: pb.ErrorCode_NOT_FOUND, Message: "no such job"}
	})
	m.HandleAPI("Broken", func(ctx context.Context, caller Caller, params []byte) ([]byte, error) {
		return nil, errors.New("disk on fire")
	})
	m.HandleAPI("Panics", func(ctx context.Context, caller Caller, params []byte) ([]byte, error) {
		panic("bug")
	})
	done := make(chan error, 1)
	go func() { done <- m.RegisterAPI(context.Background()) }()
	r := c.request()
	var spec pb.ApiSpec
	unmarshal(t, r.GetParams(), &spec)
	if r.GetMethod() != "modules.RegisterApi" || strings.Join(spec.GetMethods(), ",") != "Broken,GetTemplate,Missing,Panics" {
		t.Fatalf("register = %s %v", r.GetMethod(), spec.GetMethods())
	}
	c.respond(r.GetId(), pb.ErrorCode_OK, "", &pb.Empty{})
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		method   string
		wantCode pb.ErrorCode
		wantOut  string
	}{
		{"GetTemplate", pb.ErrorCode_OK, "merge-mining#2/merge-mining/p"},
		{"Missing", pb.ErrorCode_NOT_FOUND, ""},
		{"Broken", pb.ErrorCode_INTERNAL, ""},
		{"Panics", pb.ErrorCode_INTERNAL, ""},
		{"Unknown", pb.ErrorCode_INVALID, ""},
	}
	// Send them all first: invocations run concurrently and may finish in any order.
	for i, tt := range tests {
		c.send(&pb.Envelope{Body: &pb.Envelope_Invocation{Invocation: &pb.Invocation{Id: uint64(100 + i), Kind: &pb.Invocation_Api{Api: &pb.ApiInvocation{
			CallerModuleId: "merge-mining#2", CallerModuleName: "merge-mining", Method: tt.method, Params: []byte("p"),
		}}}}})
	}
	results := map[uint64]*pb.ApiResult{}
	for range tests {
		res := c.mustRecv().GetInvocationResult()
		results[res.GetId()] = res.GetApi()
	}
	for i, tt := range tests {
		got := results[uint64(100+i)]
		if got.GetCode() != tt.wantCode || string(got.GetResult()) != tt.wantOut {
			t.Errorf("%s: got %v, want %v %q", tt.method, got, tt.wantCode, tt.wantOut)
		}
	}
}

// Invocations beyond MaxInvocations are answered busy, not queued.
func TestInvocationsBounded(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{MaxInvocations: 1})
	release := make(chan struct{})
	m.HandleAPI("Slow", func(ctx context.Context, caller Caller, params []byte) ([]byte, error) {
		<-release
		return []byte("done"), nil
	})
	for id := uint64(1); id <= 2; id++ {
		c.send(&pb.Envelope{Body: &pb.Envelope_Invocation{Invocation: &pb.Invocation{Id: id, Kind: &pb.Invocation_Api{Api: &pb.ApiInvocation{Method: "Slow"}}}}})
	}
	first := c.mustRecv().GetInvocationResult()
	if first.GetId() != 2 || first.GetApi().GetCode() != pb.ErrorCode_UNAVAILABLE {
		t.Errorf("second invocation: %v, want UNAVAILABLE at once", first)
	}
	close(release)
	if second := c.mustRecv().GetInvocationResult(); second.GetId() != 1 || string(second.GetApi().GetResult()) != "done" {
		t.Errorf("first invocation: %v", second)
	}
}

func TestCallModule(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	type out struct {
		b   []byte
		err error
	}
	done := make(chan out, 1)
	go func() {
		b, err := m.CallModule(context.Background(), "stratum-v2", "GetTemplate", []byte(`{}`))
		done <- out{b, err}
	}()
	r := c.request()
	var p pb.ModuleCallParams
	unmarshal(t, r.GetParams(), &p)
	if r.GetMethod() != "modules.Call:stratum-v2" || p.GetMethod() != "GetTemplate" || string(p.GetParams()) != "{}" {
		t.Fatalf("request %s %v", r.GetMethod(), &p)
	}
	c.send(&pb.Envelope{Body: &pb.Envelope_Response{Response: &pb.Response{Id: r.GetId(), Result: []byte(`{"height":5}`)}}})
	select {
	case o := <-done:
		if o.err != nil || string(o.b) != `{"height":5}` {
			t.Fatalf("CallModule = %q, %v", o.b, o.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}

	go func() {
		_, err := m.CallModule(context.Background(), "stratum-v2", "GetTemplate", nil)
		done <- out{nil, err}
	}()
	r = c.request()
	c.respond(r.GetId(), pb.ErrorCode_UNAVAILABLE, "stratum-v2 not connected", nil)
	if o := <-done; CodeOf(o.err) != pb.ErrorCode_UNAVAILABLE {
		t.Fatalf("err = %v", o.err)
	}
}

func TestPublishAndLog(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	for _, typ := range []string{"CommitmentReady", "demo.CommitmentReady"} {
		done := make(chan error, 1)
		go func() { done <- m.Publish(context.Background(), typ, []byte("x")) }()
		r := c.request()
		var p pb.PublishParams
		unmarshal(t, r.GetParams(), &p)
		if r.GetMethod() != "events.Publish" || p.GetType() != "demo.CommitmentReady" || string(p.GetPayload()) != "x" {
			t.Errorf("publish %q: %s %v", typ, r.GetMethod(), &p)
		}
		c.respond(r.GetId(), pb.ErrorCode_OK, "", nil)
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
	}
}

// By default a line goes to the module's stderr (Logger), which the
// runtime captures for `logs`, and not to the hub; LogToHub adds the hub.
func TestLogGoesToStderrByDefault(t *testing.T) {
	for _, toHub := range []bool{false, true} {
		t.Run(fmt.Sprintf("LogToHub=%v", toHub), func(t *testing.T) {
			h := newFakeHub(t, true)
			var local syncbuf.Buffer
			m, c := h.connect(Options{LogToHub: toHub, Logger: slog.New(slog.NewTextHandler(&local, nil))})
			m.Warn("disk nearly full", "free", "10MB")
			if got := local.String(); !strings.Contains(got, `level=WARN msg="disk nearly full" module=demo#1 free=10MB`) {
				t.Errorf("local log = %q", got)
			}
			// A Ping after the line: the hub sees the Log frame first, or none.
			go m.Ping(context.Background())
			env := c.mustRecv()
			if l := env.GetLog(); toHub {
				if l.GetLevel() != pb.LogLevel_WARN || l.GetMessage() != "disk nearly full" || l.GetFields()["free"] != "10MB" {
					t.Errorf("hub got %v, want the Log line", env)
				}
			} else if l != nil || env.GetRequest().GetMethod() != "hub.Ping" {
				t.Errorf("hub got %v, want only the Ping", env)
			}
		})
	}
}

func TestContextCancel(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := m.ChainTip(ctx); done <- err }()
	r := c.request()
	cancel()
	if err := waitErr(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The late answer is ignored and the connection is still good.
	c.respond(r.GetId(), pb.ErrorCode_OK, "", &pb.BlockRef{Height: 1})
	go func() { _, err := m.ChainTip(context.Background()); done <- err }()
	r2 := c.request()
	if r2.GetId() == r.GetId() {
		t.Error("id reused")
	}
	c.respond(r2.GetId(), pb.ErrorCode_OK, "", &pb.BlockRef{Height: 2})
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	leaked := len(m.pending)
	m.mu.Unlock()
	if leaked != 0 {
		t.Errorf("%d pending entries leaked", leaked)
	}
}

// MaxInFlight holds further calls back locally instead of sending them.
func TestMaxInFlight(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{MaxInFlight: 2})
	done := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { _, err := m.BlockHeight(context.Background()); done <- err }()
	}
	a, b := c.request(), c.request()
	c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := ipc.ReadEnvelope(c.conn, ipc.HardMaxFrame); err == nil {
		t.Fatal("a third request was sent while two were in flight")
	}
	c.respond(a.GetId(), pb.ErrorCode_OK, "", &pb.Height{})
	third := c.request()
	c.respond(b.GetId(), pb.ErrorCode_OK, "", &pb.Height{})
	c.respond(third.GetId(), pb.ErrorCode_OK, "", &pb.Height{})
	for i := 0; i < 3; i++ {
		if err := waitErr(t, done); err != nil {
			t.Error(err)
		}
	}
}

// A request too large for the hub's frame limit fails locally; the
// connection stays up.
func TestOversizedRequest(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	err := m.Publish(context.Background(), "Big", bytes.Repeat([]byte("x"), 65<<10))
	if !errors.Is(err, ipc.ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Ping(context.Background()) }()
	r := c.request()
	if r.GetMethod() != "hub.Ping" {
		t.Fatalf("method %s", r.GetMethod())
	}
	c.respond(r.GetId(), pb.ErrorCode_OK, "", nil)
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestHubCloseUnblocksPending(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	const n = 10
	done := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { _, err := m.ChainInfo(context.Background()); done <- err }()
	}
	for i := 0; i < n; i++ {
		c.request()
	}
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(context.Background()) }()
	c.conn.Close()
	for i := 0; i < n; i++ {
		if err := waitErr(t, done); !errors.Is(err, ErrClosed) {
			t.Errorf("pending call: %v, want ErrClosed", err)
		}
	}
	if err := waitErr(t, runErr); err == nil || !strings.Contains(err.Error(), "hub closed the connection") {
		t.Errorf("Run = %v", err)
	}
	if _, err := m.ChainTip(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("call after close: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Error("Done not closed")
	}
}

func TestRunStopsOnContext(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	cancel()
	if err := waitErr(t, runErr); err != nil {
		t.Fatalf("Run = %v, want nil on cancel", err)
	}
	if _, err := c.recv(); err == nil {
		t.Error("hub still connected after Run returned")
	}
	if !errors.Is(m.Err(), ErrClosed) {
		t.Errorf("Err = %v", m.Err())
	}
}

func TestLoadConfigAndDataDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte("backfill = 3\ndatabase_backend = \"bbolt\"\n[votes]\np1 = \"yes\"\n"), 0o600)
	t.Setenv(EnvConfig, path)
	t.Setenv(EnvDataDir, dir)
	var cfg struct {
		Backfill int
		Votes    map[string]string
	}
	if err := LoadConfig("", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Backfill != 3 || cfg.Votes["p1"] != "yes" {
		t.Errorf("cfg = %+v", cfg)
	}
	if err := LoadConfig(filepath.Join(dir, "missing.toml"), &cfg); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if DataDir() != dir {
		t.Errorf("DataDir = %q", DataDir())
	}
	t.Setenv(EnvDataDir, "")
	t.Setenv(EnvConfig, "")
	if DataDir() != "/data" || ConfigPath() != "/etc/module/config.toml" {
		t.Errorf("defaults: %q %q", DataDir(), ConfigPath())
	}
}

// The SDK's defaults must be where the runtime mounts things.
func TestPathsMatchPolicy(t *testing.T) {
	for _, c := range []struct{ sdk, policy string }{
		{DefaultSocket, policy.HubSocketPath},
		{DefaultConfig, policy.ConfigPath},
		{DefaultDataDir, policy.DataDir},
	} {
		if c.sdk != c.policy {
			t.Errorf("sdk %q, policy %q", c.sdk, c.policy)
		}
	}
}

// A handler may call Close (no deadlock), and closing cancels the contexts
// of handlers still running; Run waits for them.
func TestCloseFromHandlerAndHandlerContexts(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	cancelled := make(chan struct{})
	m.HandleAPI("Wait", func(ctx context.Context, caller Caller, params []byte) ([]byte, error) {
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	m.HandleAPI("Quit", func(ctx context.Context, caller Caller, params []byte) ([]byte, error) {
		return nil, m.Close()
	})
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(context.Background()) }()
	for i, method := range []string{"Wait", "Quit"} {
		c.send(&pb.Envelope{Body: &pb.Envelope_Invocation{Invocation: &pb.Invocation{Id: uint64(i + 1), Kind: &pb.Invocation_Api{Api: &pb.ApiInvocation{Method: method}}}}})
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the running handler's context was not cancelled")
	}
	if err := waitErr(t, runErr); err != nil {
		t.Errorf("Run after Close = %v, want nil", err)
	}
}

func TestEventHandlerPanicKeepsDispatching(t *testing.T) {
	h := newFakeHub(t, true)
	m, c := h.connect(Options{})
	got := make(chan uint64, 2)
	m.OnEvent(AllEvents, func(ctx context.Context, ev Event) {
		if ev.GetSequence() == 1 {
			panic("bad handler")
		}
		got <- ev.GetSequence()
	})
	for i := uint64(1); i <= 2; i++ {
		c.send(&pb.Envelope{Body: &pb.Envelope_Event{Event: &pb.Event{Type: "x.Y", Sequence: i}}})
	}
	select {
	case seq := <-got:
		if seq != 2 {
			t.Errorf("got %d", seq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dispatch stopped after a panic")
	}
}

// Cancelling ctx (not only its deadline) ends a handshake the hub ignores.
func TestConnectCancelled(t *testing.T) {
	h := newFakeHub(t, false)
	go func() {
		c := <-h.conns
		defer c.conn.Close()
		c.mustRecv()
		time.Sleep(2 * time.Second)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Connect(ctx, Options{Socket: h.path, Name: "demo", Logger: quietLogger()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}
