package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"sort"

	"github.com/btcsuite/btcd/chainhash/v2"
)

// mergedMiningMagic starts the commitment in the parent chain's coinbase
// (the AuxPoW convention).
var mergedMiningMagic = []byte{0xfa, 0xbe, 'm', 'm'}

// leafTag separates this module's leaf hashes from any other sha256 use.
const leafTag = "blvm-merge-mining/v1"

// TemplateRef is the part of a stratum-v2 GetTemplate answer the commitment
// binds to.
type TemplateRef struct {
	Height   uint64 `json:"height"`
	PrevHash string `json:"prev_hash"`
}

// Commitment is what merge-mining publishes for one template.
type Commitment struct {
	AuxChains []string `json:"aux_chains"` // sorted, distinct
	Height    uint64   `json:"height"`
	PrevHash  string   `json:"prev_hash"`
	AuxRoot   string   `json:"aux_root"` // merkle root over the aux chain leaves, hex
	TreeSize  uint32   `json:"tree_size"`
	// CoinbaseCommitment is the 44 bytes for the parent coinbase, hex:
	// magic, aux root, tree size (LE u32), nonce (LE u32, 0).
	CoinbaseCommitment string `json:"coinbase_commitment"`
}

// ComputeCommitment commits to every aux chain for the block that template
// would mine. Each chain's leaf binds its name to the parent's prev hash
// and height, so a commitment cannot be replayed on another template; the
// order chains are configured in does not matter.
func ComputeCommitment(auxChains []string, t TemplateRef) (Commitment, error) {
	chains := distinctSorted(auxChains)
	if len(chains) == 0 {
		return Commitment{}, fmt.Errorf("no aux chains configured")
	}
	prev, err := chainhash.NewHashFromStr(t.PrevHash)
	if err != nil || len(t.PrevHash) != 2*chainhash.HashSize {
		return Commitment{}, fmt.Errorf("template prev_hash %q is not a block hash", t.PrevHash)
	}
	// The tree is padded to a power of two, as AuxPoW's merkle size is.
	size := uint32(1) << bits.Len(uint(len(chains)-1))
	leaves := make([][32]byte, size)
	for i := range leaves {
		name := chains[min(i, len(chains)-1)] // padding repeats the last leaf
		leaves[i] = leaf(name, prev, t.Height)
	}
	for len(leaves) > 1 {
		next := make([][32]byte, len(leaves)/2)
		for i := range next {
			next[i] = sha256d(append(leaves[2*i][:], leaves[2*i+1][:]...))
		}
		leaves = next
	}
	root := leaves[0]
	cb := append([]byte{}, mergedMiningMagic...)
	cb = append(cb, root[:]...)
	cb = binary.LittleEndian.AppendUint32(cb, size)
	cb = binary.LittleEndian.AppendUint32(cb, 0)
	return Commitment{
		AuxChains:          chains,
		Height:             t.Height,
		PrevHash:           t.PrevHash,
		AuxRoot:            hex.EncodeToString(root[:]),
		TreeSize:           size,
		CoinbaseCommitment: hex.EncodeToString(cb),
	}, nil
}

func leaf(chain string, prev *chainhash.Hash, height uint64) [32]byte {
	var buf []byte
	buf = append(buf, leafTag...)
	buf = append(buf, 0)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(chain)))
	buf = append(buf, chain...)
	buf = append(buf, prev[:]...)
	buf = binary.LittleEndian.AppendUint64(buf, height)
	return sha256d(buf)
}

func sha256d(b []byte) [32]byte {
	h := sha256.Sum256(b)
	return sha256.Sum256(h[:])
}

func distinctSorted(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
