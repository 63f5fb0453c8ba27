package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/manifest"
)

// callError is a refused or failed request: the code and message of its
// Response. A request that fails this way never closes the connection.
type callError struct {
	code pb.ErrorCode
	msg  string
}

func errorf(code pb.ErrorCode, format string, args ...any) *callError {
	return &callError{code: code, msg: fmt.Sprintf(format, args...)}
}

// handler answers one method. params are still encoded: a handler decodes
// them only after the ACL has let the call through.
type handler func(ctx context.Context, c *conn, params []byte) ([]byte, *callError)

// moduleCallPrefix starts the method that calls another module's API.
const moduleCallPrefix = "modules.Call:"

// handlerFor maps a method name to its handler; false for a method the hub
// does not know.
func handlerFor(method string) (handler, bool) {
	switch method {
	case "hub.Ping":
		return hubPing, true
	case "chain.GetChainTip":
		return chainTip, true
	case "chain.GetBlockHeight":
		return blockHeight, true
	case "chain.GetChainInfo":
		return chainInfo, true
	case "chain.GetBlockHeader":
		return blockHeader, true
	case "chain.GetBlock":
		return block, true
	case "chain.GetBlockByHeight":
		return blockByHeight, true
	case "chain.GetTransaction":
		return transaction, true
	case "chain.GetUtxo":
		return utxo, true
	case "mempool.GetMempoolInfo":
		return mempoolInfo, true
	case "mempool.GetMempoolTransactions":
		return mempoolTxids, true
	case "mempool.GetMempoolEntry":
		return mempoolEntry, true
	case "mempool.SubmitTransaction":
		return submitTransaction, true
	case "events.Subscribe":
		return subscribe, true
	case "events.Unsubscribe":
		return unsubscribe, true
	case "events.Publish":
		return publish, true
	case "governance.ListProposals":
		return listProposals, true
	case "governance.GetProposal":
		return getProposal, true
	case "governance.GetResults":
		return getResults, true
	case "governance.CastVote":
		return castVote, true
	case "modules.RegisterApi":
		return registerAPI, true
	}
	if provider, ok := strings.CutPrefix(method, moduleCallPrefix); ok && manifest.ValidModuleName(provider) {
		return func(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
			return callModule(ctx, c, provider, params)
		}, true
	}
	return nil, false
}

// maxEchoedMethod is how much of an unknown method name a response repeats.
const maxEchoedMethod = 64

// admit runs on the reader: the cheap checks happen here, in order (rate,
// method known, ACL, unread answers, in-flight), before params are touched. A refused request
// is answered at once; an admitted one is returned as a job.
func (c *conn) admit(req *pb.Request) (job, bool) {
	st := c.m.stats
	st.requests.Add(1)
	if !c.m.reqRate.take(1) {
		st.rateLimited.Add(1)
		c.answer(req.Method, req.Id, pb.ErrorCode_RATE_LIMITED, "request rate limit exceeded", nil)
		return job{}, false
	}
	fn, known := handlerFor(req.Method)
	if !known {
		// Not logged: an unknown method, a modules.Call to a name that is
		// no module name included, is the module's mistake alone.
		st.invalid.Add(1)
		c.answer(req.Method, req.Id, pb.ErrorCode_INVALID, "unknown method "+logText(req.Method, maxEchoedMethod), nil)
		return job{}, false
	}
	if !c.m.permit(req.Method) {
		st.denied.Add(1)
		c.m.log.info("hub: denied", str("method", req.Method))
		c.answer(req.Method, req.Id, pb.ErrorCode_PERMISSION_DENIED, fmt.Sprintf("method %q is not granted to this module", req.Method), nil)
		return job{}, false
	}
	if c.m.unsent.Load() >= int64(2*c.h.cfg.MaxInFlight) {
		// Answers are piling up unread. Refusing from the reader blocks the
		// reader once the queue is full, so this module stops being read
		// instead of growing goroutines.
		st.rateLimited.Add(1)
		c.answer(req.Method, req.Id, pb.ErrorCode_RATE_LIMITED, "responses are not being read", nil)
		return job{}, false
	}
	if c.m.inFlight.Add(1) > int64(c.h.cfg.MaxInFlight) {
		c.m.inFlight.Add(-1)
		st.rateLimited.Add(1)
		c.answer(req.Method, req.Id, pb.ErrorCode_RATE_LIMITED, fmt.Sprintf("more than %d requests in flight", c.h.cfg.MaxInFlight), nil)
		return job{}, false
	}
	// A request's params live until its handler returns: charged to the
	// module, so slow calls cannot pile up its bytes in the hub.
	size := int64(len(req.Params))
	if b := c.m.inBytes.Add(size); b > int64(c.h.cfg.InFlightBytes) && b != size {
		c.m.inBytes.Add(-size)
		c.m.inFlight.Add(-1)
		st.rateLimited.Add(1)
		c.answer(req.Method, req.Id, pb.ErrorCode_RATE_LIMITED, fmt.Sprintf("more than %d bytes of requests in flight", c.h.cfg.InFlightBytes), nil)
		return job{}, false
	}
	c.m.unsent.Add(1)
	return job{req: req, fn: fn, size: size}, true
}

// job is an admitted request.
type job struct {
	req  *pb.Request
	fn   handler
	size int64 // charged to the module's in-flight bytes
}

// maxIdleWorkers is how many finished workers a connection keeps waiting for
// the next turn; the rest exit. Reused workers keep their grown stacks.
const maxIdleWorkers = 8

// yieldTurn passes the read turn on if the reader is still running a request
// inline. The reader finishing and yieldTurn race on inlineSince; exactly one
// of them wins, so the turn passes at most once.
func (c *conn) yieldTurn() {
	if c.inlineSince.Swap(0) != 0 {
		c.handOff()
	}
}

// handOff gives the read turn to an idle worker, or starts one.
func (c *conn) handOff() {
	select {
	case c.turns <- struct{}{}:
		return
	default:
	}
	c.m.wg.Add(1)
	go c.worker()
}

// worker reads while it holds the read turn, then waits for the turn to come
// back, until the connection ends or enough workers idle. Requests thus run
// concurrently, bounded by the in-flight limit, and are answered in any
// order.
func (c *conn) worker() {
	defer c.m.wg.Done()
	for c.readLoop() {
		if c.idle.Add(1) > maxIdleWorkers {
			c.idle.Add(-1)
			return
		}
		select {
		case <-c.turns:
			c.idle.Add(-1)
		case <-c.done:
			c.idle.Add(-1)
			return
		}
	}
}

// run calls the handler with the call timeout and sends its response.
// onWait, if not nil, runs when the handler starts waiting on its context.
func (c *conn) run(j job, onWait func()) {
	ctx := newCallCtx(c.m.ctx, c.h.cfg.CallTimeout, onWait)
	result, cerr := j.fn(ctx, c, j.req.Params)
	ctx.release()
	c.m.inBytes.Add(-j.size)
	// The in-flight slot frees before the response is sent, so a module that
	// has read its response may send the next request at once; unsent counts
	// until the response is written or queued.
	c.m.inFlight.Add(-1)
	defer c.m.unsent.Add(-1)
	if cerr != nil {
		if cerr.code == pb.ErrorCode_INVALID {
			c.m.stats.invalid.Add(1)
		}
		c.answer(j.req.Method, j.req.Id, cerr.code, cerr.msg, nil)
		return
	}
	c.answer(j.req.Method, j.req.Id, pb.ErrorCode_OK, "", result)
}

// Limits on one Log frame as it reaches the node's log.
const (
	maxLogMessage  = 4096
	maxLogFields   = 32
	maxLogFieldKey = 64
)

// handleLog writes a module's log line to the hub's logger, escaped and
// truncated, within the module's byte budget.
func (c *conn) handleLog(l *pb.Log) {
	st := c.m.stats
	if !c.m.permit("hub.Log") {
		st.denied.Add(1)
		st.logDropped.Add(1)
		return
	}
	level := slog.LevelInfo
	switch l.Level {
	case pb.LogLevel_DEBUG:
		level = slog.LevelDebug
	case pb.LogLevel_WARN:
		level = slog.LevelWarn
	case pb.LogLevel_ERROR:
		level = slog.LevelError
	}
	keys := make([]string, 0, len(l.Fields))
	for k := range l.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, min(len(keys), maxLogFields)+1)
	for _, k := range keys[:min(len(keys), maxLogFields)] {
		attrs = append(attrs, slog.String(logText(k, maxLogFieldKey), logText(l.Fields[k], maxLoggedText)))
	}
	if len(keys) > maxLogFields {
		attrs = append(attrs, slog.Int("fields_dropped", len(keys)-maxLogFields))
	}
	msg := logText(l.Message, maxLogMessage)
	// The module's fields are grouped so they can never pose as the hub's
	// own "module" attribute.
	group := slog.Attr{Key: "fields", Value: slog.GroupValue(attrs...)}
	size := lineCost(msg, attrs)
	if !c.m.log.admit(size) {
		return
	}
	st.logBytes.Add(uint64(size))
	c.m.log.log.LogAttrs(context.Background(), level, msg, group)
}

// decode unmarshals params into msg; failure is INVALID.
func decode(params []byte, msg proto.Message) *callError {
	if len(params) == 0 {
		return nil // every field at its zero value
	}
	if err := proto.Unmarshal(params, msg); err != nil {
		return errorf(pb.ErrorCode_INVALID, "bad params for %s: %v", msg.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

func encode(msg proto.Message) ([]byte, *callError) {
	b, err := proto.Marshal(msg)
	if err != nil {
		return nil, errorf(pb.ErrorCode_INTERNAL, "encode result: %v", err)
	}
	return b, nil
}

// backendError maps a Backend error to a response code. Details stay in the
// node's log: a module learns only the code and a generic reason.
func (c *conn) backendError(what string, err error) *callError {
	switch {
	case errors.Is(err, ErrNotFound):
		return errorf(pb.ErrorCode_NOT_FOUND, "%s not found", what)
	case errors.Is(err, ErrInvalid):
		return errorf(pb.ErrorCode_INVALID, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(pb.ErrorCode_TIMEOUT, "the node did not answer in time")
	case errors.Is(err, context.Canceled):
		return errorf(pb.ErrorCode_UNAVAILABLE, "the hub is stopping this module")
	case errors.Is(err, ErrNodeUnavailable):
		// The backend logs its lost node once, not once per call.
		return errorf(pb.ErrorCode_UNAVAILABLE, "the node is unreachable now")
	}
	c.m.log.warn("hub: backend error", str("what", what), str("err", err.Error()))
	return errorf(pb.ErrorCode_UNAVAILABLE, "the node cannot answer now")
}

// blockHashParam decodes BlockHashParams and parses its hash; shown is the
// hash as the module wrote it, for error messages.
func blockHashParam(params []byte) (hash chainhash.Hash, shown string, e *callError) {
	var p pb.BlockHashParams
	if e := decode(params, &p); e != nil {
		return hash, "", e
	}
	hash, e = parseHash(p.Hash, "hash")
	return hash, p.Hash, e
}

// txidParam decodes TxidParams and parses its txid.
func txidParam(params []byte) (txid chainhash.Hash, shown string, e *callError) {
	var p pb.TxidParams
	if e := decode(params, &p); e != nil {
		return txid, "", e
	}
	txid, e = parseHash(p.Txid, "txid")
	return txid, p.Txid, e
}

func parseHash(s, field string) (chainhash.Hash, *callError) {
	h, err := chainhash.NewHashFromStrStrict(s)
	if err != nil {
		return chainhash.Hash{}, errorf(pb.ErrorCode_INVALID, "%s: want 64 hex characters", field)
	}
	return *h, nil
}

func hubPing(_ context.Context, _ *conn, params []byte) ([]byte, *callError) {
	if e := decode(params, &pb.Empty{}); e != nil {
		return nil, e
	}
	return nil, nil
}

func chainTip(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	if e := decode(params, &pb.Empty{}); e != nil {
		return nil, e
	}
	hash, height, err := c.h.b.ChainTip(ctx)
	if err != nil {
		return nil, c.backendError("chain tip", err)
	}
	return encode(&pb.BlockRef{Hash: hash.String(), Height: height})
}

func blockHeight(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	if e := decode(params, &pb.Empty{}); e != nil {
		return nil, e
	}
	_, height, err := c.h.b.ChainTip(ctx)
	if err != nil {
		return nil, c.backendError("chain tip", err)
	}
	return encode(&pb.Height{Height: height})
}

func chainInfo(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	if e := decode(params, &pb.Empty{}); e != nil {
		return nil, e
	}
	ci, err := c.h.b.ChainInfo(ctx)
	if err != nil {
		return nil, c.backendError("chain info", err)
	}
	network := ci.Network
	if network == "" {
		network = c.h.b.Network()
	}
	return encode(&pb.ChainInfo{Network: network, Height: ci.Height, BestHash: ci.BestHash.String(),
		Bits: ci.Bits, MedianTime: ci.MedianTime, Chainwork: ci.Chainwork})
}

func headerMessage(h *wire.BlockHeader, hash chainhash.Hash, height uint64) *pb.BlockHeader {
	if h == nil {
		return &pb.BlockHeader{Hash: hash.String(), Height: height}
	}
	var raw bytes.Buffer
	_ = h.Serialize(&raw)
	return &pb.BlockHeader{
		Hash:       hash.String(),
		Height:     height,
		Version:    h.Version,
		PrevHash:   h.PrevBlock.String(),
		MerkleRoot: h.MerkleRoot.String(),
		Time:       h.Timestamp.Unix(),
		Bits:       h.Bits,
		Nonce:      h.Nonce,
		Raw:        raw.Bytes(),
	}
}

func blockHeader(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	hash, shown, e := blockHashParam(params)
	if e != nil {
		return nil, e
	}
	hdr, height, err := c.h.b.BlockHeader(ctx, hash)
	if err != nil {
		return nil, c.backendError("block "+shown, err)
	}
	return encode(headerMessage(hdr, hash, height))
}

func blockMessage(c *conn, blk *wire.MsgBlock, height uint64) ([]byte, *callError) {
	if blk == nil {
		return nil, errorf(pb.ErrorCode_INTERNAL, "the node returned no block")
	}
	hash := blk.BlockHash()
	out := &pb.Block{Header: headerMessage(&blk.Header, hash, height), Txids: make([]string, len(blk.Transactions))}
	for i, tx := range blk.Transactions {
		out.Txids[i] = tx.TxHash().String()
	}
	var raw bytes.Buffer
	raw.Grow(blk.SerializeSize())
	if err := blk.Serialize(&raw); err != nil {
		c.m.log.line(slog.LevelError, "hub: serialize block", slog.String("hash", hash.String()), slog.String("err", err.Error()))
		return nil, errorf(pb.ErrorCode_INTERNAL, "serialize block")
	}
	out.Raw = raw.Bytes()
	return encode(out)
}

func block(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	hash, shown, e := blockHashParam(params)
	if e != nil {
		return nil, e
	}
	blk, height, err := c.h.b.Block(ctx, hash)
	if err != nil {
		return nil, c.backendError("block "+shown, err)
	}
	return blockMessage(c, blk, height)
}

func blockByHeight(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	var p pb.HeightParams
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	hash, err := c.h.b.BlockHash(ctx, p.Height)
	if err != nil {
		return nil, c.backendError(fmt.Sprintf("block at height %d", p.Height), err)
	}
	blk, height, err := c.h.b.Block(ctx, hash)
	if err != nil {
		return nil, c.backendError(fmt.Sprintf("block at height %d", p.Height), err)
	}
	return blockMessage(c, blk, height)
}

func serializeTx(tx *wire.MsgTx) []byte {
	var raw bytes.Buffer
	raw.Grow(tx.SerializeSize())
	_ = tx.Serialize(&raw)
	return raw.Bytes()
}

func transaction(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	txid, shown, e := txidParam(params)
	if e != nil {
		return nil, e
	}
	ti, err := c.h.b.Transaction(ctx, txid)
	if err != nil {
		return nil, c.backendError("transaction "+shown, err)
	}
	if ti.Tx == nil {
		return nil, errorf(pb.ErrorCode_INTERNAL, "the node returned no transaction")
	}
	out := &pb.Transaction{Txid: ti.Tx.TxHash().String(), Raw: serializeTx(ti.Tx),
		BlockHeight: ti.Height, Confirmations: ti.Confirmations}
	if ti.Block != nil {
		out.BlockHash = ti.Block.String()
	}
	return encode(out)
}

func utxo(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	var p pb.OutpointParams
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	txid, e := parseHash(p.Txid, "txid")
	if e != nil {
		return nil, e
	}
	u, err := c.h.b.Utxo(ctx, wire.OutPoint{Hash: txid, Index: p.Vout})
	if err != nil {
		return nil, c.backendError(fmt.Sprintf("unspent output %s:%d", p.Txid, p.Vout), err)
	}
	return encode(&pb.Utxo{ValueSats: u.Value, PkScript: u.PkScript, Height: u.Height, Coinbase: u.Coinbase})
}

// MempoolSummarizer is an optional Backend extension: a backend that can
// count its mempool cheaply implements it, and mempool.GetMempoolInfo uses it
// instead of reading every entry.
type MempoolSummarizer interface {
	MempoolInfo(ctx context.Context) (count, vbytes uint64, err error)
}

func mempoolInfo(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	if e := decode(params, &pb.Empty{}); e != nil {
		return nil, e
	}
	if s, ok := c.h.b.(MempoolSummarizer); ok {
		n, vb, err := s.MempoolInfo(ctx)
		if err != nil {
			return nil, c.backendError("mempool", err)
		}
		return encode(&pb.MempoolInfo{Size: n, Bytes: vb})
	}
	ids, err := c.h.b.MempoolTxids(ctx)
	if err != nil {
		return nil, c.backendError("mempool", err)
	}
	out := &pb.MempoolInfo{}
	for _, id := range ids {
		e, err := c.h.b.MempoolEntry(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // left the mempool meanwhile
		}
		if err != nil {
			return nil, c.backendError("mempool", err)
		}
		out.Size++
		out.Bytes += e.VSize
	}
	return encode(out)
}

func mempoolTxids(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	if e := decode(params, &pb.Empty{}); e != nil {
		return nil, e
	}
	ids, err := c.h.b.MempoolTxids(ctx)
	if err != nil {
		return nil, c.backendError("mempool", err)
	}
	out := &pb.Txids{Txids: make([]string, len(ids))}
	for i, id := range ids {
		out.Txids[i] = id.String()
	}
	return encode(out)
}

func mempoolEntry(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	txid, shown, e := txidParam(params)
	if e != nil {
		return nil, e
	}
	me, err := c.h.b.MempoolEntry(ctx, txid)
	if err != nil {
		return nil, c.backendError("mempool transaction "+shown, err)
	}
	if me.Tx == nil {
		return nil, errorf(pb.ErrorCode_INTERNAL, "the node returned no transaction")
	}
	return encode(&pb.MempoolEntry{Txid: me.Tx.TxHash().String(), Raw: serializeTx(me.Tx),
		FeeSats: me.Fee, Vsize: me.VSize, TimeUnix: me.TimeUnix})
}

func submitTransaction(context.Context, *conn, []byte) ([]byte, *callError) {
	return nil, errorf(pb.ErrorCode_UNAVAILABLE, "submitting transactions is not supported by this node yet")
}

func proposalMessage(p Proposal) *pb.Proposal {
	return &pb.Proposal{Id: p.ID, Title: p.Title, Description: p.Description,
		Choices: append([]string(nil), p.Choices...), StartHeight: p.StartHeight, EndHeight: p.EndHeight, Open: p.Open}
}

func resultsMessage(r Results) *pb.Results {
	tally := make(map[string]uint64, len(r.Tally))
	for k, v := range r.Tally {
		tally[k] = v
	}
	return &pb.Results{ProposalId: r.ProposalID, Tally: tally, Open: r.Open}
}

func listProposals(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	if e := decode(params, &pb.Empty{}); e != nil {
		return nil, e
	}
	ps, err := c.h.b.Proposals(ctx)
	if err != nil {
		return nil, c.backendError("proposals", err)
	}
	out := &pb.Proposals{Proposals: make([]*pb.Proposal, len(ps))}
	for i, p := range ps {
		out.Proposals[i] = proposalMessage(p)
	}
	return encode(out)
}

func proposalID(params []byte) (string, *callError) {
	var p pb.ProposalParams
	if e := decode(params, &p); e != nil {
		return "", e
	}
	if p.Id == "" {
		return "", errorf(pb.ErrorCode_INVALID, "id is empty")
	}
	return p.Id, nil
}

func getProposal(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	id, e := proposalID(params)
	if e != nil {
		return nil, e
	}
	p, err := c.h.b.Proposal(ctx, id)
	if err != nil {
		return nil, c.backendError("proposal "+id, err)
	}
	return encode(proposalMessage(p))
}

func getResults(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	id, e := proposalID(params)
	if e != nil {
		return nil, e
	}
	r, err := c.h.b.Results(ctx, id)
	if err != nil {
		return nil, c.backendError("proposal "+id, err)
	}
	return encode(resultsMessage(r))
}

// castVote votes as the module: the voter is the socket's module name, never
// something the module says.
func castVote(ctx context.Context, c *conn, params []byte) ([]byte, *callError) {
	var p pb.VoteParams
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	if p.ProposalId == "" || p.Choice == "" {
		return nil, errorf(pb.ErrorCode_INVALID, "proposal_id and choice are required")
	}
	prop, err := c.h.b.Proposal(ctx, p.ProposalId)
	if err != nil {
		return nil, c.backendError("proposal "+p.ProposalId, err)
	}
	if !prop.Open {
		return nil, errorf(pb.ErrorCode_INVALID, "proposal %s is closed", p.ProposalId)
	}
	if !slices.Contains(prop.Choices, p.Choice) {
		return nil, errorf(pb.ErrorCode_INVALID, "proposal %s has no choice %q", p.ProposalId, p.Choice)
	}
	r, err := c.h.b.CastVote(ctx, c.m.spec.Name, p.ProposalId, p.Choice)
	if err != nil {
		return nil, c.backendError("proposal "+p.ProposalId, err)
	}
	c.m.log.info("hub: vote cast", str("proposal", p.ProposalId), str("choice", p.Choice))
	return encode(resultsMessage(r))
}
