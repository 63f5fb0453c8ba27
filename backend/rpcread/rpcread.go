// Package rpcread reads chain state from a node that speaks Bitcoin
// Core-compatible JSON-RPC (btcd, Bitcoin Core) and turns the replies into
// the hub's types. It owns no transport: each driver supplies a Caller that
// makes one call and maps the node's errors, so the readers are written
// once for every such node.
package rpcread

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcutil/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Caller makes one JSON-RPC call and decodes its result into out (nil: the
// result is dropped). It returns hub.ErrNotFound for the node's "no such
// block, transaction or height" and hub.ErrNodeUnavailable for a node that
// is down or did not answer in time, wrapped with the method.
type Caller interface {
	Call(ctx context.Context, out any, method string, params ...any) error
}

// Told answers, without asking the node, whether a block is on the chain
// the modules were told about and at what height, and which block is at a
// height of it (chainsync.Tracker).
type Told interface {
	Lookup(hash chainhash.Hash) (uint64, wire.BlockHeader, bool)
	HashAt(height uint64) (chainhash.Hash, bool)
}

// Reader is the part of hub.Backend that every JSON-RPC node answers alike.
type Reader struct {
	Caller Caller
	// Told, if set, answers for the blocks the modules were told about
	// (best-chain checks, heights, headers, the hash at a height) while Up
	// says the node is reachable: the told chain follows the node's
	// notifications, so it is at most the notifications in flight behind
	// it, and never ahead of what a module was told. Off it, or while the
	// node is down, the node is asked.
	Told Told
	Up   func() bool
	// Node names the node in decoding errors ("btcd", "bitcoind").
	Node string
}

// ParseHash parses a hash as a node prints it.
func ParseHash(s string) (chainhash.Hash, error) {
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("hash %q: %w", s, err)
	}
	return *h, nil
}

// Sats converts a BTC amount as the node prints it (a JSON number with 8
// decimals) to satoshis, refusing what no output can hold.
func Sats(btc float64) (int64, error) {
	amt, err := btcutil.NewAmount(btc)
	if err != nil {
		return 0, fmt.Errorf("amount %v: %w", btc, err)
	}
	if amt < 0 || amt > btcutil.MaxSatoshi {
		return 0, fmt.Errorf("amount %v out of range", btc)
	}
	return int64(amt), nil
}

// ChainInfoReply is the part of getblockchaininfo both nodes answer.
type ChainInfoReply struct {
	Chain         string `json:"chain"`
	Blocks        int64  `json:"blocks"`
	BestBlockHash string `json:"bestblockhash"`
	MedianTime    int64  `json:"mediantime"`
	// Chainwork is hex with leading zeros; btcd leaves it out.
	Chainwork string `json:"chainwork"`
}

// ChainInfo is getblockchaininfo and the best block's header (for its
// bits). Chainwork is as the node reports it, without leading zeros: empty
// if the node does not report it.
func (r Reader) ChainInfo(ctx context.Context) (hub.ChainInfo, error) {
	var c ChainInfoReply
	if err := r.Caller.Call(ctx, &c, "getblockchaininfo"); err != nil {
		return hub.ChainInfo{}, err
	}
	best, err := ParseHash(c.BestBlockHash)
	if err != nil {
		return hub.ChainInfo{}, err
	}
	hdr, err := r.header(ctx, best)
	if err != nil {
		return hub.ChainInfo{}, err
	}
	work := strings.TrimLeft(c.Chainwork, "0")
	if work == "" && c.Chainwork != "" {
		work = "0"
	}
	return hub.ChainInfo{Network: c.Chain, Height: uint64(c.Blocks), BestHash: best, Bits: hdr.Bits, MedianTime: c.MedianTime, Chainwork: work}, nil
}

func (r Reader) told() Told {
	if r.Told == nil || (r.Up != nil && !r.Up()) {
		return nil
	}
	return r.Told
}

// BlockHash is the told chain's hash at height, else getblockhash.
func (r Reader) BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error) {
	if t := r.told(); t != nil {
		if h, ok := t.HashAt(height); ok {
			return h, nil
		}
	}
	var s string
	if err := r.Caller.Call(ctx, &s, "getblockhash", height); err != nil {
		return chainhash.Hash{}, err
	}
	return ParseHash(s)
}

// BestHeight is the height of hash if it is on the best chain, else
// hub.ErrNotFound: from Told when the modules were told about it, else from
// the node (btcd refuses a side-chain block, Core answers it with
// confirmations -1).
func (r Reader) BestHeight(ctx context.Context, hash chainhash.Hash) (uint64, error) {
	if t := r.told(); t != nil {
		if h, _, ok := t.Lookup(hash); ok {
			return h, nil
		}
	}
	var v struct {
		Height        int64 `json:"height"`
		Confirmations int64 `json:"confirmations"`
	}
	if err := r.Caller.Call(ctx, &v, "getblockheader", hash.String(), true); err != nil {
		return 0, err
	}
	if v.Confirmations < 1 || v.Height < 0 {
		return 0, fmt.Errorf("block %s: %w (off the best chain)", hash, hub.ErrNotFound)
	}
	return uint64(v.Height), nil
}

// Header is any known block's header, on the best chain or not, checked
// against the hash it was asked for.
func (r Reader) Header(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error) {
	return r.header(ctx, hash)
}

func (r Reader) header(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error) {
	var s string
	if err := r.Caller.Call(ctx, &s, "getblockheader", hash.String(), false); err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: header %s: %w", r.Node, hash, err)
	}
	var h wire.BlockHeader
	if err := h.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("%s: header %s: %w", r.Node, hash, err)
	}
	if h.BlockHash() != hash {
		return nil, fmt.Errorf("%s: header asked for %s hashes to %s", r.Node, hash, h.BlockHash())
	}
	return &h, nil
}

// Block is a block on the best chain and its height: one getblock when
// Told knows the block, else getblock and the best-chain check at once.
func (r Reader) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, uint64, error) {
	type hres struct {
		h   uint64
		err error
	}
	hc := make(chan hres, 1)
	if t := r.told(); t != nil {
		if h, _, ok := t.Lookup(hash); ok {
			hc <- hres{h, nil}
		}
	}
	if len(hc) == 0 {
		// Both requests in flight at once.
		go func() { h, err := r.BestHeight(ctx, hash); hc <- hres{h, err} }()
	}
	var s string
	rawErr := r.Caller.Call(ctx, &s, "getblock", hash.String(), 0)
	hr := <-hc
	if hr.err != nil {
		return nil, 0, hr.err
	}
	if rawErr != nil {
		return nil, 0, rawErr
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: block %s: %w", r.Node, hash, err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, 0, fmt.Errorf("%s: block %s: %w", r.Node, hash, err)
	}
	if blk.BlockHash() != hash {
		return nil, 0, fmt.Errorf("%s: block asked for %s hashes to %s", r.Node, hash, blk.BlockHash())
	}
	return &blk, hr.h, nil
}

// BlockHeader is a best-chain block's header and height; a block the
// modules were told about is answered without a read.
func (r Reader) BlockHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, uint64, error) {
	if t := r.told(); t != nil {
		if h, hdr, ok := t.Lookup(hash); ok {
			return &hdr, h, nil
		}
	}
	height, err := r.BestHeight(ctx, hash)
	if err != nil {
		return nil, 0, err
	}
	h, err := r.header(ctx, hash)
	return h, height, err
}

// RawTransaction is getrawtransaction, decoded.
func (r Reader) RawTransaction(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	var s string
	if err := r.Caller.Call(ctx, &s, "getrawtransaction", txid.String(), 0); err != nil {
		return nil, err
	}
	return r.decodeTx(txid, s)
}

func (r Reader) decodeTx(txid chainhash.Hash, s string) (*wire.MsgTx, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: transaction %s: %w", r.Node, txid, err)
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("%s: transaction %s: %w", r.Node, txid, err)
	}
	return &tx, nil
}

// Transaction is a mempool or confirmed transaction (a confirmed one needs
// the node's txindex) and where it is.
func (r Reader) Transaction(ctx context.Context, txid chainhash.Hash) (hub.TxInfo, error) {
	var v struct {
		Hex           string `json:"hex"`
		BlockHash     string `json:"blockhash"`
		Confirmations uint64 `json:"confirmations"`
	}
	if err := r.Caller.Call(ctx, &v, "getrawtransaction", txid.String(), 1); err != nil {
		return hub.TxInfo{}, err
	}
	tx, err := r.decodeTx(txid, v.Hex)
	if err != nil {
		return hub.TxInfo{}, err
	}
	info := hub.TxInfo{Tx: tx, Confirmations: v.Confirmations}
	if v.BlockHash == "" {
		return info, nil
	}
	bh, err := ParseHash(v.BlockHash)
	if err != nil {
		return hub.TxInfo{}, err
	}
	height, err := r.BestHeight(ctx, bh)
	if err != nil {
		return hub.TxInfo{}, err
	}
	info.Block, info.Height = &bh, height
	return info, nil
}

// Utxo is gettxout without the mempool: an output on the best chain.
func (r Reader) Utxo(ctx context.Context, op wire.OutPoint) (hub.UtxoEntry, error) {
	var v *struct {
		BestBlock     string  `json:"bestblock"`
		Confirmations int64   `json:"confirmations"`
		Value         float64 `json:"value"`
		ScriptPubKey  struct {
			Hex string `json:"hex"`
		} `json:"scriptPubKey"`
		Coinbase bool `json:"coinbase"`
	}
	if err := r.Caller.Call(ctx, &v, "gettxout", op.Hash.String(), op.Index, false); err != nil {
		return hub.UtxoEntry{}, err
	}
	if v == nil {
		return hub.UtxoEntry{}, fmt.Errorf("outpoint %s: %w", op, hub.ErrNotFound)
	}
	best, err := ParseHash(v.BestBlock)
	if err != nil {
		return hub.UtxoEntry{}, err
	}
	bestHeight, err := r.BestHeight(ctx, best)
	if err != nil {
		return hub.UtxoEntry{}, err
	}
	amt, err := Sats(v.Value)
	if err != nil {
		return hub.UtxoEntry{}, fmt.Errorf("%s: outpoint %s: %w", r.Node, op, err)
	}
	script, err := hex.DecodeString(v.ScriptPubKey.Hex)
	if err != nil {
		return hub.UtxoEntry{}, fmt.Errorf("%s: outpoint %s script: %w", r.Node, op, err)
	}
	e := hub.UtxoEntry{Value: amt, PkScript: script, Coinbase: v.Coinbase}
	if v.Confirmations > 0 && uint64(v.Confirmations) <= bestHeight+1 {
		e.Height = bestHeight + 1 - uint64(v.Confirmations)
	}
	return e, nil
}

// MempoolTxids is getrawmempool.
func (r Reader) MempoolTxids(ctx context.Context) ([]chainhash.Hash, error) {
	var ids []string
	if err := r.Caller.Call(ctx, &ids, "getrawmempool", false); err != nil {
		return nil, err
	}
	out := make([]chainhash.Hash, 0, len(ids))
	for _, s := range ids {
		h, err := ParseHash(s)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}
