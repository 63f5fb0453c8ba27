package rpcread

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// fakeNode answers from a table of replies and records the methods called
// (Block calls from two goroutines).
type fakeNode struct {
	replies map[string]any // method+first param -> result
	mu      sync.Mutex
	calls   []string
}

func (f *fakeNode) Call(_ context.Context, out any, method string, params ...any) error {
	key := method
	if len(params) > 0 {
		key += " " + fmt.Sprint(params[0])
	}
	if method == "getblockheader" && len(params) > 1 && params[1] == true {
		key += " verbose"
	}
	f.mu.Lock()
	f.calls = append(f.calls, key)
	f.mu.Unlock()
	r, ok := f.replies[key]
	if !ok {
		return fmt.Errorf("%s: %w", key, hub.ErrNotFound)
	}
	b, _ := json.Marshal(r)
	return json.Unmarshal(b, out)
}

type toldSet map[chainhash.Hash]uint64

func (t toldSet) Lookup(h chainhash.Hash) (uint64, wire.BlockHeader, bool) {
	ht, ok := t[h]
	return ht, wire.BlockHeader{}, ok
}

func (t toldSet) HashAt(height uint64) (chainhash.Hash, bool) {
	for h, ht := range t {
		if ht == height {
			return h, true
		}
	}
	return chainhash.Hash{}, false
}

func blockHex(t *testing.T, b *wire.MsgBlock) string {
	var buf bytes.Buffer
	if err := b.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf.Bytes())
}

func testBlock(nonce uint32) *wire.MsgBlock {
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: 0xffffffff}, []byte{1, 2}, nil))
	cb.AddTxOut(wire.NewTxOut(50e8, []byte{0x51}))
	b := wire.NewMsgBlock(&wire.BlockHeader{Version: 4, Nonce: nonce})
	b.AddTransaction(cb)
	return b
}

func TestBlockUsesToldChain(t *testing.T) {
	blk := testBlock(1)
	hash := blk.BlockHash()
	node := &fakeNode{replies: map[string]any{
		"getblock " + hash.String():                    blockHex(t, blk),
		"getblockheader " + hash.String() + " verbose": map[string]any{"height": 7, "confirmations": 3},
	}}
	r := Reader{Caller: node, Node: "test"}
	if _, h, err := r.Block(context.Background(), hash); err != nil || h != 7 {
		t.Fatalf("Block without Told = %d, %v", h, err)
	}
	if !slices.Contains(node.calls, "getblockheader "+hash.String()+" verbose") {
		t.Fatalf("without Told the best-chain check was not read: %v", node.calls)
	}
	node.calls = nil
	r.Told = toldSet{hash: 7}
	if _, h, err := r.Block(context.Background(), hash); err != nil || h != 7 {
		t.Fatalf("Block with Told = %d, %v", h, err)
	}
	if !slices.Equal(node.calls, []string{"getblock " + hash.String()}) {
		t.Fatalf("a told block cost %v, want getblock alone", node.calls)
	}
	node.calls = nil
	if h, err := r.BlockHash(context.Background(), 7); err != nil || h != hash || len(node.calls) != 0 {
		t.Fatalf("BlockHash(7) of the told chain = %s, %v after %v; want %s without a call", h, err, node.calls, hash)
	}
	// While the node is down nothing is answered from the told chain.
	up := false
	r.Up = func() bool { return up }
	if _, err := r.BlockHash(context.Background(), 7); !slices.Equal(node.calls, []string{"getblockhash 7"}) || err == nil {
		t.Fatalf("BlockHash with the node down: %v after %v; want the node asked", err, node.calls)
	}
	node.calls = nil
	if _, _, err := r.Block(context.Background(), hash); err != nil || !slices.Contains(node.calls, "getblockheader "+hash.String()+" verbose") {
		t.Fatalf("Block with the node down: %v after %v; want the best-chain check read", err, node.calls)
	}
}

func TestOffBestChainIsNotFound(t *testing.T) {
	blk := testBlock(2)
	hash := blk.BlockHash()
	node := &fakeNode{replies: map[string]any{
		"getblock " + hash.String():                    blockHex(t, blk),
		"getblockheader " + hash.String() + " verbose": map[string]any{"height": 7, "confirmations": -1},
	}}
	r := Reader{Caller: node, Node: "test"}
	if _, _, err := r.Block(context.Background(), hash); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("a side-chain block: %v, want ErrNotFound", err)
	}
}

func TestHashMismatchRefused(t *testing.T) {
	asked, got := testBlock(3), testBlock(4)
	hash := asked.BlockHash()
	var hdr bytes.Buffer
	got.Header.Serialize(&hdr)
	node := &fakeNode{replies: map[string]any{
		"getblock " + hash.String():       blockHex(t, got),
		"getblockheader " + hash.String(): hex.EncodeToString(hdr.Bytes()),
	}}
	r := Reader{Caller: node, Node: "test", Told: toldSet{hash: 1}}
	if _, _, err := r.Block(context.Background(), hash); err == nil {
		t.Fatal("a block that hashes to another hash was accepted")
	}
	if _, err := r.Header(context.Background(), hash); err == nil {
		t.Fatal("a header that hashes to another hash was accepted")
	}
}

func TestSats(t *testing.T) {
	for _, c := range []struct {
		btc  float64
		sats int64
		ok   bool
	}{{0, 0, true}, {0.00000001, 1, true}, {1.1, 110_000_000, true}, {21e6, 21e14, true}, {-1, 0, false}, {21e6 + 1, 0, false}} {
		got, err := Sats(c.btc)
		if (err == nil) != c.ok || (c.ok && got != c.sats) {
			t.Errorf("Sats(%v) = %d, %v; want %d ok=%v", c.btc, got, err, c.sats, c.ok)
		}
	}
}
