package devchain

import (
	"context"
	"reflect"
	"testing"

	"github.com/btcsuite/btcd/wire/v2"
)

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	c, path := openTest(t, Options{Now: clock.Now})
	mine(t, c, 5)
	if _, err := c.CastVote(ctx, "alice", "softfork-signal-demo", "yes"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CastVote(ctx, "bob", "softfork-signal-demo", "no"); err != nil {
		t.Fatal(err)
	}
	tipHash, tip, _ := c.ChainTip(ctx)
	info, _ := c.ChainInfo(ctx)
	mempool, _ := c.MempoolTxids(ctx)
	blk, _, _ := c.Block(ctx, tipHash)
	coinbase := wire.OutPoint{Hash: blk.Transactions[0].TxHash()}
	utxo, err := c.Utxo(ctx, coinbase)
	if err != nil {
		t.Fatal(err)
	}
	props, _ := c.Proposals(ctx)
	results, _ := c.Results(ctx, "softfork-signal-demo")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c2, err := Open(path, Options{Now: clock.Now})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer c2.Close()
	tipHash2, tip2, _ := c2.ChainTip(ctx)
	if tipHash2 != tipHash || tip2 != tip {
		t.Fatalf("reopened tip %s@%d, want %s@%d", tipHash2, tip2, tipHash, tip)
	}
	if info2, _ := c2.ChainInfo(ctx); info2 != info {
		t.Fatalf("reopened ChainInfo %+v, want %+v", info2, info)
	}
	if m2, _ := c2.MempoolTxids(ctx); !reflect.DeepEqual(m2, mempool) {
		t.Fatalf("reopened mempool %v, want %v", m2, mempool)
	}
	if u2, err := c2.Utxo(ctx, coinbase); err != nil || !reflect.DeepEqual(u2, utxo) {
		t.Fatalf("reopened utxo %+v, %v; want %+v", u2, err, utxo)
	}
	if p2, _ := c2.Proposals(ctx); !reflect.DeepEqual(p2, props) {
		t.Fatalf("reopened proposals %+v, want %+v", p2, props)
	}
	if r2, _ := c2.Results(ctx, "softfork-signal-demo"); !reflect.DeepEqual(r2, results) {
		t.Fatalf("reopened results %+v, want %+v", r2, results)
	}
	// The wallet key survived too: the reopened chain can spend what the
	// first one created, and its blocks stay valid.
	mine(t, c2, 3)
	if _, h, _ := c2.ChainTip(ctx); h != tip+3 {
		t.Fatalf("height %d after 3 more blocks, want %d", h, tip+3)
	}
	if n := checkChain(t, c2); n == 0 {
		t.Fatal("no wallet transactions on the reopened chain")
	}
}
