package hub_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/hub/hubtest"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

func TestWelcome(t *testing.T) {
	e := newEnv(t, hub.Config{MaxFrame: 256 << 10})
	ready := e.h.Ready("block-logger") // before Attach
	c := e.module("block-logger", "read_blockchain", "subscribe_events")
	select {
	case <-ready:
	case <-time.After(2 * time.Second):
		t.Fatal("Ready not closed after the handshake")
	}
	if n := e.readyCalls("block-logger"); n != 1 {
		t.Fatalf("OnReady called %d times after one handshake, want 1", n)
	}
	w := c.Welcome
	if w.NodeVersion != "blvm-test 0.1" || w.ModuleId != "id-block-logger" || w.Network != "regtest" ||
		w.PublishNamespace != "block-logger" || w.MaxFrameBytes != 256<<10 || w.ProtocolVersion != ipc.ProtocolVersion {
		t.Fatalf("welcome: %v", w)
	}
	if !slices.Equal(w.Capabilities, []string{"read_blockchain", "subscribe_events"}) {
		t.Fatalf("capabilities: %v", w.Capabilities)
	}
	if !slices.Contains(w.Methods, "chain.GetBlockByHeight") || slices.Contains(w.Methods, "governance.CastVote") {
		t.Fatalf("methods: %v", w.Methods)
	}
	if !slices.Contains(w.Events, "node.BlockConnected") || slices.Contains(w.Events, "node.MempoolTransactionAdded") {
		t.Fatalf("events: %v", w.Events)
	}
	if s := e.h.Stats("block-logger"); s.Connections != 1 || s.Open != 1 || s.HandshakeFailures != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestHandshakeFailures(t *testing.T) {
	hello := func(version uint32, name string) []byte {
		f, _ := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{
			ProtocolVersion: version, ModuleName: name, ModuleVersion: "1.0.0"}}}, 0)
		return f
	}
	request, _ := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: 1, Method: "hub.Ping"}}}, 0)
	tests := []struct {
		name    string
		send    []byte // nil: send nothing and wait for the deadline
		badFrms uint64
	}{
		{"spoofed module name", hello(ipc.ProtocolVersion, "lightning-network"), 0},
		{"empty module name", hello(ipc.ProtocolVersion, ""), 0},
		{"unknown protocol version", hello(99, "victim"), 0},
		{"request before handshake", request, 0},
		{"missing handshake", nil, 0},
		{"garbage first frame", append([]byte{0, 0, 0, 4}, 0xff, 0xff, 0xff, 0xff), 1},
		{"oversized first frame", []byte{0x7f, 0, 0, 0}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, hub.Config{HandshakeTimeout: 150 * time.Millisecond})
			e.attach("victim", "read_blockchain")
			ready := e.h.Ready("victim")
			c := e.dial("victim")
			start := time.Now()
			if tt.send != nil {
				if err := c.SendRaw(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			expectClosed(t, c)
			if tt.send == nil && time.Since(start) < 100*time.Millisecond {
				t.Fatalf("closed after %v, before the deadline", time.Since(start))
			}
			s := e.h.Stats("victim")
			if s.HandshakeFailures != 1 || s.BadFrames != tt.badFrms || s.Requests != 0 {
				t.Fatalf("stats: %+v", s)
			}
			select {
			case <-ready:
				t.Fatal("Ready closed without a handshake")
			default:
			}
			if n := e.readyCalls("victim"); n != 0 {
				t.Fatalf("OnReady called %d times without a handshake", n)
			}
			if !strings.Contains(e.logs.String(), "handshake failed") {
				t.Fatalf("not logged: %s", e.logs.String())
			}
			// The module can still connect properly afterwards.
			good, err := hubtest.Connect(e.dir+"/victim.sock", "victim", "1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			defer good.Close()
			ping(t, good, 1)
			if n := e.readyCalls("victim"); n != 1 {
				t.Fatalf("OnReady called %d times after the good handshake, want 1", n)
			}
		})
	}
}

// TestBadFramesCloseOnlyThatConnection: after the handshake, a bad frame
// closes the connection that sent it; another module is untouched.
func TestBadFramesCloseOnlyThatConnection(t *testing.T) {
	welcome, _ := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Welcome{Welcome: &pb.Welcome{}}}, 0)
	tests := []struct {
		name      string
		send      []byte
		closeSend bool
	}{
		{"oversized", binary.BigEndian.AppendUint32(nil, 64<<10+1), false},
		{"at hard cap", binary.BigEndian.AppendUint32(nil, 0xffffffff), false},
		{"truncated", append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...), true},
		{"garbage", append(binary.BigEndian.AppendUint32(nil, 6), 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f), false},
		{"empty envelope", binary.BigEndian.AppendUint32(nil, 0), false},
		{"hub-only message", welcome, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, hub.Config{MaxFrame: 64 << 10})
			bad := e.module("bad", "read_blockchain")
			good := e.module("good", "read_blockchain")
			if err := bad.SendRaw(tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.closeSend {
				bad.Conn.(*net.UnixConn).CloseWrite()
			}
			expectClosed(t, bad)
			if s := e.h.Stats("bad"); s.BadFrames != 1 {
				t.Fatalf("bad stats: %+v", s)
			}
			ping(t, good, 1)
			if s := e.h.Stats("good"); s.BadFrames != 0 || s.Open != 1 {
				t.Fatalf("good stats: %+v", s)
			}
			eventually(t, "bad connection counted closed", func() bool { return e.h.Stats("bad").Open == 0 })
		})
	}
}

// TestRequests: each refusal or failure is an answer, and the connection
// stays up for the next request.
func TestRequests(t *testing.T) {
	e := newEnv(t, hub.Config{CallTimeout: 100 * time.Millisecond})
	e.b.Hook = func(ctx context.Context, method string, arg any) error {
		if method == "BlockHash" && arg.(uint64) == 7 {
			<-ctx.Done() // a node that hangs
			return ctx.Err()
		}
		if method == "BlockHash" && arg.(uint64) == 8 {
			return errors.New("disk on fire at /var/lib/node")
		}
		return nil
	}
	c := e.module("reader", "read_blockchain", "governance_read")
	tip, height := e.b.Tip()
	tests := []struct {
		method string
		params proto.Message
		want   pb.ErrorCode
		check  func(t *testing.T, result []byte)
	}{
		{"chain.GetChainTip", nil, pb.ErrorCode_OK, func(t *testing.T, res []byte) {
			var r pb.BlockRef
			proto.Unmarshal(res, &r)
			if r.Hash != tip.String() || r.Height != height {
				t.Fatalf("tip %v", &r)
			}
		}},
		{"chain.GetBlockByHeight", &pb.HeightParams{Height: 3}, pb.ErrorCode_OK, func(t *testing.T, res []byte) {
			var b pb.Block
			proto.Unmarshal(res, &b)
			var blk wire.MsgBlock
			if err := blk.Deserialize(strings.NewReader(string(b.Raw))); err != nil || blk.BlockHash().String() != b.Header.Hash ||
				b.Header.Height != 3 || len(b.Txids) != 1 || len(b.Header.Raw) != 80 {
				t.Fatalf("block %v: %v", &b, err)
			}
		}},
		{"chain.GetBlockByHeight", &pb.HeightParams{Height: 999}, pb.ErrorCode_NOT_FOUND, nil},
		{"chain.GetBlockByHeight", &pb.HeightParams{Height: 7}, pb.ErrorCode_TIMEOUT, nil},
		{"chain.GetBlockByHeight", &pb.HeightParams{Height: 8}, pb.ErrorCode_UNAVAILABLE, nil},
		{"chain.GetBlockHeader", &pb.BlockHashParams{Hash: "abc"}, pb.ErrorCode_INVALID, nil},
		{"chain.GetBlockHeader", &pb.BlockHashParams{Hash: tip.String()}, pb.ErrorCode_OK, nil},
		{"chain.GetNothing", nil, pb.ErrorCode_INVALID, nil},
		{"governance.CastVote", &pb.VoteParams{ProposalId: "p1", Choice: "yes"}, pb.ErrorCode_PERMISSION_DENIED, nil},
		{"events.Publish", &pb.PublishParams{Type: "reader.X"}, pb.ErrorCode_PERMISSION_DENIED, nil},
		{"modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "x"}, pb.ErrorCode_PERMISSION_DENIED, nil},
		{"mempool.GetMempoolInfo", nil, pb.ErrorCode_PERMISSION_DENIED, nil},
		{"governance.GetProposal", &pb.ProposalParams{Id: "nope"}, pb.ErrorCode_NOT_FOUND, nil},
		{"governance.ListProposals", nil, pb.ErrorCode_OK, nil},
	}
	for i, tt := range tests {
		r := mustCall(t, c, uint64(i+1), tt.method, tt.params, tt.want)
		if tt.check != nil {
			tt.check(t, r.Result)
		}
	}
	if strings.Contains(fmt.Sprint(c.Backlog), "disk on fire") {
		t.Fatal("backend error details leaked to the module")
	}
	s := e.h.Stats("reader")
	if s.Denied != 4 || s.Requests != uint64(len(tests)) || s.Open != 1 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestACLBeforeParams: a denied method is refused before its params are
// looked at, so garbage params still get PERMISSION_DENIED, while granted
// methods with garbage params get INVALID.
func TestACLBeforeParams(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.module("m", "read_blockchain")
	garbage := []byte{0xff, 0xff, 0xff}
	for i, tc := range []struct {
		method string
		want   pb.ErrorCode
	}{
		{"governance.CastVote", pb.ErrorCode_PERMISSION_DENIED},
		{"chain.GetBlock", pb.ErrorCode_INVALID},
	} {
		c.Send(&pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: uint64(i + 1), Method: tc.method, Params: garbage}}})
		r, err := c.Await(uint64(i + 1))
		if err != nil || r.Code != tc.want {
			t.Fatalf("%s: %v %v, want %v", tc.method, r, err, tc.want)
		}
	}
}

func TestCastVoteVotesAsTheSocketsModule(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.module("governance-voter", "governance_vote")
	mustCall(t, c, 1, "governance.CastVote", &pb.VoteParams{ProposalId: hubtest.ProposalID, Choice: "maybe"}, pb.ErrorCode_INVALID)
	r := mustCall(t, c, 2, "governance.CastVote", &pb.VoteParams{ProposalId: hubtest.ProposalID, Choice: "yes"}, pb.ErrorCode_OK)
	var res pb.Results
	proto.Unmarshal(r.Result, &res)
	if res.Tally["yes"] != 1 || e.b.Vote("governance-voter") != "yes" {
		t.Fatalf("results %v, vote %q", &res, e.b.Vote("governance-voter"))
	}
}

func TestPublishNeverForges(t *testing.T) {
	e := newEnv(t, hub.Config{})
	pubr := e.module("lightning", "publish_events")
	node := e.module("node", "publish_events") // a module that happens to be called "node"
	sub := e.module("watcher", "subscribe_events")
	mustCall(t, sub, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected", "module.ModuleLoaded", "lightning.Invoice"}}, pb.ErrorCode_OK)

	tests := []struct {
		c    *hubtest.Client
		typ  string
		want pb.ErrorCode
	}{
		{pubr, "node.BlockConnected", pb.ErrorCode_PERMISSION_DENIED},
		{pubr, "module.ModuleLoaded", pb.ErrorCode_PERMISSION_DENIED},
		{pubr, "governance.ProposalCreated", pb.ErrorCode_PERMISSION_DENIED},
		{pubr, "stratum-v2.NewJob", pb.ErrorCode_PERMISSION_DENIED},
		{pubr, "lightning", pb.ErrorCode_INVALID},
		{pubr, "lightning.a.b", pb.ErrorCode_INVALID},
		{node, "node.BlockConnected", pb.ErrorCode_PERMISSION_DENIED},
		{pubr, "lightning.Invoice", pb.ErrorCode_OK},
	}
	for i, tt := range tests {
		mustCall(t, tt.c, uint64(10+i), "events.Publish", &pb.PublishParams{Type: tt.typ, Payload: []byte("x")}, tt.want)
	}
	ev := nextEvent(t, sub, 2*time.Second)
	if ev.Type != "lightning.Invoice" || ev.SourceModule != "lightning" || string(ev.Payload) != "x" {
		t.Fatalf("event %v", ev)
	}
	noEvent(t, sub, 99)
	if s := e.h.Stats("lightning"); s.Denied != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSubscribeChecked(t *testing.T) {
	e := newEnv(t, hub.Config{})
	noSub := e.module("nosub", "read_blockchain")
	mustCall(t, noSub, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected"}}, pb.ErrorCode_PERMISSION_DENIED)

	c := e.module("sub", "subscribe_events")
	// All or nothing: the mempool type is not granted, so nothing is subscribed.
	r := mustCall(t, c, 2, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected", "node.MempoolTransactionAdded"}}, pb.ErrorCode_PERMISSION_DENIED)
	if !strings.Contains(r.Message, "node.MempoolTransactionAdded") {
		t.Fatalf("message does not name the type: %q", r.Message)
	}
	mustCall(t, c, 3, "events.Subscribe", &pb.EventTypes{Types: []string{"bad type"}}, pb.ErrorCode_INVALID)
	e.b.Emit(hub.NodeEvent{Kind: hub.BlockConnected, Height: 11})
	noEvent(t, c, 4)

	mustCall(t, c, 5, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected", "node.ChainTipUpdated", "node.BlockDisconnected"}}, pb.ErrorCode_OK)
	tip, height := e.b.Tip()
	hdr := wire.BlockHeader{Version: 4}
	e.b.Emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: tip, Height: height, Header: &hdr})
	e.b.Emit(hub.NodeEvent{Kind: hub.BlockDisconnected, Hash: tip, Height: height, Header: &hdr})
	e.b.Emit(hub.NodeEvent{Kind: hub.MempoolTransactionAdded})
	var got []string
	for i := 0; i < 3; i++ {
		ev := nextEvent(t, c, 2*time.Second)
		var be pb.BlockEvent
		if err := proto.Unmarshal(ev.Payload, &be); err != nil || be.Hash != tip.String() || be.Height != height || len(be.Header.GetRaw()) != 80 {
			t.Fatalf("%s payload %v: %v", ev.Type, &be, err)
		}
		if ev.Sequence != uint64(i+1) || ev.SourceModule != "" {
			t.Fatalf("event %v", ev)
		}
		got = append(got, ev.Type)
	}
	if !slices.Equal(got, []string{"node.BlockConnected", "node.ChainTipUpdated", "node.BlockDisconnected"}) {
		t.Fatalf("events %v", got)
	}
	noEvent(t, c, 6)
	mustCall(t, c, 7, "events.Unsubscribe", &pb.EventTypes{Types: []string{"node.BlockConnected", "node.ChainTipUpdated", "node.BlockDisconnected"}}, pb.ErrorCode_OK)
	e.b.Emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: tip, Height: height})
	noEvent(t, c, 8)
}

// TestModuleEventsNeedSubscribeCapability documents the rule for events
// modules publish: a module may subscribe to another module's namespace when
// it holds events.Subscribe; never to a reserved namespace it was not granted.
func TestModuleEventsNeedSubscribeCapability(t *testing.T) {
	e := newEnv(t, hub.Config{})
	gov := e.module("gov", "subscribe_events")
	mustCall(t, gov, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"stratum-v2.NewJob"}}, pb.ErrorCode_OK)
	mustCall(t, gov, 2, "events.Subscribe", &pb.EventTypes{Types: []string{"governance.ProposalCreated"}}, pb.ErrorCode_PERMISSION_DENIED)
	mustCall(t, gov, 3, "events.Subscribe", &pb.EventTypes{Types: []string{"hub.Anything"}}, pb.ErrorCode_PERMISSION_DENIED)
	reader := e.module("govreader", "governance_read")
	mustCall(t, reader, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"stratum-v2.NewJob"}}, pb.ErrorCode_PERMISSION_DENIED)
}

func TestLifecycleEventsReachEverySubscriber(t *testing.T) {
	e := newEnv(t, hub.Config{})
	var subs []*hubtest.Client
	for i := 0; i < 5; i++ {
		c := e.module(fmt.Sprintf("m%d", i), "subscribe_events")
		mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"module.ModuleLoaded", "module.ModuleUnloaded"}}, pb.ErrorCode_OK)
		subs = append(subs, c)
	}
	quiet := e.module("quiet", "subscribe_events") // may, but did not subscribe
	e.h.ModuleLoaded("id-x", "x", "2.1.0")
	e.h.ModuleUnloaded("id-x", "x")
	for _, c := range subs {
		ev := nextEvent(t, c, 2*time.Second)
		var ml pb.ModuleLoaded
		proto.Unmarshal(ev.Payload, &ml)
		if ev.Type != "module.ModuleLoaded" || ml.ModuleId != "id-x" || ml.ModuleName != "x" || ml.Version != "2.1.0" {
			t.Fatalf("loaded: %v %v", ev, &ml)
		}
		ev = nextEvent(t, c, 2*time.Second)
		var mu pb.ModuleUnloaded
		proto.Unmarshal(ev.Payload, &mu)
		if ev.Type != "module.ModuleUnloaded" || mu.ModuleId != "id-x" || mu.ModuleName != "x" {
			t.Fatalf("unloaded: %v %v", ev, &mu)
		}
	}
	noEvent(t, quiet, 2)
}

func TestGovernanceAndMempoolEvents(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.module("g", "governance_read", "read_mempool", "subscribe_events")
	mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"governance.ProposalCreated", "governance.ProposalClosed", "node.MempoolTransactionAdded", "node.MempoolTransactionRemoved"}}, pb.ErrorCode_OK)
	tip, _ := e.b.Tip()
	p := hub.Proposal{ID: "p9", Title: "t", Choices: []string{"a"}, Open: true}
	e.b.Emit(hub.NodeEvent{Kind: hub.ProposalCreated, Proposal: &p})
	e.b.Emit(hub.NodeEvent{Kind: hub.ProposalClosed, Proposal: &p})
	e.b.Emit(hub.NodeEvent{Kind: hub.MempoolTransactionAdded, Txid: tip})
	e.b.Emit(hub.NodeEvent{Kind: hub.MempoolTransactionRemoved, Txid: tip})
	for _, want := range []string{"governance.ProposalCreated", "governance.ProposalClosed"} {
		ev := nextEvent(t, c, 2*time.Second)
		var pe pb.ProposalEvent
		proto.Unmarshal(ev.Payload, &pe)
		if ev.Type != want || pe.Proposal.GetId() != "p9" {
			t.Fatalf("%v %v", ev, &pe)
		}
	}
	for _, want := range []string{"node.MempoolTransactionAdded", "node.MempoolTransactionRemoved"} {
		ev := nextEvent(t, c, 2*time.Second)
		var te pb.TransactionEvent
		proto.Unmarshal(ev.Payload, &te)
		if ev.Type != want || te.Txid != tip.String() {
			t.Fatalf("%v %v", ev, &te)
		}
	}
	r := mustCall(t, c, 2, "mempool.GetMempoolInfo", nil, pb.ErrorCode_OK)
	var mi pb.MempoolInfo
	proto.Unmarshal(r.Result, &mi)
	if mi.Size != 0 {
		t.Fatalf("mempool %v", &mi)
	}
}

func TestRateLimited(t *testing.T) {
	e := newEnv(t, hub.Config{RequestsPerSecond: 20})
	c := e.module("flood", "read_blockchain")
	other := e.module("calm", "read_blockchain")
	const n = 200
	go func() {
		for i := 1; i <= n; i++ {
			c.Request(uint64(i), "hub.Ping", nil)
		}
	}()
	codes := map[pb.ErrorCode]int{}
	for i := 0; i < n; i++ {
		env, err := c.Read()
		if err != nil {
			t.Fatal(err)
		}
		codes[env.GetResponse().GetCode()]++
	}
	if codes[pb.ErrorCode_RATE_LIMITED] < n/2 || codes[pb.ErrorCode_OK] < 10 || codes[pb.ErrorCode_OK]+codes[pb.ErrorCode_RATE_LIMITED] != n {
		t.Fatalf("codes %v", codes)
	}
	if s := e.h.Stats("flood"); s.RateLimited != uint64(codes[pb.ErrorCode_RATE_LIMITED]) || s.Requests != n {
		t.Fatalf("stats %+v", s)
	}
	ping(t, other, 1) // another module's budget is its own
	time.Sleep(100 * time.Millisecond)
	ping(t, c, n+1) // the connection survived
}

func TestMaxInFlight(t *testing.T) {
	e := newEnv(t, hub.Config{MaxInFlight: 2})
	release := make(chan struct{})
	e.b.Hook = func(ctx context.Context, method string, arg any) error {
		if method == "ChainTip" {
			<-release
		}
		return nil
	}
	c := e.module("m", "read_blockchain")
	c.Request(1, "chain.GetChainTip", nil)
	c.Request(2, "chain.GetChainTip", nil)
	eventually(t, "two requests in flight", func() bool { return e.h.Stats("m").Requests == 2 })
	time.Sleep(20 * time.Millisecond)
	r := mustCall(t, c, 3, "chain.GetChainTip", nil, pb.ErrorCode_RATE_LIMITED)
	if !strings.Contains(r.Message, "in flight") {
		t.Fatalf("message %q", r.Message)
	}
	close(release)
	for _, id := range []uint64{1, 2} {
		if r, err := c.Await(id); err != nil || r.Code != pb.ErrorCode_OK {
			t.Fatalf("%d: %v %v", id, r, err)
		}
	}
}

// TestOutOfOrder: a slow call does not hold back a fast one on the same
// connection.
func TestOutOfOrder(t *testing.T) {
	e := newEnv(t, hub.Config{})
	e.b.Hook = func(ctx context.Context, method string, arg any) error {
		if method == "BlockHash" && arg.(uint64) == 1 {
			time.Sleep(300 * time.Millisecond)
		}
		return nil
	}
	c := e.module("m", "read_blockchain")
	c.Request(1, "chain.GetBlockByHeight", &pb.HeightParams{Height: 1})
	c.Request(2, "chain.GetBlockByHeight", &pb.HeightParams{Height: 2})
	var order []uint64
	for i := 0; i < 2; i++ {
		env, err := c.Read()
		if err != nil {
			t.Fatal(err)
		}
		r := env.GetResponse()
		if r.Code != pb.ErrorCode_OK {
			t.Fatal(r)
		}
		var b pb.Block
		proto.Unmarshal(r.Result, &b)
		if b.Header.Height != r.Id {
			t.Fatalf("response %d carries block %d", r.Id, b.Header.Height)
		}
		order = append(order, r.Id)
	}
	if !slices.Equal(order, []uint64{2, 1}) {
		t.Fatalf("order %v", order)
	}
}

// TestSlowReaderBlocksNoOne: a module that subscribes, floods requests and
// never reads fills its socket and queues; the node's events keep flowing
// and another module keeps getting fast answers.
func TestSlowReaderBlocksNoOne(t *testing.T) {
	e := newEnv(t, hub.Config{EventQueue: 16, RequestsPerSecond: 1e9})
	slow := e.module("slow", "read_blockchain", "subscribe_events")
	mustCall(t, slow, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected"}}, pb.ErrorCode_OK)
	fast := e.module("fast", "read_blockchain")
	base := runtime.NumGoroutine()

	// The slow module writes requests forever and never reads again.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(100); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			slow.Conn.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			slow.Request(i, "chain.GetBlockByHeight", &pb.HeightParams{Height: i % 10})
		}
	}()
	defer func() { close(stop); slow.Close(); wg.Wait() }()

	tip, height := e.b.Tip()
	hdr := wire.BlockHeader{Version: 4}
	start := time.Now()
	for i := 0; i < 20000 && e.h.Stats("slow").EventsDropped == 0; i++ {
		e.b.Emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: tip, Height: height, Header: &hdr})
	}
	if e.h.Stats("slow").EventsDropped == 0 {
		t.Fatal("the slow module's queue never filled")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("publishing to a stuck module took %v", d)
	}
	for i := uint64(1); i <= 50; i++ {
		t0 := time.Now()
		mustCall(t, fast, i, "chain.GetBlockByHeight", &pb.HeightParams{Height: 2}, pb.ErrorCode_OK)
		if d := time.Since(t0); d > 500*time.Millisecond {
			t.Fatalf("fast module waited %v", d)
		}
	}
	// Its unread answers hold a bounded number of goroutines (about twice
	// the in-flight limit), however long it keeps sending.
	time.Sleep(200 * time.Millisecond)
	if n := runtime.NumGoroutine() - base; n > 2*64+32 {
		t.Fatalf("%d goroutines for one stuck module", n)
	}
}

// TestEventDropsReported: drops are counted, and the module learns the exact
// number through Event.dropped.
func TestEventDropsReported(t *testing.T) {
	e := newEnv(t, hub.Config{EventQueue: 8})
	c := e.module("m", "subscribe_events")
	mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"module.ModuleLoaded"}}, pb.ErrorCode_OK)

	published := 0
	for e.h.Stats("m").EventsDropped < 100 {
		e.h.ModuleLoaded("id", strings.Repeat("x", 200), "1")
		published++
		if published > 200000 {
			t.Fatal("no drops")
		}
	}
	type got struct {
		ev  *pb.Event
		err error
	}
	evs := make(chan got, 1024)
	go func() {
		for {
			env, err := c.ReadTimeout(10 * time.Second)
			if err != nil {
				evs <- got{err: err}
				return
			}
			evs <- got{ev: env.GetEvent()}
		}
	}()
	var delivered, reported, seq uint64
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for delivered+reported != uint64(published) {
		select {
		case g := <-evs:
			if g.err != nil {
				t.Fatal(g.err)
			}
			delivered++
			reported += g.ev.Dropped
			if g.ev.Sequence != seq+1 {
				t.Fatalf("sequence %d after %d", g.ev.Sequence, seq)
			}
			seq = g.ev.Sequence
		case <-tick.C:
			// Drops after the last delivery are reported on the next one.
			if len(evs) == 0 {
				e.h.ModuleLoaded("id", "x", "1")
				published++
			}
		case <-deadline:
			t.Fatalf("delivered %d + reported %d != published %d", delivered, reported, published)
		}
	}
	s := e.h.Stats("m")
	if reported == 0 || s.EventsDropped != reported {
		t.Fatalf("reported %d, stats %+v", reported, s)
	}
	eventually(t, "delivered counted", func() bool { return e.h.Stats("m").EventsDelivered == delivered })
}

func TestLogBudget(t *testing.T) {
	e := newEnv(t, hub.Config{LogBytesPerSecond: 1000})
	c := e.module("chatty", "read_blockchain")
	for i := 0; i < 10; i++ {
		c.Send(&pb.Envelope{Body: &pb.Envelope_Log{Log: &pb.Log{Level: pb.LogLevel_WARN,
			Message: fmt.Sprintf("line %d %s", i, strings.Repeat(".", 40)), Fields: map[string]string{"module": "node"}}}})
	}
	ping(t, c, 1) // logs before the ping are processed
	s := e.h.Stats("chatty")
	logs := e.logs.String()
	written := uint64(strings.Count(logs, "msg=\"line "))
	if s.LogBytes == 0 || s.LogBytes > 1000 || s.LogDropped < 3 || written < 2 || s.LogDropped+written != 10 {
		t.Fatalf("stats %+v, %d lines written", s, written)
	}
	if !strings.Contains(logs, "log budget exhausted") {
		t.Fatalf("no summary line: %s", logs)
	}
	if !strings.Contains(logs, "module=chatty") || !strings.Contains(logs, "line 0") || strings.Contains(logs, "line 9") {
		t.Fatalf("logs: %s", logs)
	}
	if !strings.Contains(logs, "fields.module=node") {
		t.Fatalf("module field not kept apart from the hub's: %s", logs)
	}
}

func TestRunCli(t *testing.T) {
	e := newEnv(t, hub.Config{CallTimeout: 300 * time.Millisecond})
	noCli := e.module("nocli", "read_blockchain")
	if err := noCli.Send(&pb.Envelope{Body: &pb.Envelope_RegisterCliSpec{RegisterCliSpec: &pb.RegisterCliSpec{Id: 3,
		Commands: []*pb.CliCommand{{Name: "x"}}}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := noCli.Await(3); err != nil || r.Code != pb.ErrorCode_PERMISSION_DENIED {
		t.Fatalf("%v %v", r, err)
	}

	c := e.module("block-logger", "register_cli")
	c.Send(&pb.Envelope{Body: &pb.Envelope_RegisterCliSpec{RegisterCliSpec: &pb.RegisterCliSpec{Id: 7, About: "blocks",
		Commands: []*pb.CliCommand{{Name: "recent", About: "list recent blocks"}, {Name: "hang"}}}}})
	if r, err := c.Await(7); err != nil || r.Code != pb.ErrorCode_OK {
		t.Fatalf("%v %v", r, err)
	}
	specs := e.h.CliSpecs()
	if len(specs) != 1 || specs["block-logger"].GetName() != "block-logger" || len(specs["block-logger"].Commands) != 2 {
		t.Fatalf("specs %v", specs)
	}

	// The module answers "recent" and ignores "hang".
	go func() {
		for {
			env, err := c.ReadTimeout(5 * time.Second)
			if err != nil {
				return
			}
			inv := env.GetInvocation()
			if inv == nil || inv.GetCli().GetCommand() != "recent" {
				continue
			}
			c.Send(&pb.Envelope{Body: &pb.Envelope_InvocationResult{InvocationResult: &pb.InvocationResult{Id: inv.Id,
				Kind: &pb.InvocationResult_Cli{Cli: &pb.CliResult{Stdout: []byte(strings.Join(inv.GetCli().Args, ",")), ExitCode: 3}}}}})
		}
	}()
	res, err := e.h.RunCli(context.Background(), "block-logger", "recent", []string{"-n", "5"})
	if err != nil || string(res.Stdout) != "-n,5" || res.ExitCode != 3 {
		t.Fatalf("%v %v", res, err)
	}
	start := time.Now()
	_, err = e.h.RunCli(context.Background(), "block-logger", "hang", nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("hang: %v after %v", err, time.Since(start))
	}
	if _, err := e.h.RunCli(context.Background(), "block-logger", "nope", nil); !errors.Is(err, hub.ErrUnknownCommand) {
		t.Fatalf("nope: %v", err)
	}
	if _, err := e.h.RunCli(context.Background(), "ghost", "recent", nil); !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("ghost: %v", err)
	}
	e.h.Detach("block-logger")
	if len(e.h.CliSpecs()) != 0 {
		t.Fatal("Detach kept the CLI spec")
	}
	if _, err := e.h.RunCli(context.Background(), "block-logger", "recent", nil); !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("after detach: %v", err)
	}
}

// TestModuleCall: a call to another module's API goes through the hub as an
// Invocation; the provider sees the caller's real identity.
func TestModuleCall(t *testing.T) {
	e := newEnv(t, hub.Config{CallTimeout: 300 * time.Millisecond})
	prov := e.module("stratum-v2", "register_module_api")
	caller := e.module("merge-mining", "read_stratum")
	intruder := e.module("intruder", "read_blockchain")

	mustCall(t, caller, 1, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "GetJob"}, pb.ErrorCode_UNAVAILABLE) // no API yet
	mustCall(t, prov, 1, "modules.RegisterApi", &pb.ApiSpec{Methods: []string{"GetJob", "Fail", "Hang", "WrongKind"}}, pb.ErrorCode_OK)

	seen := make(chan *pb.ApiInvocation, 10)
	go func() {
		for {
			env, err := prov.ReadTimeout(5 * time.Second)
			if err != nil {
				return
			}
			inv := env.GetInvocation()
			if inv == nil {
				continue
			}
			api := inv.GetApi()
			seen <- api
			res := &pb.ApiResult{Result: append([]byte("job:"), api.Params...)}
			switch api.Method {
			case "Hang":
				continue
			case "Fail":
				res = &pb.ApiResult{Code: pb.ErrorCode_NOT_FOUND, Message: "no such job"}
			case "WrongKind":
				prov.Send(&pb.Envelope{Body: &pb.Envelope_InvocationResult{InvocationResult: &pb.InvocationResult{Id: inv.Id,
					Kind: &pb.InvocationResult_Cli{Cli: &pb.CliResult{}}}}})
				continue
			}
			prov.Send(&pb.Envelope{Body: &pb.Envelope_InvocationResult{InvocationResult: &pb.InvocationResult{Id: inv.Id,
				Kind: &pb.InvocationResult_Api{Api: res}}}})
		}
	}()

	r := mustCall(t, caller, 2, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "GetJob", Params: []byte("7")}, pb.ErrorCode_OK)
	if string(r.Result) != "job:7" {
		t.Fatalf("result %q", r.Result)
	}
	api := <-seen
	if api.CallerModuleId != "id-merge-mining" || api.CallerModuleName != "merge-mining" || api.Method != "GetJob" {
		t.Fatalf("invocation %v", api)
	}
	r = mustCall(t, caller, 3, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "Fail"}, pb.ErrorCode_NOT_FOUND)
	if r.Message != "no such job" {
		t.Fatalf("message %q", r.Message)
	}
	mustCall(t, caller, 4, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "Hang"}, pb.ErrorCode_TIMEOUT)
	mustCall(t, caller, 5, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "Unregistered"}, pb.ErrorCode_NOT_FOUND)
	mustCall(t, caller, 7, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "WrongKind"}, pb.ErrorCode_UNAVAILABLE)
	// A result nobody waits for is counted and ignored.
	before := e.h.Stats("stratum-v2").Invalid
	prov.Send(&pb.Envelope{Body: &pb.Envelope_InvocationResult{InvocationResult: &pb.InvocationResult{Id: 999,
		Kind: &pb.InvocationResult_Api{Api: &pb.ApiResult{}}}}})
	eventually(t, "stray result counted", func() bool { return e.h.Stats("stratum-v2").Invalid == before+1 })
	mustCall(t, caller, 6, "modules.Call:lightning-network", &pb.ModuleCallParams{Method: "GetJob"}, pb.ErrorCode_PERMISSION_DENIED)
	mustCall(t, intruder, 1, "modules.Call:stratum-v2", &pb.ModuleCallParams{Method: "GetJob"}, pb.ErrorCode_PERMISSION_DENIED)
	// A module without register_module_api can neither offer an API nor answer invocations.
	mustCall(t, intruder, 2, "modules.RegisterApi", &pb.ApiSpec{Methods: []string{"x"}}, pb.ErrorCode_PERMISSION_DENIED)
}

// TestReattachReplaces: re-attaching a name closes the old connections and
// waits for a fresh handshake; Detach stops serving.
func TestReattachReplaces(t *testing.T) {
	e := newEnv(t, hub.Config{})
	old := e.module("m", "read_blockchain")
	<-e.h.Ready("m")
	path := e.attach("m", "read_blockchain")
	expectClosed(t, old)
	ready := e.h.Ready("m")
	select {
	case <-ready:
		t.Fatal("Ready closed before the new handshake")
	default:
	}
	c, err := hubtest.Connect(path, "m", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-ready
	ping(t, c, 1)
	if s := e.h.Stats("m"); s.Connections != 2 {
		t.Fatalf("counters did not survive re-attach: %+v", s)
	}
	e.h.Detach("m")
	expectClosed(t, c)
	if _, err := hubtest.Dial(path); err == nil {
		t.Fatal("listener still open after Detach")
	}
}

func TestMaxConnections(t *testing.T) {
	e := newEnv(t, hub.Config{MaxConnections: 2})
	path := e.attach("m", "read_blockchain")
	var cs []*hubtest.Client
	for i := 0; i < 2; i++ {
		c, err := hubtest.Connect(path, "m", "1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	third := e.dial("m")
	expectClosed(t, third)
	ping(t, cs[0], 1)
}

func TestClose(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.module("m", "read_blockchain")
	e.h.Close()
	expectClosed(t, c)
	if err := e.h.Attach(hub.ModuleSpec{Name: "n"}, nil); err == nil {
		t.Fatal("attach after close")
	}
}

// TestEventsAndResponsesInterleave: events written by publishers directly,
// the writer's batches and direct responses share one socket; under a slow
// reader every frame must still arrive whole, in sequence, and every
// response must arrive.
func TestEventsAndResponsesInterleave(t *testing.T) {
	e := newEnv(t, hub.Config{EventQueue: 64, RequestsPerSecond: 1e9, MaxInFlight: 256})
	c := e.module("m", "read_blockchain", "subscribe_events")
	mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"module.ModuleLoaded"}}, pb.ErrorCode_OK)
	const requests = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		name := strings.Repeat("n", 2000)
		for {
			select {
			case <-stop:
				return
			default:
				e.h.ModuleLoaded("id", name, "1")
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < requests; i++ {
			c.Request(uint64(100+i), "chain.GetBlockByHeight", &pb.HeightParams{Height: uint64(i % 10)})
			time.Sleep(100 * time.Microsecond) // answers land among the events
		}
	}()
	var seq uint64
	responses := 0
	for frames := 0; responses < requests; frames++ {
		if frames%50 == 0 {
			time.Sleep(time.Millisecond) // a slow reader
		}
		env, err := c.Read()
		if err != nil {
			t.Fatalf("after %d frames, %d responses: %v", frames, responses, err)
		}
		switch {
		case env.GetEvent() != nil:
			ev := env.GetEvent()
			if ev.Sequence != seq+1 || ev.Type != "module.ModuleLoaded" {
				t.Fatalf("event %d after %d", ev.Sequence, seq)
			}
			var ml pb.ModuleLoaded
			if err := proto.Unmarshal(ev.Payload, &ml); err != nil || len(ml.ModuleName) != 2000 {
				t.Fatalf("payload: %v", err)
			}
			seq = ev.Sequence
		case env.GetResponse() != nil:
			if r := env.GetResponse(); r.Code != pb.ErrorCode_OK {
				t.Fatalf("response %v", r)
			}
			responses++
		}
	}
	close(stop)
	wg.Wait()
	if s := e.h.Stats("m"); s.EventsDropped == 0 || seq == 0 {
		t.Fatalf("the queue never filled: %+v, %d events", s, seq)
	}
}
