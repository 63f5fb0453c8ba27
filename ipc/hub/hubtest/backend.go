// Package hubtest holds test doubles for the hub: an in-memory Backend, a raw
// protocol client that speaks frames directly (no SDK), and ACLs built from
// the real capability catalog. Tests and benchmarks use it; production code
// never does.
package hubtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Backend is a small in-memory hub.Backend: a chain of coinbase-only blocks,
// an empty mempool and one open proposal. Hook, when set, runs first in every
// method with the method's name and its main argument; tests use it to delay
// or fail calls.
type Backend struct {
	Hook func(ctx context.Context, method string, arg any) error

	mu     sync.Mutex
	blocks []*wire.MsgBlock
	hashes []chainhash.Hash  // of blocks, computed once as a node would store them
	votes  map[string]string // voter -> choice
	subs   map[int]func(hub.NodeEvent)
	nextID int
}

// NewBackend returns a backend with n blocks (heights 0..n-1).
func NewBackend(n int) *Backend {
	b := &Backend{votes: make(map[string]string), subs: make(map[int]func(hub.NodeEvent))}
	prev := chainhash.Hash{}
	for i := 0; i < n; i++ {
		blk := makeBlock(prev, i)
		b.blocks = append(b.blocks, blk)
		prev = blk.BlockHash()
		b.hashes = append(b.hashes, prev)
	}
	return b
}

func makeBlock(prev chainhash.Hash, height int) *wire.MsgBlock {
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 0xffffffff},
		SignatureScript: []byte{0x01, byte(height), 0x00}, Sequence: 0xffffffff})
	cb.AddTxOut(&wire.TxOut{Value: 50_0000_0000, PkScript: []byte{0x51}})
	blk := &wire.MsgBlock{Header: wire.BlockHeader{
		Version: 4, PrevBlock: prev, Timestamp: time.Unix(1700000000+int64(height)*600, 0), Bits: 0x207fffff,
	}}
	blk.AddTransaction(cb)
	blk.Header.MerkleRoot = cb.TxHash()
	return blk
}

func (b *Backend) hook(ctx context.Context, method string, arg any) error {
	if b.Hook != nil {
		return b.Hook(ctx, method, arg)
	}
	return nil
}

// Tip returns the hash and height of the last block.
func (b *Backend) Tip() (chainhash.Hash, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hashes[len(b.hashes)-1], uint64(len(b.hashes) - 1)
}

// Emit sends ev to every subscriber, as a node would.
func (b *Backend) Emit(ev hub.NodeEvent) {
	b.mu.Lock()
	fns := make([]func(hub.NodeEvent), 0, len(b.subs))
	for _, fn := range b.subs {
		fns = append(fns, fn)
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// Vote returns voter's recorded choice.
func (b *Backend) Vote(voter string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.votes[voter]
}

func (b *Backend) Network() string { return "regtest" }

func (b *Backend) ChainTip(ctx context.Context) (chainhash.Hash, uint64, error) {
	if err := b.hook(ctx, "ChainTip", nil); err != nil {
		return chainhash.Hash{}, 0, err
	}
	h, n := b.Tip()
	return h, n, nil
}

func (b *Backend) ChainInfo(ctx context.Context) (hub.ChainInfo, error) {
	if err := b.hook(ctx, "ChainInfo", nil); err != nil {
		return hub.ChainInfo{}, err
	}
	h, n := b.Tip()
	return hub.ChainInfo{Network: "regtest", Height: n, BestHash: h, Bits: 0x207fffff, Chainwork: "2"}, nil
}

func (b *Backend) BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error) {
	if err := b.hook(ctx, "BlockHash", height); err != nil {
		return chainhash.Hash{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if height >= uint64(len(b.blocks)) {
		return chainhash.Hash{}, hub.ErrNotFound
	}
	return b.hashes[height], nil
}

func (b *Backend) find(hash chainhash.Hash) (*wire.MsgBlock, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, h := range b.hashes {
		if h == hash {
			return b.blocks[i], uint64(i), nil
		}
	}
	return nil, 0, hub.ErrNotFound
}

func (b *Backend) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, uint64, error) {
	if err := b.hook(ctx, "Block", hash); err != nil {
		return nil, 0, err
	}
	return b.find(hash)
}

func (b *Backend) BlockHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, uint64, error) {
	if err := b.hook(ctx, "BlockHeader", hash); err != nil {
		return nil, 0, err
	}
	blk, h, err := b.find(hash)
	if err != nil {
		return nil, 0, err
	}
	hdr := blk.Header
	return &hdr, h, nil
}

func (b *Backend) Transaction(ctx context.Context, txid chainhash.Hash) (hub.TxInfo, error) {
	if err := b.hook(ctx, "Transaction", txid); err != nil {
		return hub.TxInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, blk := range b.blocks {
		for _, tx := range blk.Transactions {
			if tx.TxHash() == txid {
				bh := b.hashes[i]
				return hub.TxInfo{Tx: tx, Block: &bh, Height: uint64(i), Confirmations: uint64(len(b.blocks) - i)}, nil
			}
		}
	}
	return hub.TxInfo{}, hub.ErrNotFound
}

func (b *Backend) Utxo(ctx context.Context, op wire.OutPoint) (hub.UtxoEntry, error) {
	if err := b.hook(ctx, "Utxo", op); err != nil {
		return hub.UtxoEntry{}, err
	}
	ti, err := b.Transaction(ctx, op.Hash)
	if err != nil {
		return hub.UtxoEntry{}, err
	}
	if int(op.Index) >= len(ti.Tx.TxOut) {
		return hub.UtxoEntry{}, hub.ErrNotFound
	}
	out := ti.Tx.TxOut[op.Index]
	return hub.UtxoEntry{Value: out.Value, PkScript: out.PkScript, Height: ti.Height, Coinbase: true}, nil
}

func (b *Backend) MempoolTxids(ctx context.Context) ([]chainhash.Hash, error) {
	return nil, b.hook(ctx, "MempoolTxids", nil)
}

func (b *Backend) MempoolEntry(ctx context.Context, txid chainhash.Hash) (hub.MempoolEntry, error) {
	if err := b.hook(ctx, "MempoolEntry", txid); err != nil {
		return hub.MempoolEntry{}, err
	}
	return hub.MempoolEntry{}, hub.ErrNotFound
}

// ProposalID is the id of the backend's one proposal.
const ProposalID = "p1"

func (b *Backend) proposal() hub.Proposal {
	return hub.Proposal{ID: ProposalID, Title: "soft fork", Choices: []string{"yes", "no"}, StartHeight: 0, EndHeight: 1000, Open: true}
}

func (b *Backend) Proposals(ctx context.Context) ([]hub.Proposal, error) {
	if err := b.hook(ctx, "Proposals", nil); err != nil {
		return nil, err
	}
	return []hub.Proposal{b.proposal()}, nil
}

func (b *Backend) Proposal(ctx context.Context, id string) (hub.Proposal, error) {
	if err := b.hook(ctx, "Proposal", id); err != nil {
		return hub.Proposal{}, err
	}
	if id != ProposalID {
		return hub.Proposal{}, hub.ErrNotFound
	}
	return b.proposal(), nil
}

func (b *Backend) CastVote(ctx context.Context, voter, proposalID, choice string) (hub.Results, error) {
	if err := b.hook(ctx, "CastVote", voter); err != nil {
		return hub.Results{}, err
	}
	if proposalID != ProposalID {
		return hub.Results{}, hub.ErrNotFound
	}
	if choice != "yes" && choice != "no" {
		return hub.Results{}, fmt.Errorf("%w: no choice %q", hub.ErrInvalid, choice)
	}
	b.mu.Lock()
	b.votes[voter] = choice
	b.mu.Unlock()
	return b.Results(ctx, proposalID)
}

func (b *Backend) Results(ctx context.Context, proposalID string) (hub.Results, error) {
	if proposalID != ProposalID {
		return hub.Results{}, hub.ErrNotFound
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := hub.Results{ProposalID: proposalID, Tally: map[string]uint64{}, Open: true}
	for _, c := range b.votes {
		r.Tally[c]++
	}
	return r, nil
}

func (b *Backend) Subscribe(fn func(hub.NodeEvent)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextID
	b.nextID++
	b.subs[id] = fn
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}
}
