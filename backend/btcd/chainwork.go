package btcd

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/backend/rpcread"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// anchorMargin keeps the remembered sum this many blocks below the tip, so
// that an ordinary reorg does not send the next sum back to genesis.
const anchorMargin = 100

// chainwork sums the work of every header up to a best block: btcd reports
// chainwork in no RPC. The sum through one block well below the tip (the
// anchor) is remembered, so a call reads only the headers after it
// (getheaders, 2000 a call); a first call, or one after a reorg below the
// anchor, reads them all from genesis. The anchor moves with every batch
// read, so a sum cut short by its deadline leaves the next one less to read.
type chainwork struct {
	// turn is a lock that a waiter can give up on when its ctx ends: one
	// sum at a time, since the anchor moves as it runs. A 1-slot channel,
	// held while full.
	turn   chan struct{}
	anchor chainhash.Hash
	height uint64
	work   *big.Int // through the anchor, inclusive; nil: none yet
}

func newChainwork() chainwork { return chainwork{turn: make(chan struct{}, 1)} }

// at returns the chainwork of best, at height, on the best chain.
func (w *chainwork) at(ctx context.Context, r rpcread.Reader, best chainhash.Hash, height uint64) (*big.Int, error) {
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("btcd: chainwork: waiting for the sum another call is running: %w", ctx.Err())
	}
	defer func() { <-w.turn }()
	if w.work == nil || w.height > height {
		if err := w.fromGenesis(ctx, r); err != nil {
			return nil, err
		}
	}
	cur, curHeight, sum := w.anchor, w.height, new(big.Int).Set(w.work)
	restarted := false
	for cur != best {
		if curHeight >= height {
			return nil, fmt.Errorf("btcd: chainwork: %s is not on the best chain at height %d", best, height)
		}
		var hexes []string
		if err := r.Caller.Call(ctx, &hexes, "getheaders", []string{cur.String()}, best.String()); err != nil {
			return nil, fmt.Errorf("btcd: chainwork: summed to height %d of %d (kept through %d): %w", curHeight, height, w.height, err)
		}
		if len(hexes) == 0 {
			return nil, fmt.Errorf("btcd: chainwork: no headers after %s toward %s", cur, best)
		}
		for i, s := range hexes {
			hdr, err := decodeHeader(s)
			if err != nil {
				return nil, fmt.Errorf("btcd: chainwork: header after %s: %w", cur, err)
			}
			if hdr.PrevBlock != cur {
				if i == 0 && cur == w.anchor && !restarted {
					// The anchor left the best chain: btcd answered from
					// genesis. Start over from there.
					if err := w.fromGenesis(ctx, r); err != nil {
						return nil, err
					}
					cur, curHeight, sum = w.anchor, w.height, new(big.Int).Set(w.work)
					restarted = true
					break
				}
				return nil, fmt.Errorf("btcd: chainwork: header %s does not follow %s", hdr.BlockHash(), cur)
			}
			cur, curHeight = hdr.BlockHash(), curHeight+1
			sum.Add(sum, blockchain.CalcWork(hdr.Bits))
			if curHeight+anchorMargin <= height && curHeight > w.height {
				w.anchor, w.height, w.work = cur, curHeight, new(big.Int).Set(sum)
			}
		}
	}
	return sum, nil
}

func (w *chainwork) fromGenesis(ctx context.Context, r rpcread.Reader) error {
	g, err := r.BlockHash(ctx, 0)
	if err != nil {
		return fmt.Errorf("btcd: chainwork: genesis: %w", err)
	}
	hdr, err := r.Header(ctx, g)
	if err != nil {
		return fmt.Errorf("btcd: chainwork: genesis: %w", err)
	}
	w.anchor, w.height, w.work = g, 0, blockchain.CalcWork(hdr.Bits)
	return nil
}

func decodeHeader(s string) (*wire.BlockHeader, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, err
	}
	var h wire.BlockHeader
	if err := h.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, err
	}
	return &h, nil
}

// ChainInfo is getblockchaininfo with the chainwork btcd leaves out summed
// from the headers (see chainwork).
func (d *Driver) ChainInfo(ctx context.Context) (hub.ChainInfo, error) {
	info, err := d.Reader.ChainInfo(ctx)
	if err != nil || info.Chainwork != "" {
		return info, err
	}
	work, err := d.work.at(ctx, d.Reader, info.BestHash, info.Height)
	if err != nil {
		return hub.ChainInfo{}, fmt.Errorf("chainwork of %s: %w", info.BestHash, err)
	}
	info.Chainwork = work.Text(16)
	return info, nil
}

// warmChainwork sums the chainwork up to the tip as soon as the driver is
// connected, on the session's context rather than a module's: the first sum
// reads every header from genesis (about 440 getheaders on mainnet), more
// than one module call's deadline should pay for. A module's ChainInfo then
// finds the anchor near the tip.
func (d *Driver) warmChainwork(ctx context.Context) {
	defer d.wg.Done()
	if _, err := d.ChainInfo(ctx); err != nil && ctx.Err() == nil {
		d.log.Warn("chainwork warm-up; the next ChainInfo goes on from where it stopped", "err", err)
	}
}
