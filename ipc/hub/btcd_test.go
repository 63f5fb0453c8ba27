package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/rpcclient"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/backend/btcd"
	"github.com/blvm/blvm-sandbox/backend/btcdtest"
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
	n := btcdtest.Start(t, btcdtest.Options{})
	ctl := n.Client()
	d, err := btcd.New(btcd.Config{Host: n.RPCAddr, User: n.User, Pass: n.Pass, CertPEM: n.CertPEM, CallTimeout: 5 * time.Second, RetryMin: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if h, _ := d.Told(); h != ([32]byte{}) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	e := newEnvWith(t, hub.Config{}, d)
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
	const rounds = 200
	start := time.Now()
	for i := range rounds {
		mustCall(t, c, uint64(100+i), "chain.GetBlockByHeight", &pb.HeightParams{Height: uint64(1 + i%3)}, pb.ErrorCode_OK)
	}
	viaHub := time.Since(start) / rounds
	start = time.Now()
	for i := range rounds {
		h, err := ws.GetBlockHash(int64(1 + i%3))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ws.GetBlock(h); err != nil {
			t.Fatal(err)
		}
	}
	direct := time.Since(start) / rounds
	ws.Shutdown()
	t.Logf("chain.GetBlockByHeight through the hub %s, direct rpcclient %s (%.2fx)", viaHub, direct, float64(viaHub)/float64(direct))

	n.Stop()
	start = time.Now()
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
