package bitcoind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/backend/rpcread"
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

// caller is the driver as rpcread calls it.
type caller struct{ d *Driver }

func (c caller) Call(ctx context.Context, out any, method string, params ...any) error {
	return c.d.call(ctx, out, method, params...)
}

// ChainTip reads hash and height from one getblockchaininfo answer, so the
// two always agree.
func (d *Driver) ChainTip(ctx context.Context) (chainhash.Hash, uint64, error) {
	var r rpcread.ChainInfoReply
	if err := d.call(ctx, &r, "getblockchaininfo"); err != nil {
		return chainhash.Hash{}, 0, err
	}
	h, err := rpcread.ParseHash(r.BestBlockHash)
	return h, uint64(r.Blocks), err
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
	tx, err := d.RawTransaction(ctx, txid)
	if err != nil {
		return hub.MempoolEntry{}, err
	}
	fee, err := rpcread.Sats(e.Fees.Base)
	if err != nil {
		return hub.MempoolEntry{}, fmt.Errorf("mempool transaction %s fee: %w", txid, err)
	}
	return hub.MempoolEntry{Tx: tx, Fee: fee, VSize: e.VSize, TimeUnix: e.Time}, nil
}
