package devchain

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// ChainTip returns the best block's hash and height.
func (c *Chain) ChainTip(ctx context.Context) (chainhash.Hash, uint64, error) {
	if err := c.ready(ctx); err != nil {
		return chainhash.Hash{}, 0, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.tip.hash, c.tip.height, nil
}

// ChainInfo summarises the best chain.
func (c *Chain) ChainInfo(ctx context.Context) (hub.ChainInfo, error) {
	if err := c.ready(ctx); err != nil {
		return hub.ChainInfo{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return hub.ChainInfo{
		Network:    c.params.Name,
		Height:     c.tip.height,
		BestHash:   c.tip.hash,
		Bits:       c.tip.header.Bits,
		MedianTime: medianTime(c.recentTimes),
		Chainwork:  c.tip.chainwork.Text(16),
	}, nil
}

// BlockHash is the hash of the best chain's block at height.
func (c *Chain) BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error) {
	if err := c.ready(ctx); err != nil {
		return chainhash.Hash{}, err
	}
	var h chainhash.Hash
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketHeights).Get(u64(height))
		if v == nil {
			return fmt.Errorf("devchain: block at height %d: %w", height, hub.ErrNotFound)
		}
		copy(h[:], v)
		return nil
	})
	return h, err
}

// bestChainRecord returns the stored record of hash if it is on the best chain.
func bestChainRecord(tx *bolt.Tx, hash chainhash.Hash) ([]byte, error) {
	rec := tx.Bucket(bucketBlocks).Get(hash[:])
	if len(rec) < 8 {
		return nil, fmt.Errorf("devchain: block %s: %w", hash, hub.ErrNotFound)
	}
	atHeight := tx.Bucket(bucketHeights).Get(rec[:8])
	if len(atHeight) != chainhash.HashSize || chainhash.Hash(atHeight) != hash {
		return nil, fmt.Errorf("devchain: block %s is not on the best chain: %w", hash, hub.ErrNotFound)
	}
	return rec, nil
}

// Block returns a best-chain block and its height. The block is the
// caller's to keep.
func (c *Chain) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, uint64, error) {
	if err := c.ready(ctx); err != nil {
		return nil, 0, err
	}
	var (
		blk    *wire.MsgBlock
		height uint64
	)
	err := c.db.View(func(tx *bolt.Tx) error {
		rec, err := bestChainRecord(tx, hash)
		if err != nil {
			return err
		}
		blk, height, err = decodeBlock(rec)
		if err != nil {
			return fmt.Errorf("devchain: block %s: %w", hash, err)
		}
		return nil
	})
	return blk, height, err
}

// BlockHeader returns a best-chain block's header and height.
func (c *Chain) BlockHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, uint64, error) {
	if err := c.ready(ctx); err != nil {
		return nil, 0, err
	}
	var (
		hdr    *wire.BlockHeader
		height uint64
	)
	err := c.db.View(func(tx *bolt.Tx) error {
		rec, err := bestChainRecord(tx, hash)
		if err != nil {
			return err
		}
		hdr, height, err = decodeHeader(rec)
		if err != nil {
			return fmt.Errorf("devchain: block %s: %w", hash, err)
		}
		return nil
	})
	return hdr, height, err
}

// Transaction finds a transaction in the mempool or on the best chain.
func (c *Chain) Transaction(ctx context.Context, txid chainhash.Hash) (hub.TxInfo, error) {
	if err := c.ready(ctx); err != nil {
		return hub.TxInfo{}, err
	}
	c.mu.RLock()
	r, ok := c.mempool[txid]
	c.mu.RUnlock()
	if ok {
		return hub.TxInfo{Tx: r.tx.Copy()}, nil
	}
	var info hub.TxInfo
	err := c.db.View(func(tx *bolt.Tx) error {
		loc := tx.Bucket(bucketTxIndex).Get(txid[:])
		if len(loc) != 36 {
			return fmt.Errorf("devchain: transaction %s: %w", txid, hub.ErrNotFound)
		}
		blockHash := chainhash.Hash(loc[:32])
		idx := binary.BigEndian.Uint32(loc[32:])
		rec, err := bestChainRecord(tx, blockHash)
		if err != nil {
			return fmt.Errorf("devchain: transaction %s: %w", txid, err)
		}
		blk, height, err := decodeBlock(rec)
		if err != nil {
			return fmt.Errorf("devchain: block %s: %w", blockHash, err)
		}
		if int(idx) >= len(blk.Transactions) {
			return fmt.Errorf("devchain: transaction %s: index %d beyond block %s", txid, idx, blockHash)
		}
		tip, err := readTip(tx)
		if err != nil {
			return err
		}
		info = hub.TxInfo{Tx: blk.Transactions[idx], Block: &blockHash, Height: height,
			Confirmations: tip.height - height + 1}
		return nil
	})
	return info, err
}

// Utxo returns an output unspent on the best chain. An output a mempool
// transaction spends is still returned, as the confirmed view has it.
func (c *Chain) Utxo(ctx context.Context, op wire.OutPoint) (hub.UtxoEntry, error) {
	if err := c.ready(ctx); err != nil {
		return hub.UtxoEntry{}, err
	}
	var e hub.UtxoEntry
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketUtxo).Get(outpointKey(op))
		if v == nil {
			return fmt.Errorf("devchain: output %s: %w", op, hub.ErrNotFound)
		}
		var err error
		e, err = decodeUtxo(v)
		return err
	})
	return e, err
}

// MempoolTxids lists the mempool, oldest first.
func (c *Chain) MempoolTxids(ctx context.Context) ([]chainhash.Hash, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	recs := make([]*mempoolRecord, 0, len(c.mempool))
	for _, r := range c.mempool {
		recs = append(recs, r)
	}
	c.mu.RUnlock()
	sortMempool(recs)
	ids := make([]chainhash.Hash, len(recs))
	for i, r := range recs {
		ids[i] = r.tx.TxHash()
	}
	return ids, nil
}

// MempoolEntry returns a mempool transaction with its fee and vsize.
func (c *Chain) MempoolEntry(ctx context.Context, txid chainhash.Hash) (hub.MempoolEntry, error) {
	if err := c.ready(ctx); err != nil {
		return hub.MempoolEntry{}, err
	}
	c.mu.RLock()
	r, ok := c.mempool[txid]
	c.mu.RUnlock()
	if !ok {
		return hub.MempoolEntry{}, fmt.Errorf("devchain: mempool transaction %s: %w", txid, hub.ErrNotFound)
	}
	return hub.MempoolEntry{Tx: r.tx.Copy(), Fee: r.fee, VSize: r.vsize, TimeUnix: r.added}, nil
}
