package btcd

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/btcutil/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// awaitFuture waits for an rpcclient future within ctx and the call
// timeout. rpcclient's futures block without a deadline; this takes the
// reply off the channel itself, puts it back and lets rpcclient decode it.
func (d *Driver) awaitFuture(ctx context.Context, ch chan *rpcclient.Response, out any) error {
	tctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
	defer cancel()
	select {
	case r := <-ch:
		ch <- r
	case <-tctx.Done():
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("btcd at %s did not answer within %s: %w", d.cfg.Host, d.cfg.CallTimeout, hub.ErrNodeUnavailable)
	}
	raw, err := rpcclient.ReceiveFuture(ch)
	if err != nil {
		return mapErr(err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("btcd: decode reply: %w", err)
	}
	return nil
}

func (d *Driver) callOn(ctx context.Context, c *rpcclient.Client, out any, method string, params ...any) error {
	raw := make([]json.RawMessage, len(params))
	for i, p := range params {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		raw[i] = b
	}
	if err := d.awaitFuture(ctx, c.RawRequestAsync(method, raw), out); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

func (d *Driver) call(ctx context.Context, out any, method string, params ...any) error {
	c, err := d.current()
	if err != nil {
		return err
	}
	return d.callOn(ctx, c, out, method, params...)
}

// mapErr turns btcd's "no such thing" codes into hub.ErrNotFound and a
// lost connection into hub.ErrNodeUnavailable.
func mapErr(err error) error {
	var rpcErr *btcjson.RPCError
	if errors.As(err, &rpcErr) {
		switch rpcErr.Code {
		case btcjson.ErrRPCInvalidAddressOrKey, btcjson.ErrRPCInvalidParameter, btcjson.ErrRPCOutOfRange:
			return fmt.Errorf("%w: %s", hub.ErrNotFound, rpcErr.Message)
		case btcjson.ErrRPCInternal.Code:
			// btcd answers a block off the best chain this way.
			if strings.Contains(rpcErr.Message, "not in the main chain") || strings.Contains(rpcErr.Message, "not found") {
				return fmt.Errorf("%w: %s", hub.ErrNotFound, rpcErr.Message)
			}
		}
		return err
	}
	if errors.Is(err, rpcclient.ErrClientDisconnect) || errors.Is(err, rpcclient.ErrClientShutdown) || errors.Is(err, rpcclient.ErrClientNotConnected) {
		return fmt.Errorf("%w: %v", hub.ErrNodeUnavailable, err)
	}
	return err
}

func parseHash(s string) (chainhash.Hash, error) {
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("btcd: hash %q: %w", s, err)
	}
	return *h, nil
}

// ChainTip is btcd's getbestblock: hash and height in one answer.
func (d *Driver) ChainTip(ctx context.Context) (chainhash.Hash, uint64, error) {
	var r struct {
		Hash   string `json:"hash"`
		Height int32  `json:"height"`
	}
	if err := d.call(ctx, &r, "getbestblock"); err != nil {
		return chainhash.Hash{}, 0, err
	}
	h, err := parseHash(r.Hash)
	return h, uint64(r.Height), err
}

func (d *Driver) ChainInfo(ctx context.Context) (hub.ChainInfo, error) {
	var r btcjson.GetBlockChainInfoResult
	if err := d.call(ctx, &r, "getblockchaininfo"); err != nil {
		return hub.ChainInfo{}, err
	}
	best, err := parseHash(r.BestBlockHash)
	if err != nil {
		return hub.ChainInfo{}, err
	}
	hdr, _, err := d.BlockHeader(ctx, best)
	if err != nil {
		return hub.ChainInfo{}, err
	}
	// btcd's getblockchaininfo carries no chainwork: left empty then.
	work := strings.TrimLeft(r.ChainWork, "0")
	if work == "" && r.ChainWork != "" {
		work = "0"
	}
	return hub.ChainInfo{Network: r.Chain, Height: uint64(r.Blocks), BestHash: best, Bits: hdr.Bits, MedianTime: r.MedianTime, Chainwork: work}, nil
}

func (d *Driver) BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error) {
	var s string
	if err := d.call(ctx, &s, "getblockhash", height); err != nil {
		return chainhash.Hash{}, err
	}
	return parseHash(s)
}

// bestHeight is the height of hash if it is on the best chain, else
// hub.ErrNotFound.
func (d *Driver) bestHeight(ctx context.Context, hash chainhash.Hash) (uint64, error) {
	var r btcjson.GetBlockHeaderVerboseResult
	if err := d.call(ctx, &r, "getblockheader", hash.String(), true); err != nil {
		return 0, err
	}
	// btcd refuses a side-chain block here ("not in the main chain", mapped
	// to ErrNotFound); a node that answers one says so with confirmations.
	if r.Confirmations < 1 || r.Height < 0 {
		return 0, fmt.Errorf("block %s: %w (off the best chain)", hash, hub.ErrNotFound)
	}
	return uint64(r.Height), nil
}

func (d *Driver) rawHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error) {
	var s string
	if err := d.call(ctx, &s, "getblockheader", hash.String(), false); err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("btcd: header %s: %w", hash, err)
	}
	var h wire.BlockHeader
	if err := h.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("btcd: header %s: %w", hash, err)
	}
	return &h, nil
}

func (d *Driver) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, uint64, error) {
	// Both requests in flight at once over the one websocket.
	type hres struct {
		h   uint64
		err error
	}
	hc := make(chan hres, 1)
	go func() { h, err := d.bestHeight(ctx, hash); hc <- hres{h, err} }()
	var s string
	rawErr := d.call(ctx, &s, "getblock", hash.String(), 0)
	hr := <-hc
	if hr.err != nil {
		return nil, 0, hr.err
	}
	if rawErr != nil {
		return nil, 0, rawErr
	}
	height := hr.h
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, 0, fmt.Errorf("btcd: block %s: %w", hash, err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, 0, fmt.Errorf("btcd: block %s: %w", hash, err)
	}
	return &blk, height, nil
}

func (d *Driver) BlockHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, uint64, error) {
	height, err := d.bestHeight(ctx, hash)
	if err != nil {
		return nil, 0, err
	}
	h, err := d.rawHeader(ctx, hash)
	return h, height, err
}

func decodeTx(s string) (*wire.MsgTx, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, err
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, err
	}
	return &tx, nil
}

// Transaction needs btcd's --txindex for confirmed transactions.
func (d *Driver) Transaction(ctx context.Context, txid chainhash.Hash) (hub.TxInfo, error) {
	var r btcjson.TxRawResult
	if err := d.call(ctx, &r, "getrawtransaction", txid.String(), 1); err != nil {
		return hub.TxInfo{}, err
	}
	tx, err := decodeTx(r.Hex)
	if err != nil {
		return hub.TxInfo{}, fmt.Errorf("btcd: transaction %s: %w", txid, err)
	}
	info := hub.TxInfo{Tx: tx, Confirmations: r.Confirmations}
	if r.BlockHash == "" {
		return info, nil
	}
	bh, err := parseHash(r.BlockHash)
	if err != nil {
		return hub.TxInfo{}, err
	}
	height, err := d.bestHeight(ctx, bh)
	if err != nil {
		return hub.TxInfo{}, err
	}
	info.Block, info.Height = &bh, height
	return info, nil
}

// Utxo is gettxout without the mempool: an output on the best chain.
func (d *Driver) Utxo(ctx context.Context, op wire.OutPoint) (hub.UtxoEntry, error) {
	var r *btcjson.GetTxOutResult
	if err := d.call(ctx, &r, "gettxout", op.Hash.String(), op.Index, false); err != nil {
		return hub.UtxoEntry{}, err
	}
	if r == nil {
		return hub.UtxoEntry{}, fmt.Errorf("outpoint %s: %w", op, hub.ErrNotFound)
	}
	best, err := parseHash(r.BestBlock)
	if err != nil {
		return hub.UtxoEntry{}, err
	}
	bestHeight, err := d.bestHeight(ctx, best)
	if err != nil {
		return hub.UtxoEntry{}, err
	}
	amt, err := btcutil.NewAmount(r.Value)
	if err != nil {
		return hub.UtxoEntry{}, fmt.Errorf("btcd: outpoint %s value %v: %w", op, r.Value, err)
	}
	script, err := hex.DecodeString(r.ScriptPubKey.Hex)
	if err != nil {
		return hub.UtxoEntry{}, fmt.Errorf("btcd: outpoint %s script: %w", op, err)
	}
	e := hub.UtxoEntry{Value: int64(amt), PkScript: script, Coinbase: r.Coinbase}
	if r.Confirmations > 0 && uint64(r.Confirmations) <= bestHeight+1 {
		e.Height = bestHeight + 1 - uint64(r.Confirmations)
	}
	return e, nil
}

func (d *Driver) MempoolTxids(ctx context.Context) ([]chainhash.Hash, error) {
	var ids []string
	if err := d.call(ctx, &ids, "getrawmempool", false); err != nil {
		return nil, err
	}
	out := make([]chainhash.Hash, 0, len(ids))
	for _, s := range ids {
		h, err := parseHash(s)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// MempoolEntry reads the verbose mempool (btcd has no getmempoolentry).
func (d *Driver) MempoolEntry(ctx context.Context, txid chainhash.Hash) (hub.MempoolEntry, error) {
	var pool map[string]btcjson.GetRawMempoolVerboseResult
	if err := d.call(ctx, &pool, "getrawmempool", true); err != nil {
		return hub.MempoolEntry{}, err
	}
	e, ok := pool[txid.String()]
	if !ok {
		return hub.MempoolEntry{}, fmt.Errorf("mempool transaction %s: %w", txid, hub.ErrNotFound)
	}
	var s string
	if err := d.call(ctx, &s, "getrawtransaction", txid.String(), 0); err != nil {
		return hub.MempoolEntry{}, err
	}
	tx, err := decodeTx(s)
	if err != nil {
		return hub.MempoolEntry{}, fmt.Errorf("btcd: transaction %s: %w", txid, err)
	}
	fee, err := btcutil.NewAmount(e.Fee)
	if err != nil {
		return hub.MempoolEntry{}, err
	}
	return hub.MempoolEntry{Tx: tx, Fee: int64(fee), VSize: uint64(e.Vsize), TimeUnix: e.Time}, nil
}

var _ hub.Backend = (*Driver)(nil)
