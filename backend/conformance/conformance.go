// Package conformance is the one suite every hub.Backend driver must pass,
// in the style of lnd's chainntnfs tests: reads, reorgs checked event by
// event, a burst of blocks, and a node restart while modules are subscribed.
// A driver's test calls Run with a Node that drives its chain.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Node is a chain under test and the means to change it.
type Node interface {
	Backend() hub.Backend
	// Mine mines n blocks on the best chain and returns their hashes in order.
	Mine(t *testing.T, n int) []chainhash.Hash
	// Disconnect makes the best chain drop its top n blocks, so that the
	// next Mine builds a competing branch whose blocks differ from them.
	Disconnect(t *testing.T, n int)
	// SendTx puts a transaction in the mempool and returns it and one
	// outpoint it spends.
	SendTx(t *testing.T) (*wire.MsgTx, wire.OutPoint)
	// Stop and Start stop the node and start it again on the same data;
	// Stop is nil for a node that cannot stop (the embedded dev chain).
	Stop(t *testing.T)
	Start(t *testing.T)
	CanRestart() bool
	// Settle waits until the backend has published the events of every
	// change made so far, so that a new subscriber starts from a quiet tip.
	Settle(t *testing.T)
}

// Timeout bounds every wait for events.
var Timeout = 30 * time.Second

// Run runs every case against the node newNode makes; each case gets its
// own. restart says the case will stop and start the node.
func Run(t *testing.T, newNode func(t *testing.T, restart bool) Node) {
	t.Run("Reads", func(t *testing.T) { testReads(t, newNode(t, false)) })
	t.Run("Reorg1", func(t *testing.T) { testReorg(t, newNode(t, false), 1) })
	t.Run("Reorg3", func(t *testing.T) { testReorg(t, newNode(t, false), 3) })
	t.Run("Burst100", func(t *testing.T) { testBurst(t, newNode(t, false), 100) })
	t.Run("Restart", func(t *testing.T) {
		n := newNode(t, true)
		if !n.CanRestart() {
			t.Skip("this backend has no node to restart")
		}
		testRestart(t, n)
	})
}

// recorder is a module's view: every event, checked as it arrives against
// the chain it was told so far.
type recorder struct {
	mu     sync.Mutex
	events []hub.NodeEvent
	chain  []chainhash.Hash // told best chain, from the tip at subscribe
	bad    []string
	notify chan struct{}
}

func subscribe(t *testing.T, b hub.Backend) *recorder {
	t.Helper()
	tip, _, err := b.ChainTip(context.Background())
	if err != nil {
		t.Fatalf("ChainTip: %v", err)
	}
	r := &recorder{chain: []chainhash.Hash{tip}, notify: make(chan struct{}, 1)}
	t.Cleanup(b.Subscribe(r.add))
	return r
}

func (r *recorder) add(ev hub.NodeEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	top := r.chain[len(r.chain)-1]
	switch ev.Kind {
	case hub.BlockConnected:
		if ev.Header == nil || ev.Header.PrevBlock != top {
			r.bad = append(r.bad, fmt.Sprintf("connect %s@%d: parent is not the told tip %s", ev.Hash, ev.Height, top))
		}
		if ev.Header != nil && ev.Header.BlockHash() != ev.Hash {
			r.bad = append(r.bad, fmt.Sprintf("connect %s: header hashes to %s", ev.Hash, ev.Header.BlockHash()))
		}
		r.chain = append(r.chain, ev.Hash)
	case hub.BlockDisconnected:
		if ev.Hash != top {
			r.bad = append(r.bad, fmt.Sprintf("disconnect %s@%d: not the told tip %s", ev.Hash, ev.Height, top))
		}
		if len(r.chain) > 1 {
			r.chain = r.chain[:len(r.chain)-1]
		} else {
			// Below the subscribe tip: the parent is the next told tip.
			if ev.Header != nil {
				r.chain[0] = ev.Header.PrevBlock
			}
		}
	}
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

type blockEv struct {
	kind hub.NodeEventKind
	hash chainhash.Hash
}

func (r *recorder) blocks() []blockEv {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []blockEv
	for _, ev := range r.events {
		if ev.Kind == hub.BlockConnected || ev.Kind == hub.BlockDisconnected {
			out = append(out, blockEv{ev.Kind, ev.Hash})
		}
	}
	return out
}

// waitFor waits until ok holds over the events, then checks the linkage.
func (r *recorder) waitFor(t *testing.T, what string, ok func([]hub.NodeEvent) bool) {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		r.mu.Lock()
		done := ok(r.events)
		bad := slices.Clone(r.bad)
		n := len(r.events)
		r.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("events broke the chain: %q", bad)
		}
		if done {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("no %s within %s; %d events: %v", what, Timeout, n, r.blocks())
		}
	}
}

func (r *recorder) waitBlocks(t *testing.T, n int) []blockEv {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("%d block events", n), func([]hub.NodeEvent) bool { return len(r.blocksLocked()) >= n })
	// Any extra event (a duplicate) would arrive promptly: give it a moment.
	time.Sleep(300 * time.Millisecond)
	got := r.blocks()
	if len(got) != n {
		t.Fatalf("want exactly %d block events, got %d: %v", n, len(got), got)
	}
	return got
}

func (r *recorder) blocksLocked() []blockEv {
	var out []blockEv
	for _, ev := range r.events {
		if ev.Kind == hub.BlockConnected || ev.Kind == hub.BlockDisconnected {
			out = append(out, blockEv{ev.Kind, ev.Hash})
		}
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

func testReads(t *testing.T, n Node) {
	b := n.Backend()
	ctx := ctxT(t)
	n.Settle(t)
	rec := subscribe(t, b)
	tip, height, err := b.ChainTip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.ChainInfo(ctx)
	if err != nil || info.BestHash != tip || info.Height != height || info.Network != b.Network() {
		t.Fatalf("ChainInfo = %+v, %v; tip %s@%d network %q", info, err, tip, height, b.Network())
	}
	checkChainwork(t, b, info)
	for _, h := range []uint64{0, height / 2, height} {
		hash, err := b.BlockHash(ctx, h)
		if err != nil {
			t.Fatalf("BlockHash(%d): %v", h, err)
		}
		blk, bh, err := b.Block(ctx, hash)
		if err != nil || bh != h || blk.BlockHash() != hash {
			t.Fatalf("Block(%s) = height %d, %v", hash, bh, err)
		}
		hdr, hh, err := b.BlockHeader(ctx, hash)
		if err != nil || hh != h || hdr.BlockHash() != hash {
			t.Fatalf("BlockHeader(%s) = %v, %d, %v", hash, hdr, hh, err)
		}
	}
	if _, err := b.BlockHash(ctx, height+1000); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("BlockHash above the tip: %v, want ErrNotFound", err)
	}
	var nobody chainhash.Hash
	nobody[0] = 1
	if _, _, err := b.Block(ctx, nobody); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("Block(unknown): %v, want ErrNotFound", err)
	}
	if _, err := b.Transaction(ctx, nobody); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("Transaction(unknown): %v, want ErrNotFound", err)
	}

	tx, spent := n.SendTx(t)
	txid := tx.TxHash()
	rec.waitFor(t, "MempoolTransactionAdded "+txid.String(), func(evs []hub.NodeEvent) bool {
		return slices.ContainsFunc(evs, func(e hub.NodeEvent) bool { return e.Kind == hub.MempoolTransactionAdded && e.Txid == txid })
	})
	info2, err := b.Transaction(ctx, txid)
	if err != nil || info2.Block != nil || info2.Tx.TxHash() != txid {
		t.Fatalf("Transaction(mempool %s) = %+v, %v", txid, info2, err)
	}
	ids, err := b.MempoolTxids(ctx)
	if err != nil || !slices.Contains(ids, txid) {
		t.Fatalf("MempoolTxids = %v, %v; want %s in it", ids, err, txid)
	}
	me, err := b.MempoolEntry(ctx, txid)
	if err != nil || me.Tx.TxHash() != txid || me.VSize == 0 || me.Fee <= 0 {
		t.Fatalf("MempoolEntry(%s) = %+v, %v", txid, me, err)
	}
	if _, err := b.Utxo(ctx, spent); err != nil {
		t.Fatalf("Utxo(%s) before its spend is mined: %v", spent, err)
	}

	mined := n.Mine(t, 1)[0]
	rec.waitFor(t, "MempoolTransactionRemoved "+txid.String(), func(evs []hub.NodeEvent) bool {
		return slices.ContainsFunc(evs, func(e hub.NodeEvent) bool { return e.Kind == hub.MempoolTransactionRemoved && e.Txid == txid })
	})
	_, tipHeight, _ := b.ChainTip(ctx)
	conf, err := b.Transaction(ctx, txid)
	if err != nil || conf.Block == nil || *conf.Block != mined || conf.Height != tipHeight || conf.Confirmations != 1 {
		t.Fatalf("Transaction(confirmed %s) = %+v, %v; want block %s@%d, 1 confirmation", txid, conf, err, mined, tipHeight)
	}
	if _, err := b.Utxo(ctx, spent); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("Utxo(spent %s): %v, want ErrNotFound", spent, err)
	}
	out := wire.OutPoint{Hash: txid, Index: 0}
	u, err := b.Utxo(ctx, out)
	if err != nil || u.Value != tx.TxOut[0].Value || string(u.PkScript) != string(tx.TxOut[0].PkScript) || u.Height != tipHeight || u.Coinbase {
		t.Fatalf("Utxo(%s) = %+v, %v; want value %d at %d", out, u, err, tx.TxOut[0].Value, tipHeight)
	}
	blk, _, err := b.Block(ctx, mined)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Utxo(ctx, wire.OutPoint{Hash: blk.Transactions[0].TxHash(), Index: 0})
	if err != nil || !cb.Coinbase || cb.Height != tipHeight {
		t.Fatalf("coinbase Utxo = %+v, %v", cb, err)
	}
}

// checkChainwork: every driver means the same by Chainwork, the work of
// every header from genesis to the best block, 2^256/(target+1) each
// (blockchain.CalcWork), in hex without leading zeros.
func checkChainwork(t *testing.T, b hub.Backend, info hub.ChainInfo) {
	t.Helper()
	ctx := ctxT(t)
	want := new(big.Int)
	for h := uint64(0); h <= info.Height; h++ {
		hash, err := b.BlockHash(ctx, h)
		if err != nil {
			t.Fatalf("BlockHash(%d): %v", h, err)
		}
		hdr, _, err := b.BlockHeader(ctx, hash)
		if err != nil {
			t.Fatalf("BlockHeader(%s): %v", hash, err)
		}
		want.Add(want, blockchain.CalcWork(hdr.Bits))
	}
	if info.Chainwork != want.Text(16) {
		t.Fatalf("ChainInfo.Chainwork at %s@%d = %q, want %q (the headers' work summed)", info.BestHash, info.Height, info.Chainwork, want.Text(16))
	}
}

func testReorg(t *testing.T, n Node, depth int) {
	b := n.Backend()
	ctx := ctxT(t)
	n.Mine(t, depth+1)
	n.Settle(t)
	rec := subscribe(t, b)
	tip, height, err := b.ChainTip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := make([]chainhash.Hash, depth) // old[0] is the tip
	for i := range depth {
		if old[i], err = b.BlockHash(ctx, height-uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if old[0] != tip {
		t.Fatalf("tip %s, block at %d %s", tip, height, old[0])
	}
	n.Disconnect(t, depth)
	fresh := n.Mine(t, depth+1)
	var want []blockEv
	for _, h := range old {
		want = append(want, blockEv{hub.BlockDisconnected, h})
	}
	for _, h := range fresh {
		if slices.Contains(old, h) {
			t.Fatalf("the competing branch re-mined old block %s: no reorg to check", h)
		}
		want = append(want, blockEv{hub.BlockConnected, h})
	}
	got := rec.waitBlocks(t, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("reorg of depth %d:\n got %v\nwant %v", depth, got, want)
	}
	for i, h := range old {
		if _, _, err := b.Block(ctx, h); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("disconnected block %d %s still answers: %v", i, h, err)
		}
	}
	if hdr, _, err := b.BlockHeader(ctx, fresh[len(fresh)-1]); err != nil || hdr.BlockHash() != fresh[len(fresh)-1] {
		t.Fatalf("new tip header: %v", err)
	}
}

func connects(hs []chainhash.Hash) []blockEv {
	out := make([]blockEv, len(hs))
	for i, h := range hs {
		out[i] = blockEv{hub.BlockConnected, h}
	}
	return out
}

func testBurst(t *testing.T, n Node, count int) {
	b := n.Backend()
	n.Settle(t)
	r1, r2 := subscribe(t, b), subscribe(t, b)
	want := connects(n.Mine(t, count))
	for i, r := range []*recorder{r1, r2} {
		if got := r.waitBlocks(t, count); !slices.Equal(got, want) {
			t.Fatalf("subscriber %d: %d blocks out of order or wrong", i, len(got))
		}
	}
}

func testRestart(t *testing.T, n Node) {
	b := n.Backend()
	n.Settle(t)
	rec := subscribe(t, b)
	before := n.Mine(t, 2)
	rec.waitBlocks(t, 2)
	n.Stop(t)
	// While the node is down every call fails fast as unavailable.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	var err error
	for time.Since(start) < 3*time.Second {
		if _, _, err = b.ChainTip(ctx); errors.Is(err, hub.ErrNodeUnavailable) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, hub.ErrNodeUnavailable) {
		t.Fatalf("ChainTip with the node down: %v, want ErrNodeUnavailable", err)
	}
	n.Start(t)
	// Mined at once, before the driver reconnected: their notifications
	// went nowhere, and the reconnect must pull them.
	after := n.Mine(t, 3)
	want := connects(append(slices.Clone(before), after...))
	if got := rec.waitBlocks(t, len(want)); !slices.Equal(got, want) {
		t.Fatalf("across a restart:\n got %v\nwant %v", got, want)
	}
}
