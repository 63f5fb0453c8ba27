package hub_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/rpcclient"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// TestBtcdThroughHub: a module on the hub over a real btcd gets the blocks
// btcd mines as events and reads them back; with btcd stopped its calls are
// answered UNAVAILABLE at once. It also logs chain.GetBlockByHeight through
// the hub against a direct rpcclient getblockhash+getblock.
func TestBtcdThroughHub(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n, d := settledBtcd(t)
	ctl := n.Client()
	// No rate limit in the way of the benchmark below.
	e := newEnvWith(t, hub.Config{RequestsPerSecond: 1e6}, d)
	c := e.module("block-logger", "read_blockchain", "subscribe_events")
	mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected"}}, pb.ErrorCode_OK)
	hs, err := ctl.Generate(3)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		ev := nextEvent(t, c, 10*time.Second)
		var be pb.BlockEvent
		proto.Unmarshal(ev.Payload, &be)
		if be.Hash != h.String() || be.Height != uint64(i+1) {
			t.Fatalf("event %d: %s@%d, want %s@%d", i, be.Hash, be.Height, h, i+1)
		}
	}
	r := mustCall(t, c, 2, "chain.GetBlockByHeight", &pb.HeightParams{Height: 2}, pb.ErrorCode_OK)
	var b pb.Block
	proto.Unmarshal(r.Result, &b)
	if b.Header.GetHash() != hs[1].String() {
		t.Fatalf("block at 2: %s, want %s", b.Header.GetHash(), hs[1])
	}

	ws, err := rpcclient.New(&rpcclient.ConnConfig{Host: n.RPCAddr, Endpoint: "ws", User: n.User, Pass: n.Pass, Certificates: n.CertPEM}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Both sides as benchmarks in the same run; the lines they print
	// (go test -v) are what scripts/bench-backend.sh feeds benchtable.
	var calls atomic.Uint64
	calls.Store(100)
	var benchErr atomic.Value
	viaHub := testing.Benchmark(func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			r, err := c.Call(calls.Add(1), "chain.GetBlockByHeight", &pb.HeightParams{Height: uint64(1 + i%3)})
			if err != nil || r.Code != pb.ErrorCode_OK {
				benchErr.Store(fmt.Sprintf("chain.GetBlockByHeight: %v %v", r.GetCode(), err))
				b.FailNow()
			}
		}
	})
	direct := testing.Benchmark(func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			h, err := ws.GetBlockHash(int64(1 + i%3))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ws.GetBlock(h); err != nil {
				b.Fatal(err)
			}
		}
	})
	ws.Shutdown()
	if viaHub.N == 0 || direct.N == 0 {
		t.Fatalf("a GetBlockByHeight benchmark failed: hub %d rounds, rpcclient %d: %v", viaHub.N, direct.N, benchErr.Load())
	}
	fmt.Printf("BenchmarkGetBlockByHeightBtcd/hub\t%s\n", viaHub)
	fmt.Printf("BenchmarkGetBlockByHeightBtcd/rpcclient\t%s\n", direct)
	t.Logf("chain.GetBlockByHeight through the hub %s, direct rpcclient %s (%.2fx)", time.Duration(viaHub.NsPerOp()), time.Duration(direct.NsPerOp()), float64(viaHub.NsPerOp())/float64(direct.NsPerOp()))

	n.Stop()
	start := time.Now()
	for {
		r, err := c.Call(3, "chain.GetChainTip", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code == pb.ErrorCode_UNAVAILABLE {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("with btcd stopped GetChainTip still answers %v", r.Code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t0 := time.Now()
	mustCall(t, c, 4, "chain.GetBlockByHeight", &pb.HeightParams{Height: 1}, pb.ErrorCode_UNAVAILABLE)
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("an UNAVAILABLE answer took %s; it must not wait for the node", el)
	}
}
