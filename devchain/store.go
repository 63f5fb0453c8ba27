package devchain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// The database layout. Every key and value is fixed binary except blocks,
// transactions and proposals, which use their wire or JSON encoding.
var (
	bucketMeta      = []byte("meta")      // metaKey* -> value
	bucketBlocks    = []byte("blocks")    // block hash -> height(8) || block (wire, with witness)
	bucketHeights   = []byte("heights")   // height(8) -> block hash, best chain only
	bucketTxIndex   = []byte("txindex")   // txid -> block hash(32) || index in block(4), best chain only
	bucketUtxo      = []byte("utxo")      // outpoint(36) -> utxo entry
	bucketWallet    = []byte("wallet")    // height(8) || outpoint(36) -> nil: spendable wallet coins, oldest first
	bucketUndo      = []byte("undo")      // block hash -> the outputs the block spent, for InvalidateTip
	bucketMempool   = []byte("mempool")   // txid -> added(8) || fee(8) || tx (wire, with witness)
	bucketProposals = []byte("proposals") // proposal id -> JSON storedProposal
	bucketVotes     = []byte("votes")     // proposal id || 0x00 || voter -> choice

	allBuckets = [][]byte{bucketMeta, bucketBlocks, bucketHeights, bucketTxIndex, bucketUtxo,
		bucketWallet, bucketUndo, bucketMempool, bucketProposals, bucketVotes}

	metaKeyVersion   = []byte("version")
	metaKeyNetwork   = []byte("network")
	metaKeyTipHash   = []byte("tip-hash")
	metaKeyTipHeight = []byte("tip-height")
	metaKeyChainwork = []byte("chainwork")
	metaKeyWalletKey = []byte("wallet-key")
)

// schemaVersion is bumped when the layout above changes incompatibly.
const schemaVersion = 1

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func outpointKey(op wire.OutPoint) []byte {
	k := make([]byte, 36)
	copy(k, op.Hash[:])
	binary.BigEndian.PutUint32(k[32:], op.Index)
	return k
}

func decodeOutpoint(k []byte) (wire.OutPoint, error) {
	if len(k) != 36 {
		return wire.OutPoint{}, fmt.Errorf("outpoint key of %d bytes", len(k))
	}
	var op wire.OutPoint
	copy(op.Hash[:], k[:32])
	op.Index = binary.BigEndian.Uint32(k[32:])
	return op, nil
}

func walletKey(height uint64, op wire.OutPoint) []byte {
	return append(u64(height), outpointKey(op)...)
}

// encodeUtxo is value(8) || height(8) || flags(1) || pkScript.
func encodeUtxo(e hub.UtxoEntry) []byte {
	b := make([]byte, 17+len(e.PkScript))
	binary.BigEndian.PutUint64(b[0:], uint64(e.Value))
	binary.BigEndian.PutUint64(b[8:], e.Height)
	if e.Coinbase {
		b[16] = 1
	}
	copy(b[17:], e.PkScript)
	return b
}

func decodeUtxo(b []byte) (hub.UtxoEntry, error) {
	if len(b) < 17 {
		return hub.UtxoEntry{}, fmt.Errorf("utxo entry of %d bytes", len(b))
	}
	return hub.UtxoEntry{
		Value:    int64(binary.BigEndian.Uint64(b[0:])),
		Height:   binary.BigEndian.Uint64(b[8:]),
		Coinbase: b[16]&1 != 0,
		PkScript: append([]byte(nil), b[17:]...),
	}, nil
}

// spentOutput is one undo record: an output a block spent, as it was.
type spentOutput struct {
	op    wire.OutPoint
	entry hub.UtxoEntry
}

// encodeUndo is, per spent output: outpoint(36) || len(4) || utxo entry.
func encodeUndo(spent []spentOutput) []byte {
	var buf bytes.Buffer
	for _, s := range spent {
		e := encodeUtxo(s.entry)
		buf.Write(outpointKey(s.op))
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(e)))
		buf.Write(n[:])
		buf.Write(e)
	}
	return buf.Bytes()
}

func decodeUndo(b []byte) ([]spentOutput, error) {
	var out []spentOutput
	for len(b) > 0 {
		if len(b) < 40 {
			return nil, errors.New("truncated undo record")
		}
		op, _ := decodeOutpoint(b[:36])
		n := int(binary.BigEndian.Uint32(b[36:40]))
		if len(b) < 40+n {
			return nil, errors.New("truncated undo entry")
		}
		e, err := decodeUtxo(b[40 : 40+n])
		if err != nil {
			return nil, err
		}
		out = append(out, spentOutput{op: op, entry: e})
		b = b[40+n:]
	}
	return out, nil
}

func encodeBlock(height uint64, blk *wire.MsgBlock) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(u64(height))
	if err := blk.Serialize(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeBlock(b []byte) (*wire.MsgBlock, uint64, error) {
	if len(b) < 8+80 {
		return nil, 0, fmt.Errorf("block record of %d bytes", len(b))
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b[8:])); err != nil {
		return nil, 0, err
	}
	return &blk, binary.BigEndian.Uint64(b[:8]), nil
}

func decodeHeader(b []byte) (*wire.BlockHeader, uint64, error) {
	if len(b) < 8+80 {
		return nil, 0, fmt.Errorf("block record of %d bytes", len(b))
	}
	var h wire.BlockHeader
	if err := h.Deserialize(bytes.NewReader(b[8 : 8+80])); err != nil {
		return nil, 0, err
	}
	return &h, binary.BigEndian.Uint64(b[:8]), nil
}

// mempoolRecord is a mempool transaction as stored and as held in memory.
type mempoolRecord struct {
	tx    *wire.MsgTx
	fee   int64
	vsize uint64
	added int64 // unix seconds
}

func encodeMempool(r *mempoolRecord) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(u64(uint64(r.added)))
	buf.Write(u64(uint64(r.fee)))
	if err := r.tx.Serialize(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeMempool(b []byte) (*mempoolRecord, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("mempool record of %d bytes", len(b))
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(b[16:])); err != nil {
		return nil, err
	}
	return &mempoolRecord{
		tx:    &tx,
		added: int64(binary.BigEndian.Uint64(b[0:])),
		fee:   int64(binary.BigEndian.Uint64(b[8:])),
		vsize: txVSize(&tx),
	}, nil
}

// txVSize is BIP141's virtual size: weight / 4, rounded up.
func txVSize(tx *wire.MsgTx) uint64 {
	weight := uint64(tx.SerializeSizeStripped()*3 + tx.SerializeSize())
	return (weight + 3) / 4
}

// tipRecord is the best chain's tip as stored in meta.
type tipRecord struct {
	hash      chainhash.Hash
	height    uint64
	chainwork *big.Int
}

func readTip(tx *bolt.Tx) (tipRecord, error) {
	m := tx.Bucket(bucketMeta)
	h, ht, w := m.Get(metaKeyTipHash), m.Get(metaKeyTipHeight), m.Get(metaKeyChainwork)
	if len(h) != 32 || len(ht) != 8 || w == nil {
		return tipRecord{}, errors.New("no chain tip recorded")
	}
	var t tipRecord
	copy(t.hash[:], h)
	t.height = binary.BigEndian.Uint64(ht)
	t.chainwork = new(big.Int).SetBytes(w)
	return t, nil
}

func writeTip(tx *bolt.Tx, t tipRecord) error {
	m := tx.Bucket(bucketMeta)
	if err := m.Put(metaKeyTipHash, t.hash[:]); err != nil {
		return err
	}
	if err := m.Put(metaKeyTipHeight, u64(t.height)); err != nil {
		return err
	}
	return m.Put(metaKeyChainwork, t.chainwork.Bytes())
}
