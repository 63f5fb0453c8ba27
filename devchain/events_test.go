package devchain

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

type recorder struct {
	mu     sync.Mutex
	events []hub.NodeEvent
}

func (r *recorder) add(ev hub.NodeEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) take() []hub.NodeEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func kinds(evs []hub.NodeEvent) string {
	names := map[hub.NodeEventKind]string{
		hub.BlockConnected: "connected", hub.BlockDisconnected: "disconnected",
		hub.MempoolTransactionAdded: "added", hub.MempoolTransactionRemoved: "removed",
		hub.ProposalCreated: "created", hub.ProposalClosed: "closed",
	}
	var s []string
	for _, ev := range evs {
		s = append(s, names[ev.Kind])
	}
	return strings.Join(s, " ")
}

func TestEventsOrder(t *testing.T) {
	c, _ := openTest(t, Options{})
	ctx := context.Background()
	var rec recorder
	cancel := c.Subscribe(rec.add)

	before, _ := c.MempoolTxids(ctx)
	blk, err := c.MineBlock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := c.MempoolTxids(ctx)
	evs := rec.take()
	if got := kinds(evs); got != "connected removed removed added added" {
		t.Fatalf("events %q", got)
	}
	hash := blk.BlockHash()
	if evs[0].Hash != hash || evs[0].Height != InitialBlocks+1 || evs[0].Header == nil || evs[0].Header.BlockHash() != hash {
		t.Fatalf("BlockConnected %+v", evs[0])
	}
	for i, id := range before {
		if evs[1+i].Txid != id {
			t.Fatalf("removed[%d] = %s, want %s", i, evs[1+i].Txid, id)
		}
	}
	for i, id := range after {
		if evs[3+i].Txid != id {
			t.Fatalf("added[%d] = %s, want %s", i, evs[3+i].Txid, id)
		}
	}

	p, err := c.CreateProposal(ctx, hub.Proposal{ID: "ev", Title: "Events", Choices: []string{"a", "b"},
		StartHeight: 0, EndHeight: InitialBlocks + 2})
	if err != nil {
		t.Fatal(err)
	}
	evs = rec.take()
	if len(evs) != 1 || evs[0].Kind != hub.ProposalCreated || evs[0].Proposal.ID != "ev" || !p.Open {
		t.Fatalf("CreateProposal events %+v", evs)
	}
	mine(t, c, 1) // height EndHeight: still open
	mine(t, c, 1) // passes EndHeight
	if got := kinds(rec.take()); got != "connected removed removed added added connected removed removed closed added added" {
		t.Fatalf("events %q", got)
	}

	cancel()
	mine(t, c, 1)
	if evs := rec.take(); len(evs) != 0 {
		t.Fatalf("%d events after cancel", len(evs))
	}
}

// A subscriber may read the chain from inside fn, and sees the state the
// event describes.
func TestSubscriberReadsChain(t *testing.T) {
	c, _ := openTest(t, Options{})
	ctx := context.Background()
	var errs []error
	cancel := c.Subscribe(func(ev hub.NodeEvent) {
		switch ev.Kind {
		case hub.BlockConnected:
			if _, h, err := c.ChainTip(ctx); err != nil || h < ev.Height {
				errs = append(errs, fmt.Errorf("tip %d below event height %d: %v", h, ev.Height, err))
			}
			if _, _, err := c.Block(ctx, ev.Hash); err != nil {
				errs = append(errs, err)
			}
		case hub.MempoolTransactionAdded:
			if _, err := c.MempoolEntry(ctx, ev.Txid); err != nil {
				errs = append(errs, err)
			}
			if _, err := c.CastVote(ctx, "subscriber", "softfork-signal-demo", "yes"); err != nil {
				errs = append(errs, err)
			}
		}
	})
	defer cancel()
	mine(t, c, 3)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	// A panicking subscriber does not stop the chain or other subscribers.
	stop := c.Subscribe(func(hub.NodeEvent) { panic("boom") })
	defer stop()
	mine(t, c, 1)
}

func TestInvalidateTip(t *testing.T) {
	c, _ := openTest(t, Options{})
	ctx := context.Background()
	mine(t, c, 2)
	oldHash, oldHeight, _ := c.ChainTip(ctx)
	oldBlk, _, _ := c.Block(ctx, oldHash)
	pending, _ := c.MempoolTxids(ctx)
	var rec recorder
	defer c.Subscribe(rec.add)()

	gone, err := c.InvalidateTip(ctx)
	if err != nil || gone != oldHash {
		t.Fatalf("InvalidateTip = %s, %v", gone, err)
	}
	evs := rec.take()
	if len(evs) == 0 || evs[0].Kind != hub.BlockDisconnected || evs[0].Hash != oldHash || evs[0].Height != oldHeight {
		t.Fatalf("events %q %+v", kinds(evs), evs)
	}
	hash, height, _ := c.ChainTip(ctx)
	if height != oldHeight-1 || hash != oldBlk.Header.PrevBlock {
		t.Fatalf("tip after invalidate %s@%d", hash, height)
	}
	if _, _, err := c.Block(ctx, oldHash); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("disconnected block still on the best chain: %v", err)
	}
	if _, err := c.BlockHash(ctx, oldHeight); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("height %d still indexed: %v", oldHeight, err)
	}
	cb := oldBlk.Transactions[0].TxHash()
	if _, err := c.Transaction(ctx, cb); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("disconnected coinbase still found: %v", err)
	}
	if _, err := c.Utxo(ctx, wire.OutPoint{Hash: cb}); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("disconnected coinbase output still unspent: %v", err)
	}
	inMempool := map[chainhash.Hash]bool{}
	ids, _ := c.MempoolTxids(ctx)
	for _, id := range ids {
		inMempool[id] = true
	}
	for _, tx := range oldBlk.Transactions[1:] {
		if !inMempool[tx.TxHash()] {
			t.Fatalf("disconnected tx %s not back in the mempool", tx.TxHash())
		}
		for _, in := range tx.TxIn {
			if _, err := c.Utxo(ctx, in.PreviousOutPoint); err != nil {
				t.Fatalf("output %s the disconnected block spent is not unspent again: %v", in.PreviousOutPoint, err)
			}
		}
		info, err := c.Transaction(ctx, tx.TxHash())
		if err != nil || info.Block != nil {
			t.Fatalf("returned tx: %+v, %v", info, err)
		}
	}
	// Mempool txs spending coinbases that are immature one block lower
	// were dropped and announced.
	dropped := 0
	for _, ev := range evs {
		if ev.Kind == hub.MempoolTransactionRemoved {
			dropped++
		}
	}
	if dropped == 0 {
		t.Fatalf("no mempool tx dropped; events %q", kinds(evs))
	}
	for _, id := range pending {
		if !inMempool[id] {
			var removed bool
			for _, ev := range evs {
				removed = removed || (ev.Kind == hub.MempoolTransactionRemoved && ev.Txid == id)
			}
			if !removed {
				t.Fatalf("tx %s left the mempool without an event", id)
			}
		}
	}

	// The replacement block is a valid sibling and carries the returned txs.
	blk, err := c.MineBlock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if blk.BlockHash() == oldHash || blk.Header.PrevBlock != oldBlk.Header.PrevBlock {
		t.Fatalf("replacement %s on %s", blk.BlockHash(), blk.Header.PrevBlock)
	}
	if evs := rec.take(); len(evs) == 0 || evs[0].Kind != hub.BlockConnected || evs[0].Height != oldHeight {
		t.Fatalf("events after the replacement block: %q", kinds(evs))
	}
	mine(t, c, 2)
	checkChain(t, c)
	if _, h, _ := c.ChainTip(ctx); h != oldHeight+2 {
		t.Fatalf("height %d, want %d", h, oldHeight+2)
	}
}

func TestInvalidateToGenesisRefused(t *testing.T) {
	c, _ := openTest(t, Options{TxPerBlock: -1})
	ctx := context.Background()
	for i := 0; i < InitialBlocks; i++ {
		if _, err := c.InvalidateTip(ctx); err != nil {
			t.Fatalf("InvalidateTip %d: %v", i, err)
		}
	}
	if _, err := c.InvalidateTip(ctx); err == nil {
		t.Fatal("disconnected the genesis block")
	}
	info, _ := c.ChainInfo(ctx)
	if info.Height != 0 || info.Chainwork != "2" {
		t.Fatalf("at genesis: %+v", info)
	}
	mine(t, c, 3)
	checkChain(t, c)
}
