package devchain

import (
	"context"
	"fmt"
	"math/big"
	"slices"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// InvalidateTip disconnects the best block, the first half of a reorg: the
// outputs it spent return to the UTXO set and its own leave it, mempool
// transactions that can no longer be mined are dropped, and its
// non-coinbase transactions return to the mempool. The next MineBlock then
// mines a competing block at the same height. The block stays stored, off
// the best chain. It returns the disconnected block's hash; the genesis
// block cannot be disconnected. Proposals reopened by the lower tip get no
// event.
func (c *Chain) InvalidateTip(ctx context.Context) (chainhash.Hash, error) {
	var gone chainhash.Hash
	err := c.write(func() ([]hub.NodeEvent, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := c.pendingFromChain()
		if p.tip.height == 0 {
			return nil, fmt.Errorf("devchain: invalidate tip: the genesis block cannot be disconnected")
		}
		gone = p.tip.hash
		now := c.opts.Now()
		err := c.db.Update(func(tx *bolt.Tx) error {
			return c.disconnectTip(tx, p, now.Unix())
		})
		if err != nil {
			return nil, fmt.Errorf("devchain: invalidate tip %s: %w", gone, err)
		}
		c.install(p)
		c.log.Info("disconnected block", "hash", gone, "new tip", p.tip.hash, "height", p.tip.height)
		return p.events, nil
	})
	return gone, err
}

func (c *Chain) disconnectTip(tx *bolt.Tx, p *pending, now int64) error {
	hash, height := p.tip.hash, p.tip.height
	blk, _, err := decodeBlock(tx.Bucket(bucketBlocks).Get(hash[:]))
	if err != nil {
		return fmt.Errorf("tip block: %w", err)
	}
	undo, err := decodeUndo(tx.Bucket(bucketUndo).Get(hash[:]))
	if err != nil {
		return fmt.Errorf("undo record: %w", err)
	}
	utxos, wallet, txindex := tx.Bucket(bucketUtxo), tx.Bucket(bucketWallet), tx.Bucket(bucketTxIndex)
	for _, t := range slices.Backward(blk.Transactions) {
		txid := t.TxHash()
		for n, out := range t.TxOut {
			if txscript.IsUnspendable(out.PkScript) {
				continue
			}
			op := wire.OutPoint{Hash: txid, Index: uint32(n)}
			if err := utxos.Delete(outpointKey(op)); err != nil {
				return err
			}
			if err := wallet.Delete(walletKey(height, op)); err != nil {
				return err
			}
		}
		if err := txindex.Delete(txid[:]); err != nil {
			return err
		}
	}
	spentValue := make(map[wire.OutPoint]int64, len(undo))
	for _, s := range undo {
		spentValue[s.op] = s.entry.Value
		if err := utxos.Put(outpointKey(s.op), encodeUtxo(s.entry)); err != nil {
			return err
		}
		if c.isWalletCoin(s.entry) {
			if err := wallet.Put(walletKey(s.entry.Height, s.op), []byte{}); err != nil {
				return err
			}
		}
	}
	if err := tx.Bucket(bucketHeights).Delete(u64(height)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketUndo).Delete(hash[:]); err != nil {
		return err
	}

	prevHdr, _, err := decodeHeader(tx.Bucket(bucketBlocks).Get(blk.Header.PrevBlock[:]))
	if err != nil {
		return fmt.Errorf("parent block %s: %w", blk.Header.PrevBlock, err)
	}
	work := new(big.Int).Sub(p.tip.chainwork, blockWork(blk.Header.Bits))
	newTip := tipRecord{hash: blk.Header.PrevBlock, height: height - 1, chainwork: work}
	if err := writeTip(tx, newTip); err != nil {
		return err
	}
	times, err := recentTimestamps(tx, newTip.height)
	if err != nil {
		return err
	}
	p.tip = tipState{hash: newTip.hash, height: newTip.height, header: *prevHdr, chainwork: work}
	p.times = times
	hdr := blk.Header
	p.events = append(p.events, hub.NodeEvent{Kind: hub.BlockDisconnected, Hash: hash, Height: height, Header: &hdr})

	// Drop what the lower tip can no longer mine: spends of outputs the
	// block created, and coinbase spends that are now immature.
	mempoolB := tx.Bucket(bucketMempool)
	recs := make([]*mempoolRecord, 0, len(p.mempool))
	for _, r := range p.mempool {
		recs = append(recs, r)
	}
	sortMempool(recs)
	for _, r := range recs {
		ok, err := c.minable(tx, r.tx, newTip.height+1)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		txid := r.tx.TxHash()
		p.removeFromMempool(txid, r)
		if err := mempoolB.Delete(txid[:]); err != nil {
			return err
		}
		p.events = append(p.events, hub.NodeEvent{Kind: hub.MempoolTransactionRemoved, Txid: txid})
	}

	// The block's own transactions are valid again at the same height.
	var back []*mempoolRecord
	for _, t := range blk.Transactions[1:] {
		var in, out int64
		for _, ti := range t.TxIn {
			in += spentValue[ti.PreviousOutPoint]
		}
		for _, to := range t.TxOut {
			out += to.Value
		}
		back = append(back, &mempoolRecord{tx: t, fee: in - out, vsize: txVSize(t), added: now})
	}
	return p.admit(tx, back)
}

// minable reports whether every input of t is unspent and mature for a
// block at height.
func (c *Chain) minable(tx *bolt.Tx, t *wire.MsgTx, height uint64) (bool, error) {
	utxos := tx.Bucket(bucketUtxo)
	for _, in := range t.TxIn {
		v := utxos.Get(outpointKey(in.PreviousOutPoint))
		if v == nil {
			return false, nil
		}
		e, err := decodeUtxo(v)
		if err != nil {
			return false, err
		}
		if e.Coinbase && height-e.Height < uint64(c.params.CoinbaseMaturity) {
			return false, nil
		}
	}
	return true, nil
}
