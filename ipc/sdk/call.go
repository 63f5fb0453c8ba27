package sdk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// Error is a refusal or failure answered by the hub (or by another module
// through the hub). The connection stays up.
type Error struct {
	Method  string
	Code    pb.ErrorCode
	Message string
}

func (e *Error) Error() string {
	if e.Method == "" {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	if e.Message == "" {
		return fmt.Sprintf("%s: %s", e.Method, e.Code)
	}
	return fmt.Sprintf("%s: %s: %s", e.Method, e.Code, e.Message)
}

// CodeOf is the hub's error code in err: OK for nil, INTERNAL for an error
// that is not an *Error (a closed connection, a cancelled context, ...).
func CodeOf(err error) pb.ErrorCode {
	if err == nil {
		return pb.ErrorCode_OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return pb.ErrorCode_INTERNAL
}

// Call calls a hub method with params (nil for none) and decodes the result
// into result (nil to ignore it). A refusal is an *Error.
func (m *Module) Call(ctx context.Context, method string, params, result proto.Message) error {
	raw, err := protoMarshal(params)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	r, err := m.callRaw(ctx, method, raw)
	if err != nil {
		return err
	}
	return unmarshalResult(method, r, result)
}

func (m *Module) callRaw(ctx context.Context, method string, params []byte) (*pb.Response, error) {
	r, err := m.roundTrip(ctx, func(id uint64) *pb.Envelope {
		return &pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: id, Method: method, Params: params}}}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	if r.GetCode() != pb.ErrorCode_OK {
		return nil, &Error{Method: method, Code: r.GetCode(), Message: r.GetMessage()}
	}
	return r, nil
}

// Typed hub calls. Hashes and txids are hex in display (RPC) byte order.

// ChainTip is the best block's hash and height (chain.GetChainTip).
func (m *Module) ChainTip(ctx context.Context) (*pb.BlockRef, error) {
	r := new(pb.BlockRef)
	return r, m.Call(ctx, "chain.GetChainTip", nil, r)
}

// BlockHeight is the best chain's height (chain.GetBlockHeight).
func (m *Module) BlockHeight(ctx context.Context) (uint64, error) {
	r := new(pb.Height)
	err := m.Call(ctx, "chain.GetBlockHeight", nil, r)
	return r.GetHeight(), err
}

// ChainInfo summarises the best chain (chain.GetChainInfo).
func (m *Module) ChainInfo(ctx context.Context) (*pb.ChainInfo, error) {
	r := new(pb.ChainInfo)
	return r, m.Call(ctx, "chain.GetChainInfo", nil, r)
}

// BlockHeader is the header of the block with hash (chain.GetBlockHeader).
func (m *Module) BlockHeader(ctx context.Context, hash string) (*pb.BlockHeader, error) {
	r := new(pb.BlockHeader)
	return r, m.Call(ctx, "chain.GetBlockHeader", &pb.BlockHashParams{Hash: hash}, r)
}

// Block is the block with hash (chain.GetBlock).
func (m *Module) Block(ctx context.Context, hash string) (*pb.Block, error) {
	r := new(pb.Block)
	return r, m.Call(ctx, "chain.GetBlock", &pb.BlockHashParams{Hash: hash}, r)
}

// BlockByHeight is the best chain's block at height (chain.GetBlockByHeight).
func (m *Module) BlockByHeight(ctx context.Context, height uint64) (*pb.Block, error) {
	r := new(pb.Block)
	return r, m.Call(ctx, "chain.GetBlockByHeight", &pb.HeightParams{Height: height}, r)
}

// Transaction is a confirmed or mempool transaction (chain.GetTransaction).
func (m *Module) Transaction(ctx context.Context, txid string) (*pb.Transaction, error) {
	r := new(pb.Transaction)
	return r, m.Call(ctx, "chain.GetTransaction", &pb.TxidParams{Txid: txid}, r)
}

// Utxo is an unspent output; NOT_FOUND when spent or unknown (chain.GetUtxo).
func (m *Module) Utxo(ctx context.Context, txid string, vout uint32) (*pb.Utxo, error) {
	r := new(pb.Utxo)
	return r, m.Call(ctx, "chain.GetUtxo", &pb.OutpointParams{Txid: txid, Vout: vout}, r)
}

// MempoolInfo is the mempool's size (mempool.GetMempoolInfo).
func (m *Module) MempoolInfo(ctx context.Context) (*pb.MempoolInfo, error) {
	r := new(pb.MempoolInfo)
	return r, m.Call(ctx, "mempool.GetMempoolInfo", nil, r)
}

// MempoolTxids lists the mempool's transactions (mempool.GetMempoolTransactions).
func (m *Module) MempoolTxids(ctx context.Context) ([]string, error) {
	r := new(pb.Txids)
	err := m.Call(ctx, "mempool.GetMempoolTransactions", nil, r)
	return r.GetTxids(), err
}

// MempoolEntry is one mempool transaction with its fee (mempool.GetMempoolEntry).
func (m *Module) MempoolEntry(ctx context.Context, txid string) (*pb.MempoolEntry, error) {
	r := new(pb.MempoolEntry)
	return r, m.Call(ctx, "mempool.GetMempoolEntry", &pb.TxidParams{Txid: txid}, r)
}

// Proposals lists governance proposals (governance.ListProposals).
func (m *Module) Proposals(ctx context.Context) ([]*pb.Proposal, error) {
	r := new(pb.Proposals)
	err := m.Call(ctx, "governance.ListProposals", nil, r)
	return r.GetProposals(), err
}

// Proposal is one governance proposal (governance.GetProposal).
func (m *Module) Proposal(ctx context.Context, id string) (*pb.Proposal, error) {
	r := new(pb.Proposal)
	return r, m.Call(ctx, "governance.GetProposal", &pb.ProposalParams{Id: id}, r)
}

// CastVote votes choice on a proposal and returns the new tally
// (governance.CastVote; needs governance_vote). A second vote replaces the first.
func (m *Module) CastVote(ctx context.Context, proposalID, choice string) (*pb.Results, error) {
	r := new(pb.Results)
	return r, m.Call(ctx, "governance.CastVote", &pb.VoteParams{ProposalId: proposalID, Choice: choice}, r)
}

// Results is a proposal's tally (governance.GetResults).
func (m *Module) Results(ctx context.Context, proposalID string) (*pb.Results, error) {
	r := new(pb.Results)
	return r, m.Call(ctx, "governance.GetResults", &pb.ProposalParams{Id: proposalID}, r)
}

// Ping checks that the hub answers (hub.Ping).
func (m *Module) Ping(ctx context.Context) error {
	return m.Call(ctx, "hub.Ping", nil, nil)
}

// protoMarshal encodes params; nil encodes as no bytes.
func protoMarshal(params proto.Message) ([]byte, error) {
	if params == nil {
		return nil, nil
	}
	raw, err := proto.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("encode params: %w", err)
	}
	return raw, nil
}
