package btcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"

	"github.com/blvm/blvm-sandbox/backend/rpcread"
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

// caller is the driver as rpcread calls it.
type caller struct{ d *Driver }

func (c caller) Call(ctx context.Context, out any, method string, params ...any) error {
	return c.d.call(ctx, out, method, params...)
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
	h, err := rpcread.ParseHash(r.Hash)
	return h, uint64(r.Height), err
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
	tx, err := d.RawTransaction(ctx, txid)
	if err != nil {
		return hub.MempoolEntry{}, err
	}
	fee, err := rpcread.Sats(e.Fee)
	if err != nil {
		return hub.MempoolEntry{}, fmt.Errorf("btcd: mempool transaction %s fee: %w", txid, err)
	}
	return hub.MempoolEntry{Tx: tx, Fee: fee, VSize: uint64(e.Vsize), TimeUnix: e.Time}, nil
}

var _ hub.Backend = (*Driver)(nil)
