package hub_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// TestDevchainThroughHub runs the hub over the embedded dev chain: mined
// blocks arrive as events, and what the module reads back is the real block.
func TestDevchainThroughHub(t *testing.T) {
	dbDir, err := os.MkdirTemp("", "chain")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dbDir)
	chain, err := devchain.Open(filepath.Join(dbDir, "chain.db"), devchain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	e := newEnvWith(t, hub.Config{}, chain)
	c := e.module("block-logger", "read_blockchain", "read_utxo", "read_mempool", "subscribe_events")
	mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected"}}, pb.ErrorCode_OK)

	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := chain.MineBlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var last *pb.BlockEvent
	for i := 0; i < 3; i++ {
		ev := nextEvent(t, c, 5*time.Second)
		last = new(pb.BlockEvent)
		if err := proto.Unmarshal(ev.Payload, last); err != nil {
			t.Fatal(err)
		}
	}
	r := mustCall(t, c, 2, "chain.GetBlock", &pb.BlockHashParams{Hash: last.Hash}, pb.ErrorCode_OK)
	var b pb.Block
	proto.Unmarshal(r.Result, &b)
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
		t.Fatal(err)
	}
	if blk.BlockHash().String() != last.Hash || b.Header.Height != last.Height || b.Header.MerkleRoot != blk.Header.MerkleRoot.String() {
		t.Fatalf("block %s at %d, event %s at %d", blk.BlockHash(), b.Header.Height, last.Hash, last.Height)
	}
	r = mustCall(t, c, 3, "chain.GetTransaction", &pb.TxidParams{Txid: b.Txids[0]}, pb.ErrorCode_OK)
	var tx pb.Transaction
	proto.Unmarshal(r.Result, &tx)
	if tx.BlockHash != last.Hash || tx.Confirmations != 1 {
		t.Fatalf("coinbase %v", &tx)
	}
	r = mustCall(t, c, 4, "chain.GetChainInfo", nil, pb.ErrorCode_OK)
	var ci pb.ChainInfo
	proto.Unmarshal(r.Result, &ci)
	if ci.Network != "regtest" || ci.BestHash != last.Hash || ci.Height != last.Height {
		t.Fatalf("chain info %v", &ci)
	}
	mustCall(t, c, 5, "mempool.GetMempoolInfo", nil, pb.ErrorCode_OK)
	mustCall(t, c, 6, "chain.GetBlockByHeight", &pb.HeightParams{Height: 1 << 40}, pb.ErrorCode_NOT_FOUND)
}
