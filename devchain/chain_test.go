package devchain

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// testClock advances one second per reading, so every block gets a
// distinct timestamp without the test sleeping.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func openTest(t *testing.T, opts Options) (*Chain, string) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = newClock().Now
	}
	path := filepath.Join(t.TempDir(), "devchain.db")
	c, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func mine(t *testing.T, c *Chain, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.MineBlock(context.Background()); err != nil {
			t.Fatalf("MineBlock: %v", err)
		}
	}
}

// coinbaseHeight decodes the BIP34 height pushed first in a coinbase
// scriptSig.
func coinbaseHeight(t *testing.T, sigScript []byte) uint64 {
	t.Helper()
	tok := txscript.MakeScriptTokenizer(0, sigScript)
	if !tok.Next() {
		t.Fatalf("empty coinbase scriptSig: %v", tok.Err())
	}
	op := tok.Opcode()
	switch {
	case op == txscript.OP_0:
		return 0
	case op >= txscript.OP_1 && op <= txscript.OP_16:
		return uint64(op - txscript.OP_1 + 1)
	}
	data := tok.Data()
	if len(data) == 0 || len(data) > 8 || data[len(data)-1]&0x80 != 0 {
		t.Fatalf("coinbase height push %x is not a positive script number", data)
	}
	var h uint64
	for i := len(data) - 1; i >= 0; i-- {
		h = h<<8 | uint64(data[i])
	}
	return h
}

// verifyTx runs every input of tx through btcd's script engine, with the
// spent outputs fetched through the chain's own Transaction method.
func verifyTx(t *testing.T, c *Chain, tx *wire.MsgTx) int64 {
	t.Helper()
	ctx := context.Background()
	prevOuts := make(map[wire.OutPoint]*wire.TxOut)
	var in int64
	for _, ti := range tx.TxIn {
		prev, err := c.Transaction(ctx, ti.PreviousOutPoint.Hash)
		if err != nil {
			t.Fatalf("tx %s spends %s: %v", tx.TxHash(), ti.PreviousOutPoint, err)
		}
		out := prev.Tx.TxOut[ti.PreviousOutPoint.Index]
		prevOuts[ti.PreviousOutPoint] = out
		in += out.Value
	}
	if err := verifyScripts(tx, prevOuts); err != nil {
		t.Fatalf("tx %s: %v", tx.TxHash(), err)
	}
	var out int64
	for _, o := range tx.TxOut {
		out += o.Value
	}
	if in <= out {
		t.Fatalf("tx %s spends %d and creates %d", tx.TxHash(), in, out)
	}
	return in - out
}

func verifyScripts(tx *wire.MsgTx, prevOuts map[wire.OutPoint]*wire.TxOut) error {
	fetcher := txscript.NewMultiPrevOutFetcher(prevOuts)
	sigHashes := txscript.NewTxSigHashes(tx, fetcher)
	for i, ti := range tx.TxIn {
		prev := prevOuts[ti.PreviousOutPoint]
		vm, err := txscript.NewEngine(prev.PkScript, tx, i, txscript.StandardVerifyFlags,
			nil, sigHashes, prev.Value, fetcher)
		if err != nil {
			return err
		}
		if err := vm.Execute(); err != nil {
			return err
		}
	}
	return nil
}

// checkChain walks the best chain from genesis and checks every block as a
// validating node would for what the dev chain builds.
func checkChain(t *testing.T, c *Chain) (walletTxs int) {
	t.Helper()
	ctx := context.Background()
	params := chaincfg.RegressionNetParams
	tipHash, tip, err := c.ChainTip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var prev *wire.MsgBlock
	var times []int64
	for h := uint64(0); h <= tip; h++ {
		hash, err := c.BlockHash(ctx, h)
		if err != nil {
			t.Fatalf("BlockHash(%d): %v", h, err)
		}
		blk, height, err := c.Block(ctx, hash)
		if err != nil || height != h {
			t.Fatalf("Block(%s) = height %d, %v; want %d", hash, height, err, h)
		}
		if got := blk.BlockHash(); got != hash {
			t.Fatalf("height %d: block hashes to %s, index says %s", h, got, hash)
		}
		if h == 0 {
			if hash != *params.GenesisHash {
				t.Fatalf("genesis %s, want %s", hash, params.GenesisHash)
			}
			prev, times = blk, append(times, blk.Header.Timestamp.Unix())
			continue
		}
		hdr := blk.Header
		if hdr.PrevBlock != prev.BlockHash() {
			t.Fatalf("height %d: prev %s, want %s", h, hdr.PrevBlock, prev.BlockHash())
		}
		if hdr.Bits != 0x207fffff {
			t.Fatalf("height %d: bits %08x", h, hdr.Bits)
		}
		if hashToIntRef(hash).Cmp(targetFromBits(hdr.Bits)) > 0 {
			t.Fatalf("height %d: hash %s above target", h, hash)
		}
		ids := make([]chainhash.Hash, len(blk.Transactions))
		for i, tx := range blk.Transactions {
			ids[i] = tx.TxHash()
		}
		if got := refMerkle(ids); got != hdr.MerkleRoot {
			t.Fatalf("height %d: merkle root %s, header says %s", h, got, hdr.MerkleRoot)
		}
		mtp := medianOf(times)
		if hdr.Timestamp.Unix() <= mtp {
			t.Fatalf("height %d: timestamp %d not above median time past %d", h, hdr.Timestamp.Unix(), mtp)
		}
		times = append(times, hdr.Timestamp.Unix())
		if len(times) > 11 {
			times = times[1:]
		}

		cb := blk.Transactions[0]
		if len(cb.TxIn) != 1 || cb.TxIn[0].PreviousOutPoint.Index != wire.MaxPrevOutIndex ||
			cb.TxIn[0].PreviousOutPoint.Hash != (chainhash.Hash{}) {
			t.Fatalf("height %d: first transaction is not a coinbase", h)
		}
		if got := coinbaseHeight(t, cb.TxIn[0].SignatureScript); got != h {
			t.Fatalf("height %d: coinbase says height %d", h, got)
		}
		if n := len(cb.TxIn[0].SignatureScript); n < 2 || n > 100 {
			t.Fatalf("height %d: coinbase scriptSig of %d bytes", h, n)
		}
		commit := refWitnessCommitment(blk)
		last := cb.TxOut[len(cb.TxOut)-1].PkScript
		if len(last) != 38 || last[0] != txscript.OP_RETURN || !bytes.Equal(last[2:6], []byte{0xaa, 0x21, 0xa9, 0xed}) ||
			!bytes.Equal(last[6:], commit[:]) {
			t.Fatalf("height %d: witness commitment %x, want %x", h, last, commit)
		}
		var fees int64
		for _, tx := range blk.Transactions[1:] {
			fees += verifyTx(t, c, tx)
			walletTxs++
		}
		var cbValue int64
		for _, o := range cb.TxOut {
			cbValue += o.Value
		}
		want := (int64(50*100_000_000) >> (h / 150)) + fees
		if cbValue != want {
			t.Fatalf("height %d: coinbase pays %d, want subsidy+fees %d", h, cbValue, want)
		}
		prev = blk
	}
	if prev.BlockHash() != tipHash {
		t.Fatalf("walk ended at %s, tip is %s", prev.BlockHash(), tipHash)
	}
	return walletTxs
}

// hashToIntRef reads the hash from its display form, which is already
// big-endian: independent of hashToInt's byte reversal.
func hashToIntRef(h chainhash.Hash) *big.Int {
	v, _ := new(big.Int).SetString(h.String(), 16)
	return v
}

func medianOf(times []int64) int64 {
	s := append([]int64(nil), times...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func TestNewChainBootstraps(t *testing.T) {
	start := time.Now()
	c, path := openTest(t, Options{})
	t.Logf("Open with %d initial blocks took %v", InitialBlocks, time.Since(start))
	ctx := context.Background()
	_, h, err := c.ChainTip(ctx)
	if err != nil || h != InitialBlocks {
		t.Fatalf("tip height %d, %v; want %d", h, err, InitialBlocks)
	}
	ids, err := c.MempoolTxids(ctx)
	if err != nil || len(ids) != DefaultTxPerBlock {
		t.Fatalf("mempool %d txs, %v; want %d", len(ids), err, DefaultTxPerBlock)
	}
	info, err := c.ChainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Network != "regtest" || info.Height != InitialBlocks || info.Bits != 0x207fffff {
		t.Fatalf("ChainInfo = %+v", info)
	}
	if info.Chainwork != "cc" { // 2 per block, genesis included: 2*102 = 0xcc
		t.Fatalf("chainwork %s, want cc", info.Chainwork)
	}
	var last []int64
	for h := info.Height - 10; h <= info.Height; h++ {
		bh, _ := c.BlockHash(ctx, h)
		hdr, _, err := c.BlockHeader(ctx, bh)
		if err != nil {
			t.Fatal(err)
		}
		last = append(last, hdr.Timestamp.Unix())
	}
	if info.MedianTime != medianOf(last) {
		t.Fatalf("MedianTime %d, median of the last 11 headers %d", info.MedianTime, medianOf(last))
	}
	if c.Network() != "regtest" {
		t.Fatalf("Network() = %q", c.Network())
	}
	mine(t, c, 20)
	if n := checkChain(t, c); n < 2*19 {
		t.Fatalf("only %d wallet transactions mined in 20 blocks", n)
	}
	if fi, err := os.Stat(path); err == nil {
		t.Logf("database after %d blocks: %d bytes", InitialBlocks+20, fi.Size())
	}
}

func TestTamperedSpendFailsVerification(t *testing.T) {
	c, _ := openTest(t, Options{})
	ctx := context.Background()
	ids, _ := c.MempoolTxids(ctx)
	e, err := c.MempoolEntry(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	prevOuts := make(map[wire.OutPoint]*wire.TxOut)
	for _, ti := range e.Tx.TxIn {
		prev, err := c.Transaction(ctx, ti.PreviousOutPoint.Hash)
		if err != nil {
			t.Fatal(err)
		}
		prevOuts[ti.PreviousOutPoint] = prev.Tx.TxOut[ti.PreviousOutPoint.Index]
	}
	if err := verifyScripts(e.Tx, prevOuts); err != nil {
		t.Fatalf("untouched tx fails: %v", err)
	}
	e.Tx.TxOut[0].Value++
	if err := verifyScripts(e.Tx, prevOuts); err == nil {
		t.Fatal("a tx with a changed output still verifies")
	}
}

func TestMempoolToConfirmed(t *testing.T) {
	c, _ := openTest(t, Options{TxPerBlock: 3})
	ctx := context.Background()
	// After the initial blocks only the coinbases of heights 1 and 2 are
	// mature; one block later the wallet has more than three coins.
	if ids, _ := c.MempoolTxids(ctx); len(ids) != 2 {
		t.Fatalf("after the initial blocks the mempool has %d txs, want 2 (two mature coinbases)", len(ids))
	}
	mine(t, c, 1)
	_, tip, _ := c.ChainTip(ctx)
	ids, err := c.MempoolTxids(ctx)
	if err != nil || len(ids) != 3 {
		t.Fatalf("mempool %v, %v", ids, err)
	}
	type spend struct {
		txid chainhash.Hash
		tx   *wire.MsgTx
	}
	var spends []spend
	for _, id := range ids {
		e, err := c.MempoolEntry(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Tx.TxHash() != id {
			t.Fatalf("entry %s holds tx %s", id, e.Tx.TxHash())
		}
		fee := verifyTx(t, c, e.Tx)
		if e.Fee != fee || fee <= 0 {
			t.Fatalf("entry fee %d, inputs minus outputs %d", e.Fee, fee)
		}
		weight := e.Tx.SerializeSizeStripped()*3 + e.Tx.SerializeSize()
		if want := uint64((weight + 3) / 4); e.VSize != want || e.VSize >= uint64(e.Tx.SerializeSize()) {
			t.Fatalf("vsize %d, want %d (size %d)", e.VSize, want, e.Tx.SerializeSize())
		}
		if e.Fee < int64(e.VSize)*feeRate {
			t.Fatalf("fee %d below %d sat/vB at vsize %d", e.Fee, feeRate, e.VSize)
		}
		info, err := c.Transaction(ctx, id)
		if err != nil || info.Block != nil || info.Confirmations != 0 {
			t.Fatalf("mempool Transaction = %+v, %v", info, err)
		}
		for _, in := range e.Tx.TxIn {
			u, err := c.Utxo(ctx, in.PreviousOutPoint)
			if err != nil {
				t.Fatalf("input %s not unspent before mining: %v", in.PreviousOutPoint, err)
			}
			if u.Coinbase && tip+1-u.Height < 100 {
				t.Fatalf("spends immature coinbase of height %d", u.Height)
			}
		}
		for i := range e.Tx.TxOut {
			if _, err := c.Utxo(ctx, wire.OutPoint{Hash: id, Index: uint32(i)}); !errors.Is(err, hub.ErrNotFound) {
				t.Fatalf("unconfirmed output %s:%d in the UTXO set: %v", id, i, err)
			}
		}
		spends = append(spends, spend{id, e.Tx})
	}

	blk, err := c.MineBlock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hash := blk.BlockHash()
	if len(blk.Transactions) != 4 {
		t.Fatalf("block has %d transactions, want coinbase + 3", len(blk.Transactions))
	}
	for _, s := range spends {
		if _, err := c.MempoolEntry(ctx, s.txid); !errors.Is(err, hub.ErrNotFound) {
			t.Fatalf("mined tx still in the mempool: %v", err)
		}
		info, err := c.Transaction(ctx, s.txid)
		if err != nil || info.Block == nil || *info.Block != hash || info.Height != tip+1 || info.Confirmations != 1 {
			t.Fatalf("confirmed Transaction = %+v, %v", info, err)
		}
		for _, in := range s.tx.TxIn {
			if _, err := c.Utxo(ctx, in.PreviousOutPoint); !errors.Is(err, hub.ErrNotFound) {
				t.Fatalf("spent output %s still unspent: %v", in.PreviousOutPoint, err)
			}
		}
		for i, out := range s.tx.TxOut {
			u, err := c.Utxo(ctx, wire.OutPoint{Hash: s.txid, Index: uint32(i)})
			if err != nil || u.Value != out.Value || u.Height != tip+1 || u.Coinbase ||
				!bytes.Equal(u.PkScript, out.PkScript) {
				t.Fatalf("new output %d = %+v, %v", i, u, err)
			}
		}
	}
	cbid := blk.Transactions[0].TxHash()
	u, err := c.Utxo(ctx, wire.OutPoint{Hash: cbid})
	if err != nil || !u.Coinbase || u.Height != tip+1 {
		t.Fatalf("coinbase output = %+v, %v", u, err)
	}
	if _, err := c.Utxo(ctx, wire.OutPoint{Hash: cbid, Index: 1}); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("the witness commitment OP_RETURN is in the UTXO set: %v", err)
	}
	mine(t, c, 1)
	if info, _ := c.Transaction(ctx, spends[0].txid); info.Confirmations != 2 {
		t.Fatalf("confirmations %d after one more block, want 2", info.Confirmations)
	}
	next, _ := c.MempoolTxids(ctx)
	if len(next) != 3 {
		t.Fatalf("mempool after mining has %d txs, want 3 new ones", len(next))
	}
}

func TestNotFound(t *testing.T) {
	c, _ := openTest(t, Options{TxPerBlock: -1})
	ctx := context.Background()
	var missing chainhash.Hash
	missing[0] = 1
	if ids, _ := c.MempoolTxids(ctx); len(ids) != 0 {
		t.Fatalf("TxPerBlock -1 still made %d transactions", len(ids))
	}
	checks := map[string]error{}
	_, checks["BlockHash"] = c.BlockHash(ctx, 1000)
	_, _, checks["Block"] = c.Block(ctx, missing)
	_, _, checks["BlockHeader"] = c.BlockHeader(ctx, missing)
	_, checks["Transaction"] = c.Transaction(ctx, missing)
	_, checks["Utxo"] = c.Utxo(ctx, wire.OutPoint{Hash: missing})
	_, checks["MempoolEntry"] = c.MempoolEntry(ctx, missing)
	_, checks["Proposal"] = c.Proposal(ctx, "nope")
	_, checks["Results"] = c.Results(ctx, "nope")
	_, checks["CastVote"] = c.CastVote(ctx, "v", "nope", "yes")
	for name, err := range checks {
		if !errors.Is(err, hub.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	// The genesis coinbase is indexed but, as on every network, unspendable.
	g := chaincfg.RegressionNetParams.GenesisBlock.Transactions[0].TxHash()
	if info, err := c.Transaction(ctx, g); err != nil || info.Height != 0 {
		t.Fatalf("genesis coinbase: %+v, %v", info, err)
	}
	if _, err := c.Utxo(ctx, wire.OutPoint{Hash: g}); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("genesis coinbase output is spendable: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := c.ChainTip(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if _, err := c.MineBlock(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("MineBlock with cancelled ctx: %v", err)
	}
}

func TestOptions(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), Options{Network: "mainnet"}); err == nil {
		t.Fatal("mainnet accepted")
	}
	c, path := openTest(t, Options{})
	start := time.Now()
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("a second Open of an open database succeeded")
	} else {
		t.Logf("second Open refused after %v: %v", time.Since(start), err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := c.ChainTip(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ChainTip after Close: %v", err)
	}
	if _, err := c.MineBlock(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("MineBlock after Close: %v", err)
	}
}

func TestRun(t *testing.T) {
	c, _ := openTest(t, Options{BlockInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, h, _ := c.ChainTip(context.Background())
	if h < InitialBlocks+5 {
		t.Fatalf("Run mined only to height %d in 200ms at 5ms", h)
	}
	checkChain(t, c)
}
