package devchain

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/big"
	"sort"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

const (
	// blockVersion is the BIP9 top-bits version with no deployment bit set.
	blockVersion = 0x20000000
	// baseSubsidy is the first block reward, 50 BTC in satoshis.
	baseSubsidy = 50 * 100_000_000
)

// coinbaseTag follows the BIP34 height in every coinbase scriptSig.
var coinbaseTag = []byte("/blvm-devchain/")

// pending is the in-memory state a writer builds while it writes bbolt; it
// replaces the Chain's state only after the bbolt transaction commits.
type pending struct {
	tip     tipState
	times   []int64
	mempool map[chainhash.Hash]*mempoolRecord
	spent   map[wire.OutPoint]chainhash.Hash
	events  []hub.NodeEvent
}

// pendingFromChain copies the current state. The caller holds writeMu, so no
// one else changes it meanwhile.
func (c *Chain) pendingFromChain() *pending {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p := &pending{
		tip:     c.tip,
		times:   append([]int64(nil), c.recentTimes...),
		mempool: make(map[chainhash.Hash]*mempoolRecord, len(c.mempool)),
		spent:   make(map[wire.OutPoint]chainhash.Hash, len(c.mempoolSpent)),
	}
	p.tip.chainwork = new(big.Int).Set(c.tip.chainwork)
	for k, v := range c.mempool {
		p.mempool[k] = v
	}
	for k, v := range c.mempoolSpent {
		p.spent[k] = v
	}
	return p
}

func (c *Chain) install(p *pending) {
	c.mu.Lock()
	c.tip = p.tip
	c.recentTimes = p.times
	c.mempool = p.mempool
	c.mempoolSpent = p.spent
	c.mu.Unlock()
}

// MineBlock mines one block on the tip now, with every mempool transaction,
// stores it, and then puts the next wallet transactions in the mempool. It
// returns the block as stored.
func (c *Chain) MineBlock(ctx context.Context) (*wire.MsgBlock, error) {
	var blk *wire.MsgBlock
	err := c.write(func() ([]hub.NodeEvent, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := c.pendingFromChain()
		now := c.opts.Now()
		err := c.db.Update(func(tx *bolt.Tx) error {
			var err error
			blk, err = c.mineNext(ctx, tx, p, now)
			if err != nil {
				return err
			}
			return c.createWalletTxs(tx, p, now)
		})
		if err != nil {
			blk = nil
			return nil, fmt.Errorf("devchain: mine block %d: %w", p.tip.height+1, err)
		}
		c.install(p)
		hash := blk.BlockHash()
		c.log.Debug("mined block", "height", p.tip.height, "hash", hash, "txs", len(blk.Transactions))
		return p.events, nil
	})
	return blk, err
}

// bootstrap mines InitialBlocks blocks on the genesis block, seeds the
// governance proposals, and creates the first wallet transactions, all in
// the caller's bbolt transaction (one fsync). Nobody can have subscribed
// yet, so p's events are dropped.
func (c *Chain) bootstrap(tx *bolt.Tx, p *pending) error {
	now := c.opts.Now()
	for i := 1; i <= InitialBlocks; i++ {
		// Backdated one second apart so that the last one is now and the
		// blocks Run mines next need not run ahead of the clock.
		ts := now.Add(-time.Duration(InitialBlocks-i) * time.Second)
		if _, err := c.mineNext(context.Background(), tx, p, ts); err != nil {
			return fmt.Errorf("mine initial block %d: %w", i, err)
		}
	}
	if err := c.seedProposals(tx, p); err != nil {
		return err
	}
	return c.createWalletTxs(tx, p, now)
}

// storeGenesis stores the regtest genesis block at height 0 and returns the
// state with it as the tip. Its coinbase output is not added to the UTXO
// set: it is unspendable, as on every Bitcoin network.
func (c *Chain) storeGenesis(tx *bolt.Tx) (*pending, error) {
	g := c.params.GenesisBlock
	hash := g.BlockHash()
	if hash != *c.params.GenesisHash {
		return nil, fmt.Errorf("genesis block hashes to %s, want %s", hash, c.params.GenesisHash)
	}
	rec, err := encodeBlock(0, g)
	if err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketBlocks).Put(hash[:], rec); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketHeights).Put(u64(0), hash[:]); err != nil {
		return nil, err
	}
	cb := g.Transactions[0].TxHash()
	if err := tx.Bucket(bucketTxIndex).Put(cb[:], append(hash[:], 0, 0, 0, 0)); err != nil {
		return nil, err
	}
	work := blockWork(g.Header.Bits)
	if err := writeTip(tx, tipRecord{hash: hash, height: 0, chainwork: work}); err != nil {
		return nil, err
	}
	return &pending{
		tip:     tipState{hash: hash, height: 0, header: g.Header, chainwork: new(big.Int).Set(work)},
		times:   []int64{g.Header.Timestamp.Unix()},
		mempool: make(map[chainhash.Hash]*mempoolRecord),
		spent:   make(map[wire.OutPoint]chainhash.Hash),
	}, nil
}

// mineNext builds a block on p's tip with every transaction in p's mempool,
// solves its proof of work, and connects it.
func (c *Chain) mineNext(ctx context.Context, tx *bolt.Tx, p *pending, now time.Time) (*wire.MsgBlock, error) {
	height := p.tip.height + 1
	txs, fees := p.blockTemplate()
	coinbase, err := c.coinbaseTx(height, subsidy(height, c.params.SubsidyReductionInterval)+fees)
	if err != nil {
		return nil, err
	}
	all := append([]*wire.MsgTx{coinbase}, txs...)
	var reserved [32]byte // the witness reserved value, all zero as in Core
	commitment := witnessCommitment(all, reserved)
	coinbase.TxIn[0].Witness = wire.TxWitness{reserved[:]}
	coinbase.AddTxOut(wire.NewTxOut(0, append([]byte{txscript.OP_RETURN, txscript.OP_DATA_36},
		append(append([]byte(nil), witnessCommitmentMagic...), commitment[:]...)...)))

	// Timestamps strictly increase, which keeps every block above the
	// median time past of the 11 before it.
	ts := now.Truncate(time.Second)
	if prev := p.tip.header.Timestamp; !ts.After(prev) {
		ts = prev.Add(time.Second)
	}
	blk := &wire.MsgBlock{
		Header: wire.BlockHeader{
			Version:    blockVersion,
			PrevBlock:  p.tip.hash,
			MerkleRoot: txMerkleRoot(all),
			Timestamp:  ts,
			Bits:       c.params.PowLimitBits,
		},
		Transactions: all,
	}
	if err := solve(ctx, &blk.Header); err != nil {
		return nil, err
	}
	if err := c.connectBlock(tx, p, blk); err != nil {
		return nil, err
	}
	return blk, nil
}

// blockTemplate is every mempool transaction, oldest first, and their fees.
// The wallet never spends unconfirmed outputs, so any order is valid.
func (p *pending) blockTemplate() ([]*wire.MsgTx, int64) {
	recs := make([]*mempoolRecord, 0, len(p.mempool))
	for _, r := range p.mempool {
		recs = append(recs, r)
	}
	sortMempool(recs)
	txs := make([]*wire.MsgTx, len(recs))
	var fees int64
	for i, r := range recs {
		txs[i] = r.tx
		fees += r.fee
	}
	return txs, fees
}

func sortMempool(recs []*mempoolRecord) {
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].added != recs[j].added {
			return recs[i].added < recs[j].added
		}
		a, b := recs[i].tx.TxHash(), recs[j].tx.TxHash()
		return bytes.Compare(a[:], b[:]) < 0
	})
}

// subsidy is the block reward at height: 50 BTC halved every interval blocks.
func subsidy(height uint64, interval int32) int64 {
	halvings := height / uint64(interval)
	if halvings >= 64 {
		return 0
	}
	return baseSubsidy >> halvings
}

// coinbaseTx pays value to the wallet. Its scriptSig starts with the height
// as BIP34 requires (a minimal script number push).
func (c *Chain) coinbaseTx(height uint64, value int64) (*wire.MsgTx, error) {
	if height > math.MaxInt32 {
		return nil, fmt.Errorf("height %d out of range", height)
	}
	sigScript, err := txscript.NewScriptBuilder().AddInt64(int64(height)).AddData(coinbaseTag).Script()
	if err != nil {
		return nil, fmt.Errorf("coinbase script: %w", err)
	}
	cb := wire.NewMsgTx(2)
	cb.AddTxIn(&wire.TxIn{
		PreviousOutPoint: wire.OutPoint{Index: wire.MaxPrevOutIndex},
		SignatureScript:  sigScript,
		Sequence:         wire.MaxTxInSequenceNum,
	})
	cb.AddTxOut(wire.NewTxOut(value, c.walletScript))
	return cb, nil
}

// solve iterates the nonce, and the timestamp when the nonces run out, until
// the header's hash is at or below its target.
func solve(ctx context.Context, h *wire.BlockHeader) error {
	target := compactToTarget(h.Bits)
	if target == nil || target.Sign() <= 0 {
		return fmt.Errorf("bits %08x encode no valid target", h.Bits)
	}
	for {
		for nonce := uint64(0); nonce <= math.MaxUint32; nonce++ {
			if nonce%(1<<16) == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			h.Nonce = uint32(nonce)
			if hashToInt(h.BlockHash()).Cmp(target) <= 0 {
				return nil
			}
		}
		h.Timestamp = h.Timestamp.Add(time.Second)
	}
}

// connectBlock stores blk as the new tip: block and height index, txindex,
// UTXO changes with their undo record, mempool removals, and p's events.
func (c *Chain) connectBlock(tx *bolt.Tx, p *pending, blk *wire.MsgBlock) error {
	height := p.tip.height + 1
	hash := blk.BlockHash()
	rec, err := encodeBlock(height, blk)
	if err != nil {
		return fmt.Errorf("encode block: %w", err)
	}
	if err := tx.Bucket(bucketBlocks).Put(hash[:], rec); err != nil {
		return err
	}
	if err := tx.Bucket(bucketHeights).Put(u64(height), hash[:]); err != nil {
		return err
	}
	utxos, wallet, txindex := tx.Bucket(bucketUtxo), tx.Bucket(bucketWallet), tx.Bucket(bucketTxIndex)
	mempoolB := tx.Bucket(bucketMempool)
	var undo []spentOutput
	var removed []hub.NodeEvent
	for i, t := range blk.Transactions {
		txid := t.TxHash()
		loc := make([]byte, 36)
		copy(loc, hash[:])
		loc[32], loc[33], loc[34], loc[35] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if err := txindex.Put(txid[:], loc); err != nil {
			return err
		}
		if i > 0 {
			for n, in := range t.TxIn {
				k := outpointKey(in.PreviousOutPoint)
				v := utxos.Get(k)
				if v == nil {
					return fmt.Errorf("tx %s input %d spends %s, which is not unspent", txid, n, in.PreviousOutPoint)
				}
				e, err := decodeUtxo(v)
				if err != nil {
					return fmt.Errorf("utxo %s: %w", in.PreviousOutPoint, err)
				}
				if e.Coinbase && height-e.Height < uint64(c.params.CoinbaseMaturity) {
					return fmt.Errorf("tx %s input %d spends coinbase %s of height %d before maturity", txid, n, in.PreviousOutPoint, e.Height)
				}
				undo = append(undo, spentOutput{op: in.PreviousOutPoint, entry: e})
				if err := utxos.Delete(k); err != nil {
					return err
				}
				if err := wallet.Delete(walletKey(e.Height, in.PreviousOutPoint)); err != nil {
					return err
				}
			}
		}
		for n, out := range t.TxOut {
			if txscript.IsUnspendable(out.PkScript) {
				continue
			}
			op := wire.OutPoint{Hash: txid, Index: uint32(n)}
			e := hub.UtxoEntry{Value: out.Value, PkScript: out.PkScript, Height: height, Coinbase: i == 0}
			if err := utxos.Put(outpointKey(op), encodeUtxo(e)); err != nil {
				return err
			}
			if c.isWalletCoin(e) {
				if err := wallet.Put(walletKey(height, op), []byte{}); err != nil {
					return err
				}
			}
		}
		if i > 0 {
			if r, ok := p.mempool[txid]; ok {
				p.removeFromMempool(txid, r)
				if err := mempoolB.Delete(txid[:]); err != nil {
					return err
				}
				removed = append(removed, hub.NodeEvent{Kind: hub.MempoolTransactionRemoved, Txid: txid})
			}
		}
	}
	if err := tx.Bucket(bucketUndo).Put(hash[:], encodeUndo(undo)); err != nil {
		return err
	}
	work := new(big.Int).Add(p.tip.chainwork, blockWork(blk.Header.Bits))
	if err := writeTip(tx, tipRecord{hash: hash, height: height, chainwork: work}); err != nil {
		return err
	}
	p.tip = tipState{hash: hash, height: height, header: blk.Header, chainwork: work}
	p.times = append(p.times, blk.Header.Timestamp.Unix())
	if len(p.times) > medianTimeBlocks {
		p.times = p.times[len(p.times)-medianTimeBlocks:]
	}
	hdr := blk.Header
	p.events = append(p.events, hub.NodeEvent{Kind: hub.BlockConnected, Hash: hash, Height: height, Header: &hdr})
	p.events = append(p.events, removed...)
	return c.closeProposals(tx, p, height)
}

func (p *pending) removeFromMempool(txid chainhash.Hash, r *mempoolRecord) {
	delete(p.mempool, txid)
	for _, in := range r.tx.TxIn {
		if p.spent[in.PreviousOutPoint] == txid {
			delete(p.spent, in.PreviousOutPoint)
		}
	}
}

func (p *pending) addToMempool(txid chainhash.Hash, r *mempoolRecord) {
	p.mempool[txid] = r
	for _, in := range r.tx.TxIn {
		p.spent[in.PreviousOutPoint] = txid
	}
}
