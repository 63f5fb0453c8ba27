package chainsync

import (
	"context"
	"sync/atomic"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Pass is what one pass of a real-node driver's syncer works on. The
// driver's notification handlers only queue hints on Hints and txids on Txs
// (setting Overflow when Txs is full); the syncer's goroutine runs passes,
// so every event is published from one goroutine, in order.
type Pass struct {
	Tracker *Tracker
	Mempool *Mempool
	Source  Source
	// Hints are the block notifications, with headers, that arrived since
	// the last pass, in the node's order. A driver without them (nil)
	// reconciles on every pass.
	Hints <-chan Hint
	// Txs are the txids the node announced since the last pass.
	Txs <-chan chainhash.Hash
	// Overflow is set when announcements were lost (a full queue, a failed
	// listing): the next pass lists the node's whole mempool.
	Overflow *atomic.Bool
	// List reads the node's whole mempool.
	List func(context.Context) ([]chainhash.Hash, error)
	Emit func(hub.NodeEvent)
}

// Run brings the told chain up to date, then the mempool. The chain: every
// queued hint that moves the tip by its own block is applied without a read;
// the tip is reconciled from the node when full is set, when there are no
// hints, or when one did not apply (the hints after it are dropped: the
// node's tip already includes them). The mempool: from the node's whole
// mempool when a block was disconnected, when one connected while the
// modules know of mempool transactions or some were announced since the last
// pass (it may have removed them: removals are not announced), when full is
// set or announcements were lost; else from the txids announced since the
// last pass.
func (p Pass) Run(ctx context.Context, full bool) error {
	n, disconnects := 0, 0
	count := func(ev hub.NodeEvent) {
		n++
		if ev.Kind == hub.BlockDisconnected {
			disconnects++
		}
		p.Emit(ev)
	}
	reconcile := full || p.Hints == nil
hints:
	for p.Hints != nil {
		select {
		case h := <-p.Hints:
			if !reconcile && !p.Tracker.Apply(h, count) {
				reconcile = true
			}
		default:
			break hints
		}
	}
	if reconcile {
		if _, err := p.Tracker.Reconcile(ctx, p.Source, count); err != nil {
			return err
		}
	}
	var pend []chainhash.Hash
drain:
	for {
		select {
		case h := <-p.Txs:
			pend = append(pend, h)
		default:
			break drain
		}
	}
	// A connect removes only transactions the modules were told about (and
	// what it adds from orphans is announced); a disconnect returns
	// transactions to the mempool unannounced.
	moved := disconnects > 0 || (n > 0 && (p.Mempool.Len() > 0 || len(pend) > 0))
	if moved || full || p.Overflow.Swap(false) {
		ids, err := p.List(ctx)
		if err != nil {
			p.Overflow.Store(true)
			return err
		}
		p.Mempool.Sync(ids, p.Emit)
		return nil
	}
	for _, h := range pend {
		p.Mempool.Add(h, p.Emit)
	}
	return nil
}
