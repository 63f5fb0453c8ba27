package chainsync

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// countingSource counts the reads a pass makes of the node.
type countingSource struct {
	*fakeChain
	reads int
}

func (c *countingSource) BestBlock(ctx context.Context) (chainhash.Hash, uint64, error) {
	c.reads++
	return c.fakeChain.BestBlock(ctx)
}

func (c *countingSource) Header(ctx context.Context, h chainhash.Hash) (*wire.BlockHeader, error) {
	c.reads++
	return c.fakeChain.Header(ctx, h)
}

func (c *countingSource) BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error) {
	c.reads++
	return c.fakeChain.BlockHash(ctx, height)
}

func hintFor(f *fakeChain, h chainhash.Hash, disconnect bool) Hint {
	return Hint{Disconnect: disconnect, Height: f.heights[h], Header: f.headers[h]}
}

func TestApply(t *testing.T) {
	f := newFake(5)
	tr := &Tracker{}
	var evs log
	if tr.Apply(hintFor(f, f.tip, false), evs.add) {
		t.Fatal("a hint applied before the tracker knew any tip")
	}
	tr.Reconcile(context.Background(), f, evs.add)
	tip := f.tip
	next := f.extend(tip, 2)

	// A gap (the block two above the tip) does not apply.
	if tr.Apply(hintFor(f, next[1], false), evs.add) || len(evs) != 0 {
		t.Fatalf("a connect two above the tip applied: %+v", evs)
	}
	// A block at the right height on another parent does not apply.
	other := wire.BlockHeader{Version: 1, PrevBlock: chainhash.Hash{7}, Nonce: 99}
	if tr.Apply(Hint{Height: 6, Header: other}, evs.add) || len(evs) != 0 {
		t.Fatal("a connect whose parent is not the tip applied")
	}
	// Extending the tip applies, and the hash is the header's own.
	if !tr.Apply(hintFor(f, next[0], false), evs.add) || len(evs) != 1 ||
		evs[0].Kind != hub.BlockConnected || evs[0].Hash != next[0] || evs[0].Height != 6 || evs[0].Header.BlockHash() != next[0] {
		t.Fatalf("extend: %+v", evs)
	}
	if h, ht, _ := tr.Tip(); h != next[0] || ht != 6 {
		t.Fatalf("told tip %s@%d after extend", h, ht)
	}
	// The same connect again is already told: applies, emits nothing.
	if !tr.Apply(hintFor(f, next[0], false), evs.add) || len(evs) != 1 {
		t.Fatalf("a repeated connect emitted: %+v", evs)
	}
	// A disconnect of a block that is not the tip does not apply.
	if tr.Apply(hintFor(f, tip, true), evs.add) || len(evs) != 1 {
		t.Fatal("a disconnect below the tip applied")
	}
	// A disconnect of the tip applies and forgets it before the event.
	var lookedUp bool
	if !tr.Apply(hintFor(f, next[0], true), func(ev hub.NodeEvent) {
		_, _, lookedUp = tr.Lookup(ev.Hash)
		evs.add(ev)
	}) || len(evs) != 2 || evs[1].Kind != hub.BlockDisconnected || evs[1].Hash != next[0] {
		t.Fatalf("disconnect of the tip: %+v", evs)
	}
	if lookedUp {
		t.Fatal("Lookup still answered for a block while its disconnect was emitted")
	}
	if h, ht, _ := tr.Tip(); h != tip || ht != 5 {
		t.Fatalf("told tip %s@%d after disconnect, want %s@5", h, ht, tip)
	}
}

func TestApplyDisconnectAtTheWindowBottom(t *testing.T) {
	f := newFake(10)
	tr := &Tracker{InitialDepth: 1}
	tr.Reconcile(context.Background(), f, func(hub.NodeEvent) {})
	var evs log
	if tr.Apply(hintFor(f, f.tip, true), evs.add) || len(evs) != 0 {
		t.Fatal("a disconnect of the only remembered block applied: the tip below it is unknown")
	}
}

func TestLookup(t *testing.T) {
	f := newFake(4)
	tr := &Tracker{}
	ctx := context.Background()
	tr.Reconcile(ctx, f, func(hub.NodeEvent) {})
	for h, ht := range f.heights {
		got, hdr, ok := tr.Lookup(h)
		if !ok || got != ht || hdr.BlockHash() != h {
			t.Fatalf("Lookup(%s) = %d, %v; want %d", h, got, ok, ht)
		}
	}
	// After a reorg the old blocks are gone from the index before their
	// disconnects are emitted, and the new ones are in it.
	old := f.tip
	branch := f.extend(f.ancestor(f.tip, 2), 3)
	tr.Reconcile(ctx, f, func(ev hub.NodeEvent) {
		if _, _, ok := tr.Lookup(ev.Hash); ev.Kind == hub.BlockDisconnected && ok {
			t.Errorf("Lookup answers for %s while its disconnect is emitted", ev.Hash)
		}
	})
	if _, _, ok := tr.Lookup(old); ok {
		t.Fatal("Lookup answers for a disconnected block")
	}
	for _, h := range branch {
		if _, _, ok := tr.Lookup(h); !ok {
			t.Fatalf("Lookup misses the new block %s", h)
		}
	}
}

// A pass applies hints without reading the node, falls back to a
// reconcile when one does not apply, and lists the mempool only when a
// block could have changed it unannounced.
func TestPassHints(t *testing.T) {
	f := newFake(3)
	src := &countingSource{fakeChain: f}
	tr := &Tracker{}
	pool := &Mempool{}
	hints := make(chan Hint, 8)
	txs := make(chan chainhash.Hash, 8)
	var overflow atomic.Bool
	lists := 0
	var evs log
	pass := Pass{Tracker: tr, Mempool: pool, Source: src, Hints: hints, Txs: txs, Overflow: &overflow,
		List: func(context.Context) ([]chainhash.Hash, error) { lists++; return nil, nil }, Emit: evs.add}
	ctx := context.Background()
	if err := pass.Run(ctx, true); err != nil {
		t.Fatal(err)
	}
	src.reads, lists = 0, 0

	for _, h := range f.extend(f.tip, 2) {
		hints <- hintFor(f, h, false)
	}
	if err := pass.Run(ctx, false); err != nil {
		t.Fatal(err)
	}
	if src.reads != 0 || lists != 0 || len(evs) != 2 {
		t.Fatalf("two extending hints: %d reads, %d listings, %d events; want 0, 0, 2", src.reads, lists, len(evs))
	}

	// A tx announced, then a block: the block may hold it, so list.
	txs <- chainhash.Hash{9}
	hints <- hintFor(f, f.extend(f.tip, 1)[0], false)
	pass.Run(ctx, false)
	if src.reads != 0 || lists != 1 {
		t.Fatalf("a block after an announcement: %d reads, %d listings; want 0, 1", src.reads, lists)
	}

	// A hint that skips a block falls back to the node's tip: no gap.
	evs = nil
	skipped := f.extend(f.tip, 2)
	hints <- hintFor(f, skipped[1], false)
	pass.Run(ctx, false)
	if src.reads == 0 || len(evs) != 2 || evs[0].Hash != skipped[0] || evs[1].Hash != skipped[1] {
		t.Fatalf("a gap: %d reads, events %+v; want both blocks in order from a reconcile", src.reads, evs)
	}

	// A disconnect hint, then a competing block: both applied, and the
	// mempool is listed (a disconnect returns transactions unannounced).
	evs, src.reads, lists = nil, 0, 0
	top := f.tip
	hints <- hintFor(f, top, true)
	alt := f.extend(f.ancestor(top, 1), 1)[0]
	hints <- hintFor(f, alt, false)
	pass.Run(ctx, false)
	if src.reads != 0 || lists != 1 || len(evs) != 2 || evs[0].Kind != hub.BlockDisconnected || evs[0].Hash != top || evs[1].Hash != alt {
		t.Fatalf("a reorg by hints: %d reads, %d listings, events %+v", src.reads, lists, evs)
	}

	// Without hints (a driver that has none) every pass reconciles.
	src.reads = 0
	Pass{Tracker: tr, Mempool: pool, Source: src, Txs: txs, Overflow: &overflow,
		List: pass.List, Emit: evs.add}.Run(ctx, false)
	if src.reads == 0 {
		t.Fatal("a pass without hints did not read the node's tip")
	}
}
