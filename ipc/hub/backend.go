package hub

import (
	"context"
	"errors"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// ErrNotFound is what a Backend returns for an unknown block, transaction,
// outpoint or proposal; the hub answers it as NOT_FOUND.
var ErrNotFound = errors.New("not found")

// ErrInvalid is what a Backend returns for a request it refuses as wrong (a
// choice a proposal does not offer, a vote on a closed proposal); the hub
// answers it as INVALID.
var ErrInvalid = errors.New("invalid request")

// ErrNodeUnavailable is what a Backend returns while it cannot reach its node
// (down, restarting, not answering in time); the hub answers UNAVAILABLE.
var ErrNodeUnavailable = errors.New("node unavailable")

// Backend is the node's data as the hub needs it. A node that embeds the
// runtime implements it; devchain is the embedded default. Every method must
// be safe for concurrent use and honour ctx.
type Backend interface {
	// Network is the chain's name: "regtest", "testnet", "mainnet", ...
	Network() string
	ChainTip(ctx context.Context) (chainhash.Hash, uint64, error)
	ChainInfo(ctx context.Context) (ChainInfo, error)
	// BlockHash is the hash of the block at height on the best chain.
	BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error)
	// Block returns a block on the best chain and its height.
	Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, uint64, error)
	BlockHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, uint64, error)
	Transaction(ctx context.Context, txid chainhash.Hash) (TxInfo, error)
	Utxo(ctx context.Context, op wire.OutPoint) (UtxoEntry, error)
	MempoolTxids(ctx context.Context) ([]chainhash.Hash, error)
	MempoolEntry(ctx context.Context, txid chainhash.Hash) (MempoolEntry, error)

	Proposals(ctx context.Context) ([]Proposal, error)
	Proposal(ctx context.Context, id string) (Proposal, error)
	// CastVote records voter's choice (one vote per voter per proposal; a
	// second vote replaces the first) and returns the new results.
	CastVote(ctx context.Context, voter, proposalID, choice string) (Results, error)
	Results(ctx context.Context, proposalID string) (Results, error)

	// Subscribe calls fn for every node event, in order, until cancel is
	// called. fn must not block: the hub queues per module.
	Subscribe(fn func(NodeEvent)) (cancel func())
}

// ChainInfo summarises the best chain.
type ChainInfo struct {
	Network    string
	Height     uint64
	BestHash   chainhash.Hash
	Bits       uint32
	MedianTime int64
	Chainwork  string // hex, no leading zeros
}

// TxInfo is a transaction and where it is. Block is nil while it is in the mempool.
type TxInfo struct {
	Tx            *wire.MsgTx
	Block         *chainhash.Hash
	Height        uint64
	Confirmations uint64
}

// UtxoEntry is an unspent output on the best chain.
type UtxoEntry struct {
	Value    int64
	PkScript []byte
	Height   uint64
	Coinbase bool
}

// MempoolEntry is a transaction waiting in the mempool.
type MempoolEntry struct {
	Tx       *wire.MsgTx
	Fee      int64
	VSize    uint64
	TimeUnix int64
}

// Proposal is a governance proposal.
type Proposal struct {
	ID          string
	Title       string
	Description string
	Choices     []string
	StartHeight uint64
	EndHeight   uint64
	Open        bool
}

// Results is the tally of a proposal: choice -> votes.
type Results struct {
	ProposalID string
	Tally      map[string]uint64
	Open       bool
}

// NodeEventKind names the node events a backend publishes.
type NodeEventKind int

const (
	BlockConnected NodeEventKind = iota + 1
	BlockDisconnected
	MempoolTransactionAdded
	MempoolTransactionRemoved
	ProposalCreated
	ProposalClosed
)

// NodeEvent is one thing that happened on the node. Blocks carry Hash,
// Height and Header; transactions carry Txid; proposals carry Proposal.
// A reorg is BlockDisconnected events followed by BlockConnected events.
type NodeEvent struct {
	Kind     NodeEventKind
	Hash     chainhash.Hash
	Height   uint64
	Header   *wire.BlockHeader
	Txid     chainhash.Hash
	Proposal *Proposal
}
