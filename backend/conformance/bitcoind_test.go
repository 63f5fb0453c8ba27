package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/backend/bitcoind"
	"github.com/blvm/blvm-sandbox/backend/bitcoind/coretest"
	"github.com/blvm/blvm-sandbox/backend/conformance"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// runBitcoindRecorded runs the suite against the Core driver talking to
// coretest: recorded reply shapes over real HTTP and a real ZMQ PUB socket,
// a scripted chain rather than a live bitcoind.
func runBitcoindRecorded(t *testing.T) {
	conformance.Run(t, func(t *testing.T, _ bool) conformance.Node { return newCoreNode(t) })
}

type coreNode struct {
	node     *coretest.Node
	drv      *bitcoind.Driver
	nextCoin int
}

func newCoreNode(t *testing.T) *coreNode {
	node := coretest.Start(t, coretest.Options{ZMQ: true}, 101)
	// A slow poll: events must come from ZMQ wake-ups and reconnects.
	drv, err := bitcoind.New(bitcoind.Config{
		URL: node.URL, User: coretest.User, Pass: coretest.Pass, Network: "regtest",
		ZMQHashBlock: node.ZMQ, ZMQSequence: node.ZMQ,
		Poll: 2 * time.Second, FallbackPoll: 200 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, CallTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := drv.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return &coreNode{node: node, drv: drv, nextCoin: 1}
}

func (n *coreNode) Backend() hub.Backend { return n.drv }
func (n *coreNode) CanRestart() bool     { return true }
func (n *coreNode) Stop(t *testing.T)    { n.node.Stop() }
func (n *coreNode) Start(t *testing.T)   { n.node.Restart() }

func (n *coreNode) Mine(t *testing.T, count int) []chainhash.Hash { return n.node.Mine(count) }
func (n *coreNode) Disconnect(t *testing.T, count int)            { n.node.Disconnect(count) }

func (n *coreNode) SendTx(t *testing.T) (*wire.MsgTx, wire.OutPoint) {
	h := n.nextCoin
	n.nextCoin++
	return n.node.SendTx(h)
}

func (n *coreNode) Settle(t *testing.T) {
	want, _ := n.node.Tip()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if h, _ := n.drv.Told(); h == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the driver never told its subscribers about tip %s", want)
}
