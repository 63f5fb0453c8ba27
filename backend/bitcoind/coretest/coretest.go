// Package coretest is a stand-in for Bitcoin Core in tests: a real net/http
// JSON-RPC server on 127.0.0.1 that answers from a scripted chain with
// replies shaped as Bitcoin Core documents them (recorded shapes, not a
// live node), and a real ZMQ PUB socket that publishes hashblock and
// sequence messages with per-topic sequence numbers. No bitcoind can be
// installed here; the btcd driver is the one tested against a real node.
package coretest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/go-zeromq/zmq4"
)

// Credentials the server accepts.
const (
	User = "__cookie__"
	Pass = "recorded-replies"
)

// Node is the scripted chain and its servers.
type Node struct {
	URL string // http://127.0.0.1:port
	ZMQ string // tcp://127.0.0.1:port, "" without ZMQ

	t       testing.TB
	addr    string
	mu      sync.Mutex
	srv     *http.Server
	pub     zmq4.Socket
	chain   []*wire.MsgBlock // best chain, [0] is genesis
	known   map[chainhash.Hash]*wire.MsgBlock
	mempool []*wire.MsgTx
	clock   uint32
	seq     map[string]uint32
	drop    map[string]int
	calls   map[string]int
	stall   time.Duration
}

// Options of Start.
type Options struct {
	ZMQ bool // publish on a ZMQ PUB socket
}

// Start serves a regtest chain of the genesis block and blocks more,
// stopped in cleanup.
func Start(t testing.TB, opts Options, blocks int) *Node {
	t.Helper()
	n := &Node{t: t, known: map[chainhash.Hash]*wire.MsgBlock{}, seq: map[string]uint32{}, drop: map[string]int{}, calls: map[string]int{}, clock: 1_296_688_602}
	n.addBlockLocked(chainhash.Hash{})
	for range blocks {
		n.addBlockLocked(n.chain[len(n.chain)-1].BlockHash())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = l.Addr().String()
	n.URL = "http://" + n.addr
	n.serve(l)
	if opts.ZMQ {
		zl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ep := "tcp://" + zl.Addr().String()
		zl.Close()
		n.ZMQ = ep
		n.startPub()
	}
	t.Cleanup(n.Stop)
	return n
}

func (n *Node) serve(l net.Listener) {
	n.srv = &http.Server{Handler: http.HandlerFunc(n.handle), ReadHeaderTimeout: 5 * time.Second}
	go n.srv.Serve(l)
}

func (n *Node) startPub() {
	pub := zmq4.NewPub(context.Background())
	if err := pub.Listen(n.ZMQ); err != nil {
		n.t.Fatalf("zmq listen %s: %v", n.ZMQ, err)
	}
	n.pub = pub
}

// Stop closes both servers, as a node that went down.
func (n *Node) Stop() {
	n.mu.Lock()
	srv, pub := n.srv, n.pub
	n.srv, n.pub = nil, nil
	n.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	if pub != nil {
		pub.Close()
	}
}

// Restart serves again on the same addresses and chain.
func (n *Node) Restart() {
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if l, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		n.t.Fatalf("relisten %s: %v", n.addr, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.serve(l)
	if n.ZMQ != "" {
		n.startPub()
	}
}

// Stall makes every RPC answer after d (0: at once).
func (n *Node) Stall(d time.Duration) {
	n.mu.Lock()
	n.stall = d
	n.mu.Unlock()
}

// Drop makes the next k messages of topic go unsent while their sequence
// numbers are spent, as Core's high-water mark drops them.
func (n *Node) Drop(topic string, k int) {
	n.mu.Lock()
	n.drop[topic] += k
	n.mu.Unlock()
}

// Calls is how many times method was called.
func (n *Node) Calls(method string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[method]
}

func (n *Node) publishLocked(topic string, body []byte) {
	seq := n.seq[topic]
	n.seq[topic] = seq + 1
	if n.drop[topic] > 0 {
		n.drop[topic]--
		return
	}
	if n.pub == nil {
		return
	}
	var s [4]byte
	binary.LittleEndian.PutUint32(s[:], seq)
	_ = n.pub.Send(zmq4.NewMsgFrom([]byte(topic), body, s[:]))
}

func reversed(h chainhash.Hash) []byte {
	b := make([]byte, 32)
	for i := range 32 {
		b[i] = h[31-i]
	}
	return b
}

func (n *Node) sequenceLocked(h chainhash.Hash, label byte, mempoolSeq uint64) {
	body := append(reversed(h), label)
	if label == 'A' || label == 'R' {
		body = binary.LittleEndian.AppendUint64(body, mempoolSeq)
	}
	n.publishLocked("sequence", body)
}

// merkle is the block's merkle root over its txids.
func merkle(txs []*wire.MsgTx) chainhash.Hash {
	level := make([]chainhash.Hash, len(txs))
	for i, tx := range txs {
		level[i] = tx.TxHash()
	}
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		next := make([]chainhash.Hash, len(level)/2)
		for i := range next {
			var buf [64]byte
			copy(buf[:32], level[2*i][:])
			copy(buf[32:], level[2*i+1][:])
			next[i] = chainhash.DoubleHashH(buf[:])
		}
		level = next
	}
	return level[0]
}

// Script every coinbase pays to; the server checks no signatures.
var payTo = []byte{0x51} // OP_TRUE

func (n *Node) addBlockLocked(prev chainhash.Hash) *wire.MsgBlock {
	height := uint32(len(n.chain))
	cb := wire.NewMsgTx(2)
	sig := binary.LittleEndian.AppendUint32([]byte{4}, height)
	cb.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: wire.MaxPrevOutIndex}, sig, nil))
	cb.AddTxOut(wire.NewTxOut(50e8, payTo))
	txs := append([]*wire.MsgTx{cb}, n.mempool...)
	n.mempool = nil
	n.clock++
	blk := &wire.MsgBlock{Header: wire.BlockHeader{Version: 0x20000000, PrevBlock: prev, MerkleRoot: merkle(txs), Timestamp: time.Unix(int64(n.clock), 0), Bits: 0x207fffff}, Transactions: txs}
	n.chain = append(n.chain, blk)
	n.known[blk.BlockHash()] = blk
	return blk
}

// Mine appends count blocks, each confirming the mempool, and publishes
// hashblock and sequence C for each (and sequence R for nothing: Core
// does not publish R for transactions a block confirms).
func (n *Node) Mine(count int) []chainhash.Hash {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []chainhash.Hash
	for range count {
		blk := n.addBlockLocked(n.chain[len(n.chain)-1].BlockHash())
		h := blk.BlockHash()
		out = append(out, h)
		n.publishLocked("hashblock", reversed(h))
		n.sequenceLocked(h, 'C', 0)
	}
	return out
}

// Disconnect drops the top count blocks (invalidateblock), publishing
// sequence D for each and returning their non-coinbase transactions to
// the mempool.
func (n *Node) Disconnect(count int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for range count {
		top := n.chain[len(n.chain)-1]
		n.chain = n.chain[:len(n.chain)-1]
		n.mempool = append(n.mempool, top.Transactions[1:]...)
		n.sequenceLocked(top.BlockHash(), 'D', 0)
	}
}

// Tip is the best block and its height.
func (n *Node) Tip() (chainhash.Hash, uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.chain[len(n.chain)-1].BlockHash(), uint64(len(n.chain) - 1)
}

// SendTx spends the coinbase of block height (from 1) to OP_TRUE, puts it
// in the mempool and publishes sequence A.
func (n *Node) SendTx(height int) (*wire.MsgTx, wire.OutPoint) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cb := n.chain[height].Transactions[0]
	op := wire.OutPoint{Hash: cb.TxHash(), Index: 0}
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&op, []byte{0x51}, nil))
	tx.AddTxOut(wire.NewTxOut(cb.TxOut[0].Value-10_000, payTo))
	n.mempool = append(n.mempool, tx)
	n.sequenceLocked(tx.TxHash(), 'A', uint64(len(n.mempool)))
	return tx, op
}

// ---- JSON-RPC ----

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (n *Node) handle(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != User || p != Pass {
		// Core answers a bad login with 401 and no body.
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var req struct {
		ID     json.RawMessage   `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"result":null,"error":{"code":-32700,"message":"Parse error"},"id":null}`)
		return
	}
	n.mu.Lock()
	n.calls[req.Method]++
	stall := n.stall
	n.mu.Unlock()
	if stall > 0 {
		select {
		case <-time.After(stall):
		case <-r.Context().Done():
			return
		}
	}
	n.mu.Lock()
	res, rerr := n.answerLocked(req.Method, req.Params)
	n.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	out := map[string]any{"result": res, "error": rerr, "id": req.ID}
	if rerr != nil {
		// JSON-RPC 1.0: Core sends errors with HTTP 500 (404 for an
		// unknown method).
		if rerr.Code == -32601 {
			w.WriteHeader(http.StatusNotFound)
		} else {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}
	json.NewEncoder(w).Encode(out)
}

func str(raw []json.RawMessage, i int) string {
	var s string
	if i < len(raw) {
		json.Unmarshal(raw[i], &s)
	}
	return s
}

// verbose reads a verbose/verbosity parameter given as a bool or a number.
func verbose(raw []json.RawMessage, i int, def bool) bool {
	if i >= len(raw) {
		return def
	}
	var b bool
	if json.Unmarshal(raw[i], &b) == nil {
		return b
	}
	var k int
	json.Unmarshal(raw[i], &k)
	return k != 0
}

func hexOf(ser func(io.Writer) error) string {
	var buf bytes.Buffer
	ser(&buf)
	return hex.EncodeToString(buf.Bytes())
}

var (
	errNoBlock = &rpcError{-5, "Block not found"}
	errNoTx    = &rpcError{-5, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."}
)

func (n *Node) heightOf(h chainhash.Hash) int {
	for i, b := range n.chain {
		if b.BlockHash() == h {
			return i
		}
	}
	return -1
}

func (n *Node) answerLocked(method string, params []json.RawMessage) (any, *rpcError) {
	tip := n.chain[len(n.chain)-1]
	height := len(n.chain) - 1
	switch method {
	case "getblockchaininfo":
		// Fields as documented for Core 28 (a subset).
		return map[string]any{
			"chain": "regtest", "blocks": height, "headers": height,
			"bestblockhash": tip.BlockHash().String(), "difficulty": 4.656542373906925e-10,
			"time": tip.Header.Timestamp.Unix(), "mediantime": tip.Header.Timestamp.Unix() - 1,
			"verificationprogress": 1, "initialblockdownload": false,
			"chainwork": fmt.Sprintf("%064x", 2*(height+1)), "size_on_disk": 1000 * (height + 1),
			"pruned": false, "warnings": []string{},
		}, nil
	case "getbestblockhash":
		return tip.BlockHash().String(), nil
	case "getblockhash":
		var h int
		if len(params) > 0 {
			json.Unmarshal(params[0], &h)
		}
		if h < 0 || h > height {
			return nil, &rpcError{-8, "Block height out of range"}
		}
		return n.chain[h].BlockHash().String(), nil
	case "getblockheader", "getblock":
		hash, err := chainhash.NewHashFromStr(str(params, 0))
		if err != nil {
			return nil, &rpcError{-8, "blockhash must be of length 64"}
		}
		blk, ok := n.known[*hash]
		if !ok {
			return nil, errNoBlock
		}
		if method == "getblock" {
			if verbose(params, 1, true) {
				return nil, &rpcError{-8, "coretest answers verbosity 0 only"}
			}
			return hexOf(blk.Serialize), nil
		}
		if !verbose(params, 1, true) {
			return hexOf(blk.Header.Serialize), nil
		}
		h := n.heightOf(*hash)
		conf, ht := -1, 0
		if h >= 0 {
			conf, ht = height-h+1, h
		} else {
			// A side-chain block: its height through its parents.
			for p := blk; ; ht++ {
				q, ok := n.known[p.Header.PrevBlock]
				if !ok {
					break
				}
				p = q
			}
		}
		return map[string]any{
			"hash": hash.String(), "confirmations": conf, "height": ht, "version": blk.Header.Version,
			"merkleroot": blk.Header.MerkleRoot.String(), "time": blk.Header.Timestamp.Unix(),
			"nonce": blk.Header.Nonce, "bits": fmt.Sprintf("%08x", blk.Header.Bits),
			"previousblockhash": blk.Header.PrevBlock.String(), "nTx": len(blk.Transactions),
		}, nil
	case "getrawtransaction":
		txid, err := chainhash.NewHashFromStr(str(params, 0))
		if err != nil {
			return nil, &rpcError{-8, "txid must be of length 64"}
		}
		tx, blkHeight := n.findTxLocked(*txid)
		if tx == nil {
			return nil, errNoTx
		}
		if !verbose(params, 1, false) {
			return hexOf(tx.Serialize), nil
		}
		r := map[string]any{"txid": txid.String(), "hash": tx.WitnessHash().String(), "hex": hexOf(tx.Serialize), "version": tx.Version, "locktime": tx.LockTime, "vsize": tx.SerializeSize()}
		if blkHeight >= 0 {
			b := n.chain[blkHeight]
			r["blockhash"] = b.BlockHash().String()
			r["confirmations"] = height - blkHeight + 1
			r["time"], r["blocktime"] = b.Header.Timestamp.Unix(), b.Header.Timestamp.Unix()
		}
		return r, nil
	case "gettxout":
		txid, err := chainhash.NewHashFromStr(str(params, 0))
		if err != nil {
			return nil, &rpcError{-8, "txid must be of length 64"}
		}
		var idx uint32
		if len(params) > 1 {
			json.Unmarshal(params[1], &idx)
		}
		op := wire.OutPoint{Hash: *txid, Index: idx}
		tx, at := n.findTxLocked(*txid)
		if tx == nil || at < 0 || int(idx) >= len(tx.TxOut) || n.spentLocked(op) {
			return nil, nil // Core answers null for no such unspent output
		}
		out := tx.TxOut[idx]
		return map[string]any{
			"bestblock": tip.BlockHash().String(), "confirmations": height - at + 1,
			"value":        float64(out.Value) / 1e8,
			"scriptPubKey": map[string]any{"asm": "1", "hex": hex.EncodeToString(out.PkScript), "type": "nonstandard"},
			"coinbase":     len(tx.TxIn) == 1 && tx.TxIn[0].PreviousOutPoint.Index == wire.MaxPrevOutIndex && tx.TxIn[0].PreviousOutPoint.Hash == (chainhash.Hash{}),
		}, nil
	case "getrawmempool":
		if verbose(params, 0, false) {
			return nil, &rpcError{-8, "coretest answers verbose=false only"}
		}
		ids := make([]string, 0, len(n.mempool))
		for _, tx := range n.mempool {
			ids = append(ids, tx.TxHash().String())
		}
		return ids, nil
	case "getmempoolentry":
		txid, err := chainhash.NewHashFromStr(str(params, 0))
		if err != nil {
			return nil, &rpcError{-8, "txid must be of length 64"}
		}
		for _, tx := range n.mempool {
			if tx.TxHash() == *txid {
				vs := tx.SerializeSize()
				return map[string]any{
					"vsize": vs, "weight": 4 * vs, "time": int64(n.clock), "height": height,
					"descendantcount": 1, "descendantsize": vs, "ancestorcount": 1, "ancestorsize": vs,
					"wtxid":   tx.WitnessHash().String(),
					"fees":    map[string]any{"base": 0.0001, "modified": 0.0001, "ancestor": 0.0001, "descendant": 0.0001},
					"depends": []string{}, "spentby": []string{}, "bip125-replaceable": false, "unbroadcast": false,
				}, nil
			}
		}
		return nil, &rpcError{-5, "Transaction not in mempool"}
	}
	return nil, &rpcError{-32601, "Method not found"}
}

// findTxLocked finds a transaction in the best chain (as with -txindex),
// returning its block height, or in the mempool (height -1).
func (n *Node) findTxLocked(txid chainhash.Hash) (*wire.MsgTx, int) {
	for h, b := range n.chain {
		for _, tx := range b.Transactions {
			if tx.TxHash() == txid {
				return tx, h
			}
		}
	}
	for _, tx := range n.mempool {
		if tx.TxHash() == txid {
			return tx, -1
		}
	}
	return nil, -1
}

func (n *Node) spentLocked(op wire.OutPoint) bool {
	for _, b := range n.chain {
		for _, tx := range b.Transactions {
			for _, in := range tx.TxIn {
				if in.PreviousOutPoint == op {
					return true
				}
			}
		}
	}
	return false
}
