package chainsync

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// fakeChain is a tree of headers with a movable best tip.
type fakeChain struct {
	headers map[chainhash.Hash]wire.BlockHeader
	heights map[chainhash.Hash]uint64
	tip     chainhash.Hash
	down    bool
	nonce   uint32
	// hashReads are the heights BlockHash was asked for; headerReads
	// counts Header calls.
	hashReads   []uint64
	headerReads int
}

func newFake(n int) *fakeChain {
	f := &fakeChain{headers: map[chainhash.Hash]wire.BlockHeader{}, heights: map[chainhash.Hash]uint64{}}
	g := wire.BlockHeader{Version: 1}
	f.headers[g.BlockHash()], f.heights[g.BlockHash()], f.tip = g, 0, g.BlockHash()
	f.extend(f.tip, n)
	return f
}

// extend mines n blocks on parent and makes the last the tip.
func (f *fakeChain) extend(parent chainhash.Hash, n int) []chainhash.Hash {
	var out []chainhash.Hash
	for range n {
		f.nonce++
		h := wire.BlockHeader{Version: 1, PrevBlock: parent, Nonce: f.nonce}
		hash := h.BlockHash()
		f.headers[hash], f.heights[hash] = h, f.heights[parent]+1
		out = append(out, hash)
		parent = hash
	}
	f.tip = parent
	return out
}

func (f *fakeChain) ancestor(h chainhash.Hash, up int) chainhash.Hash {
	for range up {
		h = f.headers[h].PrevBlock
	}
	return h
}

var errDown = errors.New("down")

func (f *fakeChain) BestBlock(context.Context) (chainhash.Hash, uint64, error) {
	if f.down {
		return chainhash.Hash{}, 0, errDown
	}
	return f.tip, f.heights[f.tip], nil
}

func (f *fakeChain) Header(_ context.Context, h chainhash.Hash) (*wire.BlockHeader, error) {
	if f.down {
		return nil, errDown
	}
	f.headerReads++
	hdr, ok := f.headers[h]
	if !ok {
		return nil, fmt.Errorf("no header %s", h)
	}
	return &hdr, nil
}

func (f *fakeChain) BlockHash(_ context.Context, height uint64) (chainhash.Hash, error) {
	if f.down {
		return chainhash.Hash{}, errDown
	}
	f.hashReads = append(f.hashReads, height)
	h := f.tip
	if f.heights[h] < height {
		return chainhash.Hash{}, fmt.Errorf("no block at height %d", height)
	}
	for f.heights[h] > height {
		h = f.headers[h].PrevBlock
	}
	return h, nil
}

type log []hub.NodeEvent

func (l *log) add(ev hub.NodeEvent) { *l = append(*l, ev) }

func TestReconcileReorgThenExtend(t *testing.T) {
	f := newFake(10)
	tr := &Tracker{}
	ctx := context.Background()
	var evs log
	if n, err := tr.Reconcile(ctx, f, evs.add); err != nil || n != 0 {
		t.Fatalf("first reconcile: %d events, %v", n, err)
	}
	old := []chainhash.Hash{f.tip, f.ancestor(f.tip, 1), f.ancestor(f.tip, 2)}
	fork := f.ancestor(f.tip, 3)
	branch := f.extend(fork, 5) // heights 8..12
	if _, err := tr.Reconcile(ctx, f, evs.add); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 8 {
		t.Fatalf("%d events, want 3 disconnects + 5 connects", len(evs))
	}
	for i, h := range old {
		if evs[i].Kind != hub.BlockDisconnected || evs[i].Hash != h || evs[i].Height != uint64(10-i) {
			t.Fatalf("event %d = %+v, want disconnect %s@%d", i, evs[i], h, 10-i)
		}
	}
	for i, h := range branch {
		e := evs[3+i]
		if e.Kind != hub.BlockConnected || e.Hash != h || e.Height != uint64(8+i) || e.Header.BlockHash() != h {
			t.Fatalf("event %d = %+v, want connect %s@%d", 3+i, e, h, 8+i)
		}
	}
	if h, ht, _ := tr.Tip(); h != f.tip || ht != 12 {
		t.Fatalf("told tip %s@%d", h, ht)
	}
}

// A node whose tip went down (invalidateblock) without a new branch yet:
// disconnects only; the branch later connects from the new tip.
func TestReconcileLowerTip(t *testing.T) {
	f := newFake(6)
	tr := &Tracker{}
	ctx := context.Background()
	tr.Reconcile(ctx, f, func(hub.NodeEvent) {})
	top := f.tip
	f.tip = f.ancestor(f.tip, 2)
	var evs log
	tr.Reconcile(ctx, f, evs.add)
	if len(evs) != 2 || evs[0].Hash != top || evs[0].Kind != hub.BlockDisconnected || evs[1].Height != 5 {
		t.Fatalf("%+v", evs)
	}
	evs = nil
	nb := f.extend(f.tip, 1)
	tr.Reconcile(ctx, f, evs.add)
	if len(evs) != 1 || evs[0].Hash != nb[0] || evs[0].Kind != hub.BlockConnected {
		t.Fatalf("%+v", evs)
	}
}

// A node lost half-way emits nothing, and the next reconcile emits all.
func TestReconcileAllOrNothing(t *testing.T) {
	f := newFake(3)
	tr := &Tracker{}
	ctx := context.Background()
	tr.Reconcile(ctx, f, func(hub.NodeEvent) {})
	f.extend(f.tip, 4)
	f.down = true
	var evs log
	if _, err := tr.Reconcile(ctx, f, evs.add); !errors.Is(err, errDown) || len(evs) != 0 {
		t.Fatalf("down: %v, %d events", err, len(evs))
	}
	f.down = false
	if n, err := tr.Reconcile(ctx, f, evs.add); err != nil || n != 4 {
		t.Fatalf("back: %d, %v", n, err)
	}
	if n, _ := tr.Reconcile(ctx, f, evs.add); n != 0 {
		t.Fatalf("a second reconcile of the same tip emitted %d", n)
	}
}

func TestReconcileTooDeep(t *testing.T) {
	f := newFake(30)
	tr := &Tracker{Window: 5, InitialDepth: 5}
	ctx := context.Background()
	tr.Reconcile(ctx, f, func(hub.NodeEvent) {})
	f.extend(f.ancestor(f.tip, 10), 12)
	var evs log
	if _, err := tr.Reconcile(ctx, f, evs.add); !errors.Is(err, ErrTooDeep) || len(evs) != 0 {
		t.Fatalf("deep reorg: %v, %d events", err, len(evs))
	}
	if h, _, _ := tr.Tip(); h != f.tip {
		t.Fatal("after a too-deep reorg the tracker must follow the node's tip")
	}
}

func TestWindowBounded(t *testing.T) {
	f := newFake(1)
	tr := &Tracker{Window: 8}
	ctx := context.Background()
	tr.Reconcile(ctx, f, func(hub.NodeEvent) {})
	for range 50 {
		f.extend(f.tip, 1)
		tr.Reconcile(ctx, f, func(hub.NodeEvent) {})
	}
	if len(tr.told) > 8 || len(tr.byHash) != len(tr.told) {
		t.Fatalf("told holds %d blocks and the hash index %d, window 8", len(tr.told), len(tr.byHash))
	}
}

func TestMempoolSyncAndBound(t *testing.T) {
	h := func(b byte) chainhash.Hash { return chainhash.Hash{b} }
	m := &Mempool{Max: 3}
	var evs log
	m.Add(h(1), evs.add)
	m.Add(h(1), evs.add)
	m.Sync([]chainhash.Hash{h(2), h(3), h(4), h(5)}, evs.add)
	want := []struct {
		k hub.NodeEventKind
		b byte
	}{{hub.MempoolTransactionAdded, 1}, {hub.MempoolTransactionRemoved, 1}, {hub.MempoolTransactionAdded, 2}, {hub.MempoolTransactionAdded, 3}, {hub.MempoolTransactionAdded, 4}}
	if len(evs) != len(want) {
		t.Fatalf("%d events: %+v", len(evs), evs)
	}
	for i, w := range want {
		if evs[i].Kind != w.k || evs[i].Txid != h(w.b) {
			t.Fatalf("event %d = %+v", i, evs[i])
		}
	}
	if m.Len() != 3 {
		t.Fatalf("bound 3, holds %d", m.Len())
	}
}

// A node far ahead of the told tip (catching up, or claiming a tip it does
// not have) is walked in steps of MaxStep: every block still arrives once
// and in order, and no step reads more than MaxStep headers before it
// emits, however high the claimed tip.
func TestReconcileFarAheadInBoundedSteps(t *testing.T) {
	f := newFake(10)
	tr := &Tracker{MaxStep: 50}
	ctx := context.Background()
	if _, err := tr.Reconcile(ctx, f, func(hub.NodeEvent) {}); err != nil {
		t.Fatal(err)
	}
	f.extend(f.tip, 3*50+7) // heights 11..167
	var evs log
	mostUnemitted, readsAtLastEmit := 0, f.headerReads
	emit := func(ev hub.NodeEvent) {
		mostUnemitted = max(mostUnemitted, f.headerReads-readsAtLastEmit)
		readsAtLastEmit = f.headerReads
		evs.add(ev)
	}
	n, err := tr.Reconcile(ctx, f, emit)
	if err != nil || n != 157 {
		t.Fatalf("%d events, %v; want 157 connects", n, err)
	}
	for i, e := range evs {
		if e.Kind != hub.BlockConnected || e.Height != uint64(11+i) {
			t.Fatalf("event %d = %v at %d, want a connect at %d", i, e.Kind, e.Height, 11+i)
		}
		if i > 0 && e.Header.PrevBlock != evs[i-1].Hash {
			t.Fatalf("event %d does not follow event %d", i, i-1)
		}
	}
	if mostUnemitted > 50 {
		t.Fatalf("%d headers read before an emit, more than MaxStep 50", mostUnemitted)
	}
	if want := []uint64{60, 110, 160}; fmt.Sprint(f.hashReads) != fmt.Sprint(want) {
		t.Fatalf("BlockHash asked for %v, want the step targets %v", f.hashReads, want)
	}
	if h, ht, _ := tr.Tip(); h != f.tip || ht != 167 {
		t.Fatalf("told tip %s@%d", h, ht)
	}
}

// A node whose tip is below every remembered block (a reset regtest, or a
// lie) starts the tracker again without a walk that could not meet it.
func TestReconcileTipFarBelowStartsAgain(t *testing.T) {
	f := newFake(3000)
	tr := &Tracker{}
	ctx := context.Background()
	if _, err := tr.Reconcile(ctx, f, func(hub.NodeEvent) {}); err != nil {
		t.Fatal(err)
	}
	g := newFake(5)
	before := g.headerReads
	var evs log
	_, err := tr.Reconcile(ctx, g, evs.add)
	if !errors.Is(err, ErrTooDeep) || len(evs) != 0 {
		t.Fatalf("err %v, %d events; want ErrTooDeep and none", err, len(evs))
	}
	if reads := g.headerReads - before; reads > DefaultInitialDepth {
		t.Fatalf("%d header reads; want only the new tip's learning", reads)
	}
	if h, ht, _ := tr.Tip(); h != g.tip || ht != 5 {
		t.Fatalf("told tip %s@%d, want the new node's", h, ht)
	}
}
