package devchain

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

const (
	// feeRate is what wallet transactions pay, in satoshis per vbyte.
	feeRate = 2
	// maxDERSigLen is the longest DER encoding of a low-S secp256k1
	// signature, without the sighash byte.
	maxDERSigLen = 72
	// minWalletCoin is the smallest output the wallet spends; smaller ones
	// would cost more in fees than they are worth.
	minWalletCoin = 100_000
	// dustLimit is the smallest output the wallet creates.
	dustLimit = 546
	// splitAbove: a coin of at least this value (1 BTC) is split into a
	// payment and change; smaller coins are merged in pairs, so values
	// neither grow nor shrink without bound.
	splitAbove = 100_000_000
	// walletScanLimit bounds how many wallet coins one block looks at.
	walletScanLimit = 1000
)

// p2wpkhScript is OP_0 <HASH160(compressed pubkey)>.
func p2wpkhScript(pub *btcec.PublicKey) ([]byte, error) {
	return txscript.NewScriptBuilder().AddOp(txscript.OP_0).
		AddData(address.Hash160(pub.SerializeCompressed())).Script()
}

func (c *Chain) isWalletCoin(e hub.UtxoEntry) bool {
	return e.Value >= minWalletCoin && bytes.Equal(e.PkScript, c.walletScript)
}

type walletCoin struct {
	op    wire.OutPoint
	entry hub.UtxoEntry
}

// spendableCoins returns up to want wallet coins, oldest first, that a
// transaction in the block at nextHeight may spend: not already spent by
// the mempool, and past coinbase maturity.
func (c *Chain) spendableCoins(tx *bolt.Tx, p *pending, nextHeight uint64, want int) ([]walletCoin, error) {
	var coins []walletCoin
	cur := tx.Bucket(bucketWallet).Cursor()
	utxos := tx.Bucket(bucketUtxo)
	scanned := 0
	for k, _ := cur.First(); k != nil && len(coins) < want && scanned < walletScanLimit; k, _ = cur.Next() {
		scanned++
		if len(k) != 44 {
			return nil, fmt.Errorf("wallet key of %d bytes", len(k))
		}
		height := binary.BigEndian.Uint64(k[:8])
		op, _ := decodeOutpoint(k[8:])
		if _, ok := p.spent[op]; ok {
			continue
		}
		v := utxos.Get(k[8:])
		if v == nil {
			return nil, fmt.Errorf("wallet coin %s is not in the UTXO set", op)
		}
		e, err := decodeUtxo(v)
		if err != nil {
			return nil, err
		}
		if e.Coinbase && nextHeight-height < uint64(c.params.CoinbaseMaturity) {
			continue
		}
		coins = append(coins, walletCoin{op: op, entry: e})
	}
	return coins, nil
}

// createWalletTxs puts up to TxPerBlock signed wallet transactions into the
// mempool, for the block after p's tip.
func (c *Chain) createWalletTxs(tx *bolt.Tx, p *pending, now time.Time) error {
	if c.opts.TxPerBlock < 0 {
		return nil
	}
	coins, err := c.spendableCoins(tx, p, p.tip.height+1, 2*c.opts.TxPerBlock)
	if err != nil {
		return err
	}
	var created []*mempoolRecord
	for n := 0; n < c.opts.TxPerBlock && len(coins) > 0; n++ {
		take := 1
		if coins[0].entry.Value < splitAbove && len(coins) > 1 {
			take = 2
		}
		msg, fee, err := c.walletTx(coins[:take])
		if err != nil {
			return err
		}
		coins = coins[take:]
		created = append(created, &mempoolRecord{tx: msg, fee: fee, vsize: txVSize(msg), added: now.Unix()})
	}
	return p.admit(tx, created)
}

// admit stores records in the mempool and announces them in mempool order
// (added time, then txid), the order MempoolTxids lists them in.
func (p *pending) admit(tx *bolt.Tx, recs []*mempoolRecord) error {
	sortMempool(recs)
	b := tx.Bucket(bucketMempool)
	for _, r := range recs {
		rec, err := encodeMempool(r)
		if err != nil {
			return err
		}
		txid := r.tx.TxHash()
		if err := b.Put(txid[:], rec); err != nil {
			return err
		}
		p.addToMempool(txid, r)
		p.events = append(p.events, hub.NodeEvent{Kind: hub.MempoolTransactionAdded, Txid: txid})
	}
	return nil
}

// walletTx spends coins back to the wallet: one coin of at least splitAbove
// becomes a payment of a quarter and the change; anything else becomes one
// output. It pays feeRate on the signed transaction's vsize, and returns
// the transaction and its fee.
func (c *Chain) walletTx(coins []walletCoin) (*wire.MsgTx, int64, error) {
	msg := wire.NewMsgTx(2)
	var total int64
	prevOuts := make(map[wire.OutPoint]*wire.TxOut, len(coins))
	for _, coin := range coins {
		msg.AddTxIn(&wire.TxIn{PreviousOutPoint: coin.op, Sequence: wire.MaxTxInSequenceNum - 2})
		total += coin.entry.Value
		prevOuts[coin.op] = wire.NewTxOut(coin.entry.Value, coin.entry.PkScript)
	}
	if len(coins) == 1 && total >= splitAbove {
		msg.AddTxOut(wire.NewTxOut(total/4, c.walletScript))
	}
	var paid int64
	for _, out := range msg.TxOut {
		paid += out.Value
	}
	change := wire.NewTxOut(total-paid, c.walletScript)
	msg.AddTxOut(change)

	// The fee is set on the largest witness a P2WPKH input can carry: a
	// DER signature is 70 to 72 bytes plus the sighash byte, and which
	// length comes out depends on the bytes signed, the fee among them.
	// Sizing on the real signature and signing again could come out a
	// byte longer and pay below feeRate.
	pubKey := c.key.PubKey().SerializeCompressed()
	for i := range msg.TxIn {
		msg.TxIn[i].Witness = wire.TxWitness{make([]byte, maxDERSigLen+1), pubKey}
	}
	fee := int64(txVSize(msg)) * feeRate
	change.Value = total - paid - fee
	if change.Value < dustLimit {
		return nil, 0, fmt.Errorf("coins worth %d sat cannot pay a fee of %d sat", total, fee)
	}
	fetcher := txscript.NewMultiPrevOutFetcher(prevOuts)
	sigHashes := txscript.NewTxSigHashes(msg, fetcher)
	for i, coin := range coins {
		wit, err := txscript.WitnessSignature(msg, sigHashes, i, coin.entry.Value,
			coin.entry.PkScript, txscript.SigHashAll, c.key, true)
		if err != nil {
			return nil, 0, fmt.Errorf("sign input %d: %w", i, err)
		}
		msg.TxIn[i].Witness = wit
	}
	var out int64
	for _, o := range msg.TxOut {
		out += o.Value
	}
	return msg, total - out, nil
}
