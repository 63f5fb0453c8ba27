package bitcoind

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Core's RPC error codes the driver maps (src/rpc/protocol.h).
const (
	codeInvalidAddressOrKey = -5  // no such block or transaction
	codeInvalidParameter    = -8  // e.g. block height out of range
	codeInWarmup            = -28 // still loading
)

// maxReply bounds a reply body: a 4 MB block is 8 MB of hex.
const maxReply = 64 << 20

// RPCError is an error object in a JSON-RPC reply.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("code %d: %s", e.Code, e.Message) }

type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
}

// call is a request to a node believed up; it fails fast while it is down.
func (d *Driver) call(ctx context.Context, out any, method string, params ...any) error {
	d.mu.Lock()
	ok, last := d.isUp, d.lastErr
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("bitcoind at %s: %s: %w: %v", d.cfg.URL, method, hub.ErrNodeUnavailable, last)
	}
	err := d.rawCall(ctx, out, method, params...)
	if errors.Is(err, hub.ErrNodeUnavailable) && ctx.Err() == nil {
		d.markDown(err)
	}
	return err
}

// rawCall posts one JSON-RPC 1.0 request (Core answers 1.0 errors with an
// HTTP 500 and the error object in the body). A transport failure, a
// timeout or a node still warming up is hub.ErrNodeUnavailable; Core's
// "no such block or transaction" is hub.ErrNotFound. Credentials go in the
// Authorization header only and are never part of an error.
func (d *Driver) rawCall(ctx context.Context, out any, method string, params ...any) error {
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(request{JSONRPC: "1.0", ID: d.nextID.Add(1), Method: method, Params: params})
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, d.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	req.SetBasicAuth(d.cfg.User, d.cfg.Pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// *url.Error carries the url (no credentials: they are not in it).
		return fmt.Errorf("%s: %w: %v", method, hub.ErrNodeUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return fmt.Errorf("%s: %w: reading the reply: %v", method, hub.ErrNodeUnavailable, err)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s: %w: bitcoind at %s refused the credentials (HTTP %d)", method, hub.ErrNodeUnavailable, d.cfg.URL, resp.StatusCode)
	case http.StatusServiceUnavailable:
		return fmt.Errorf("%s: %w: HTTP 503 (work queue full)", method, hub.ErrNodeUnavailable)
	}
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: HTTP %d, not a JSON-RPC reply: %w", method, resp.StatusCode, err)
	}
	if r.Error != nil {
		switch r.Error.Code {
		case codeInvalidAddressOrKey, codeInvalidParameter:
			return fmt.Errorf("%s: %w: %s", method, hub.ErrNotFound, r.Error.Message)
		case codeInWarmup:
			return fmt.Errorf("%s: %w: %s", method, hub.ErrNodeUnavailable, r.Error.Message)
		}
		return fmt.Errorf("%s: %w", method, r.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("%s: decode reply: %w", method, err)
	}
	return nil
}

func parseHash(s string) (chainhash.Hash, error) {
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("bitcoind: hash %q: %w", s, err)
	}
	return *h, nil
}

// sats converts Core's BTC amount (a JSON number with 8 decimals).
func sats(btc float64) (int64, error) {
	if math.IsNaN(btc) || math.IsInf(btc, 0) || btc < 0 || btc > 21e6 {
		return 0, fmt.Errorf("bitcoind: amount %v out of range", btc)
	}
	return int64(math.Round(btc * 1e8)), nil
}

type chainInfo struct {
	Chain         string  `json:"chain"`
	Blocks        int64   `json:"blocks"`
	BestBlockHash string  `json:"bestblockhash"`
	MedianTime    int64   `json:"mediantime"`
	Chainwork     string  `json:"chainwork"`
	Progress      float64 `json:"verificationprogress"`
}

// ChainTip reads hash and height from one getblockchaininfo answer, so the
// two always agree.
func (d *Driver) ChainTip(ctx context.Context) (chainhash.Hash, uint64, error) {
	var r chainInfo
	if err := d.call(ctx, &r, "getblockchaininfo"); err != nil {
		return chainhash.Hash{}, 0, err
	}
	h, err := parseHash(r.BestBlockHash)
	return h, uint64(r.Blocks), err
}

func (d *Driver) ChainInfo(ctx context.Context) (hub.ChainInfo, error) {
	var r chainInfo
	if err := d.call(ctx, &r, "getblockchaininfo"); err != nil {
		return hub.ChainInfo{}, err
	}
	best, err := parseHash(r.BestBlockHash)
	if err != nil {
		return hub.ChainInfo{}, err
	}
	hdr, err := d.rawHeader(ctx, best)
	if err != nil {
		return hub.ChainInfo{}, err
	}
	work := strings.TrimLeft(r.Chainwork, "0")
	if work == "" && r.Chainwork != "" {
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
// hub.ErrNotFound: Core answers a side-chain block with confirmations -1.
func (d *Driver) bestHeight(ctx context.Context, hash chainhash.Hash) (uint64, error) {
	var r struct {
		Height        int64 `json:"height"`
		Confirmations int64 `json:"confirmations"`
	}
	if err := d.call(ctx, &r, "getblockheader", hash.String(), true); err != nil {
		return 0, err
	}
	if r.Confirmations < 1 || r.Height < 0 {
		return 0, fmt.Errorf("block %s: %w (off the best chain)", hash, hub.ErrNotFound)
	}
	return uint64(r.Height), nil
}

// rawHeader is any known block's header, on the best chain or not.
func (d *Driver) rawHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error) {
	var s string
	if err := d.call(ctx, &s, "getblockheader", hash.String(), false); err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bitcoind: header %s: %w", hash, err)
	}
	var h wire.BlockHeader
	if err := h.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("bitcoind: header %s: %w", hash, err)
	}
	if h.BlockHash() != hash {
		return nil, fmt.Errorf("bitcoind: header asked for %s hashes to %s", hash, h.BlockHash())
	}
	return &h, nil
}

func (d *Driver) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, uint64, error) {
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
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, 0, fmt.Errorf("bitcoind: block %s: %w", hash, err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, 0, fmt.Errorf("bitcoind: block %s: %w", hash, err)
	}
	return &blk, hr.h, nil
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

// Transaction needs Core's -txindex for confirmed transactions.
func (d *Driver) Transaction(ctx context.Context, txid chainhash.Hash) (hub.TxInfo, error) {
	var r struct {
		Hex           string `json:"hex"`
		BlockHash     string `json:"blockhash"`
		Confirmations uint64 `json:"confirmations"`
	}
	if err := d.call(ctx, &r, "getrawtransaction", txid.String(), 1); err != nil {
		return hub.TxInfo{}, err
	}
	tx, err := decodeTx(r.Hex)
	if err != nil {
		return hub.TxInfo{}, fmt.Errorf("bitcoind: transaction %s: %w", txid, err)
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
	var r *struct {
		BestBlock     string  `json:"bestblock"`
		Confirmations uint64  `json:"confirmations"`
		Value         float64 `json:"value"`
		ScriptPubKey  struct {
			Hex string `json:"hex"`
		} `json:"scriptPubKey"`
		Coinbase bool `json:"coinbase"`
	}
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
	amt, err := sats(r.Value)
	if err != nil {
		return hub.UtxoEntry{}, fmt.Errorf("outpoint %s: %w", op, err)
	}
	script, err := hex.DecodeString(r.ScriptPubKey.Hex)
	if err != nil {
		return hub.UtxoEntry{}, fmt.Errorf("bitcoind: outpoint %s script: %w", op, err)
	}
	e := hub.UtxoEntry{Value: amt, PkScript: script, Coinbase: r.Coinbase}
	if r.Confirmations > 0 && r.Confirmations <= bestHeight+1 {
		e.Height = bestHeight + 1 - r.Confirmations
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

func (d *Driver) MempoolEntry(ctx context.Context, txid chainhash.Hash) (hub.MempoolEntry, error) {
	var e struct {
		VSize uint64 `json:"vsize"`
		Time  int64  `json:"time"`
		Fees  struct {
			Base float64 `json:"base"`
		} `json:"fees"`
	}
	if err := d.call(ctx, &e, "getmempoolentry", txid.String()); err != nil {
		return hub.MempoolEntry{}, err
	}
	var s string
	if err := d.call(ctx, &s, "getrawtransaction", txid.String(), 0); err != nil {
		return hub.MempoolEntry{}, err
	}
	tx, err := decodeTx(s)
	if err != nil {
		return hub.MempoolEntry{}, fmt.Errorf("bitcoind: transaction %s: %w", txid, err)
	}
	fee, err := sats(e.Fees.Base)
	if err != nil {
		return hub.MempoolEntry{}, fmt.Errorf("mempool transaction %s fee: %w", txid, err)
	}
	return hub.MempoolEntry{Tx: tx, Fee: fee, VSize: e.VSize, TimeUnix: e.Time}, nil
}
