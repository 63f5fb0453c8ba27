package devchain

import (
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// merkleRoot computes Bitcoin's merkle root over hashes (txids for the header,
// wtxids for the witness commitment): pairs are double-SHA256'd level by
// level and an odd last element is paired with itself. An empty list gives the
// zero hash.
func merkleRoot(hashes []chainhash.Hash) chainhash.Hash {
	if len(hashes) == 0 {
		return chainhash.Hash{}
	}
	level := append([]chainhash.Hash(nil), hashes...)
	var buf [2 * chainhash.HashSize]byte
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			copy(buf[:chainhash.HashSize], level[i][:])
			copy(buf[chainhash.HashSize:], level[i+1][:])
			next = append(next, chainhash.DoubleHashH(buf[:]))
		}
		level = next
	}
	return level[0]
}

// txMerkleRoot is the header merkle root of txs, over their txids.
func txMerkleRoot(txs []*wire.MsgTx) chainhash.Hash {
	ids := make([]chainhash.Hash, len(txs))
	for i, tx := range txs {
		ids[i] = tx.TxHash()
	}
	return merkleRoot(ids)
}

// witnessCommitmentMagic prefixes the BIP141 commitment in the coinbase's
// OP_RETURN output.
var witnessCommitmentMagic = []byte{0xaa, 0x21, 0xa9, 0xed}

// witnessCommitment is BIP141's commitment: double-SHA256 of the witness
// merkle root (wtxids, the coinbase's counted as zero) and the coinbase's
// witness reserved value.
func witnessCommitment(txs []*wire.MsgTx, reserved [32]byte) chainhash.Hash {
	ids := make([]chainhash.Hash, len(txs))
	for i, tx := range txs {
		if i == 0 {
			continue // the coinbase's wtxid is defined as zero
		}
		ids[i] = tx.WitnessHash()
	}
	root := merkleRoot(ids)
	var buf [64]byte
	copy(buf[:32], root[:])
	copy(buf[32:], reserved[:])
	return chainhash.DoubleHashH(buf[:])
}
