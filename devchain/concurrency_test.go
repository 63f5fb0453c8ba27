package devchain

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// TestConcurrentReaders runs every read method from many goroutines while
// Run mines, votes are cast and a subscriber reads inside fn. Run it with
// -race.
func TestConcurrentReaders(t *testing.T) {
	c, _ := openTest(t, Options{BlockInterval: 2 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()

	var lastHeight atomic.Uint64
	var orderErr atomic.Value
	stop := c.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind != hub.BlockConnected {
			return
		}
		if prev := lastHeight.Swap(ev.Height); prev != 0 && ev.Height != prev+1 {
			orderErr.Store(fmt.Errorf("BlockConnected %d after %d", ev.Height, prev))
		}
		if _, _, err := c.BlockHeader(context.Background(), ev.Hash); err != nil {
			orderErr.Store(err)
		}
	})
	defer stop()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	errc := make(chan error, 100)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			bg := context.Background()
			for i := 0; ctx.Err() == nil; i++ {
				if err := readAll(bg, c, fmt.Sprintf("voter-%d", g), i); err != nil {
					errc <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err, _ := orderErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	_, h, _ := c.ChainTip(context.Background())
	t.Logf("mined to height %d under concurrent reads", h)
	if h <= InitialBlocks {
		t.Fatal("no block mined")
	}
	checkChain(t, c)
}

func readAll(ctx context.Context, c *Chain, voter string, i int) error {
	hash, height, err := c.ChainTip(ctx)
	if err != nil {
		return err
	}
	if _, err := c.ChainInfo(ctx); err != nil {
		return err
	}
	h := uint64(i) % (height + 1)
	bh, err := c.BlockHash(ctx, h)
	if err != nil {
		return fmt.Errorf("BlockHash(%d) with tip %d: %w", h, height, err)
	}
	blk, got, err := c.Block(ctx, bh)
	if err != nil || got != h {
		return fmt.Errorf("Block(%s) = %d, %v", bh, got, err)
	}
	if _, _, err := c.BlockHeader(ctx, hash); err != nil {
		return fmt.Errorf("BlockHeader(tip): %w", err)
	}
	for _, tx := range blk.Transactions {
		id := tx.TxHash()
		if _, err := c.Transaction(ctx, id); err != nil {
			return fmt.Errorf("Transaction(%s): %w", id, err)
		}
		// Spent or not, the answer is an entry or NotFound, never an error.
		if _, err := c.Utxo(ctx, wire.OutPoint{Hash: id}); err != nil && !errors.Is(err, hub.ErrNotFound) {
			return err
		}
	}
	ids, err := c.MempoolTxids(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		// It may be mined meanwhile; NotFound is fine, and Transaction must
		// then find it in a block.
		if _, err := c.MempoolEntry(ctx, id); err != nil && !errors.Is(err, hub.ErrNotFound) {
			return err
		}
		if _, err := c.Transaction(ctx, id); err != nil {
			return fmt.Errorf("Transaction(%s) of a mempool or mined tx: %w", id, err)
		}
	}
	if _, err := c.Proposals(ctx); err != nil {
		return err
	}
	if _, err := c.CastVote(ctx, voter, "softfork-signal-demo", []string{"yes", "no", "abstain"}[i%3]); err != nil {
		return err
	}
	_, err = c.Results(ctx, "softfork-signal-demo")
	return err
}
