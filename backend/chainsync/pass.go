package chainsync

import (
	"context"
	"sync/atomic"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Pass is what one pass of a real-node driver's syncer works on. The
// driver's notification handlers only queue txids on Txs (setting Overflow
// when it is full); the syncer's goroutine runs passes, so every event is
// published from one goroutine, in order.
type Pass struct {
	Tracker *Tracker
	Mempool *Mempool
	Source  Source
	// Txs are the txids the node announced since the last pass.
	Txs <-chan chainhash.Hash
	// Overflow is set when announcements were lost (a full queue, a failed
	// listing): the next pass lists the node's whole mempool.
	Overflow *atomic.Bool
	// List reads the node's whole mempool.
	List func(context.Context) ([]chainhash.Hash, error)
	Emit func(hub.NodeEvent)
}

// Run reconciles the tip, then brings the mempool up to date: from the
// node's whole mempool when blocks moved, full is set or announcements were
// lost, else from the txids announced since the last pass.
func (p Pass) Run(ctx context.Context, full bool) error {
	n, err := p.Tracker.Reconcile(ctx, p.Source, p.Emit)
	if err != nil {
		return err
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
	if n > 0 || full || p.Overflow.Swap(false) {
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
