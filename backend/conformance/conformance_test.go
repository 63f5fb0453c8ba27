package conformance_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/backend/btcd"
	"github.com/blvm/blvm-sandbox/backend/btcdtest"
	"github.com/blvm/blvm-sandbox/backend/conformance"
	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

func TestConformance(t *testing.T) {
	t.Run("devchain", func(t *testing.T) {
		conformance.Run(t, func(t *testing.T, _ bool) conformance.Node { return newDevNode(t) })
	})
	t.Run("bitcoind-recorded", runBitcoindRecorded)
	t.Run("btcd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: no real btcd")
		}
		conformance.Run(t, func(t *testing.T, restart bool) conformance.Node {
			return newBtcdNode(t, btcdtest.Options{Simnet: restart})
		})
	})
}

// devNode is the embedded dev chain; a clock a second ahead per reading
// makes a competing block differ from the one it replaces.
type devNode struct {
	c    *devchain.Chain
	used map[chainhash.Hash]bool
}

func newDevNode(t *testing.T) *devNode {
	var tick atomic.Int64
	base := time.Unix(1_700_000_000, 0)
	c, err := devchain.Open(filepath.Join(t.TempDir(), "dev.db"), devchain.Options{
		Now: func() time.Time { return base.Add(time.Duration(tick.Add(1)) * time.Second) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &devNode{c: c, used: map[chainhash.Hash]bool{}}
}

func (n *devNode) Backend() hub.Backend { return n.c }
func (n *devNode) CanRestart() bool     { return false }
func (n *devNode) Stop(t *testing.T)    {}
func (n *devNode) Start(t *testing.T)   {}

// Settle: the dev chain delivers before MineBlock returns.
func (n *devNode) Settle(t *testing.T) {}

func (n *devNode) Mine(t *testing.T, count int) []chainhash.Hash {
	var out []chainhash.Hash
	for range count {
		blk, err := n.c.MineBlock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, blk.BlockHash())
	}
	return out
}

func (n *devNode) Disconnect(t *testing.T, count int) {
	for range count {
		if _, err := n.c.InvalidateTip(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// SendTx: the dev chain's wallet adds transactions after each block.
func (n *devNode) SendTx(t *testing.T) (*wire.MsgTx, wire.OutPoint) {
	ctx := context.Background()
	n.Mine(t, 1)
	ids, err := n.c.MempoolTxids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if n.used[id] {
			continue
		}
		n.used[id] = true
		e, err := n.c.MempoolEntry(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return e.Tx, e.Tx.TxIn[0].PreviousOutPoint
	}
	t.Fatal("the dev chain's mempool is empty")
	return nil, wire.OutPoint{}
}

// btcdNode is a real regtest btcd behind the btcd driver.
type btcdNode struct {
	node *btcdtest.Node
	ctl  *rpcclient.Client
	drv  *btcd.Driver

	mu       sync.Mutex
	nextCoin int64 // the next coinbase height to spend
}

func newBtcdNode(t *testing.T, opts btcdtest.Options) *btcdNode {
	node := btcdtest.Start(t, opts)
	n := &btcdNode{node: node, ctl: node.Client(), nextCoin: 1}
	// A spendable coinbase for SendTx.
	if _, err := n.ctl.Generate(101); err != nil {
		t.Fatalf("generate: %v", err)
	}
	drv, err := btcd.New(btcd.Config{
		Host: node.RPCAddr, User: node.User, Pass: node.Pass, CertPEM: node.CertPEM, Network: opts.Network(),
		Poll: time.Hour, RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, CallTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := drv.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	n.drv = drv
	return n
}

// Settle waits until the driver told its subscribers about btcd's tip.
func (n *btcdNode) Settle(t *testing.T) {
	want, _, err := n.ctl.GetBestBlock()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if h, _ := n.drv.Told(); h == *want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the driver never told its subscribers about tip %s", want)
}

func (n *btcdNode) Backend() hub.Backend { return n.drv }
func (n *btcdNode) CanRestart() bool     { return true }
func (n *btcdNode) Stop(t *testing.T)    { n.node.Stop() }
func (n *btcdNode) Start(t *testing.T)   { n.node.Restart() }

func (n *btcdNode) Mine(t *testing.T, count int) []chainhash.Hash {
	hs, err := n.ctl.Generate(uint32(count))
	if err != nil {
		t.Fatalf("generate %d: %v", count, err)
	}
	out := make([]chainhash.Hash, len(hs))
	for i, h := range hs {
		out[i] = *h
	}
	return out
}

// Disconnect invalidates the block count below the tip, then puts a new
// transaction in the mempool so that the competing blocks differ from the
// invalidated ones (btcd's generate would otherwise re-mine the same header).
func (n *btcdNode) Disconnect(t *testing.T, count int) {
	hash, height, err := n.ctl.GetBestBlock()
	if err != nil {
		t.Fatal(err)
	}
	target, err := n.ctl.GetBlockHash(int64(height) - int64(count) + 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ctl.InvalidateBlock(target); err != nil {
		t.Fatalf("invalidateblock %s (tip %s): %v", target, hash, err)
	}
	n.SendTx(t)
}

// SendTx spends the next mature coinbase of the mining key to itself.
func (n *btcdNode) SendTx(t *testing.T) (*wire.MsgTx, wire.OutPoint) {
	n.mu.Lock()
	h := n.nextCoin
	n.nextCoin++
	n.mu.Unlock()
	bh, err := n.ctl.GetBlockHash(h)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := n.ctl.GetBlock(bh)
	if err != nil {
		t.Fatal(err)
	}
	cb := blk.Transactions[0]
	op := wire.OutPoint{Hash: cb.TxHash(), Index: 0}
	script := cb.TxOut[0].PkScript
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&op, nil, nil))
	tx.AddTxOut(wire.NewTxOut(cb.TxOut[0].Value-10_000, script))
	sig, err := txscript.SignatureScript(tx, 0, script, txscript.SigHashAll, n.node.MiningKey, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].SignatureScript = sig
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	arg, _ := jsonString(hex.EncodeToString(buf.Bytes()))
	if _, err := n.ctl.RawRequest("sendrawtransaction", []jsonRaw{arg}); err != nil {
		t.Fatalf("sendrawtransaction: %v", err)
	}
	return tx, op
}
