package main

import (
	"fmt"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// blockVersion is the version a template asks miners to use: BIP 9's top
// bits with no deployment signalled.
const blockVersion = 0x20000000

// Template is one job template: what a miner needs to build the next block
// on top of the node's tip, less the coinbase, which the pool builds. The
// JSON form is what GetTemplate answers.
type Template struct {
	Network  string `json:"network"`
	Height   uint64 `json:"height"`    // of the block to be mined
	PrevHash string `json:"prev_hash"` // display order
	Version  int32  `json:"version"`
	Bits     string `json:"bits"` // compact target, 8 hex digits
	CurTime  int64  `json:"curtime"`
	// Txids are the mempool transactions to include after the coinbase,
	// display order.
	Txids []string `json:"txids"`
	// MerkleBranch is the coinbase's merkle path, as in Stratum's
	// mining.notify: internal byte order, hex. Hash the coinbase txid with
	// each in turn (coinbase on the left) to get the merkle root.
	MerkleBranch   []string `json:"merkle_branch"`
	PoolFeePercent float64  `json:"pool_fee_percent"`
	UpdatedUnix    int64    `json:"updated_unix"`
}

// BuildTemplate makes the template for the block after info's tip.
func BuildTemplate(info *pb.ChainInfo, txids []string, now time.Time, feePercent float64) (*Template, error) {
	if info.GetBestHash() == "" {
		return nil, fmt.Errorf("chain info has no best hash")
	}
	hashes := make([]chainhash.Hash, len(txids))
	for i, s := range txids {
		h, err := chainhash.NewHashFromStr(s)
		if err != nil {
			return nil, fmt.Errorf("mempool txid %q: %w", s, err)
		}
		hashes[i] = *h
	}
	branch := MerkleBranch(hashes)
	t := &Template{
		Network:        info.GetNetwork(),
		Height:         info.GetHeight() + 1,
		PrevHash:       info.GetBestHash(),
		Version:        blockVersion,
		Bits:           fmt.Sprintf("%08x", info.GetBits()),
		CurTime:        max(now.Unix(), info.GetMedianTime()+1), // must exceed the median time past
		Txids:          append([]string{}, txids...),
		MerkleBranch:   make([]string, len(branch)),
		PoolFeePercent: feePercent,
		UpdatedUnix:    now.Unix(),
	}
	for i, h := range branch {
		t.MerkleBranch[i] = fmt.Sprintf("%x", h[:])
	}
	return t, nil
}

// MerkleBranch is the merkle path of the coinbase (leaf 0) in a block whose
// other transactions are txids. It never depends on the coinbase itself,
// which is why a pool can hand it out before the coinbase is built.
func MerkleBranch(txids []chainhash.Hash) []chainhash.Hash {
	level := append([]chainhash.Hash{{}}, txids...) // leaf 0: the coinbase, unknown
	var branch []chainhash.Hash
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		branch = append(branch, level[1])
		next := make([]chainhash.Hash, len(level)/2)
		for i := range next {
			next[i] = hashPair(level[2*i], level[2*i+1])
		}
		level = next
	}
	return branch
}

// MerkleRoot is the root for coinbase under branch.
func MerkleRoot(coinbase chainhash.Hash, branch []chainhash.Hash) chainhash.Hash {
	h := coinbase
	for _, b := range branch {
		h = hashPair(h, b)
	}
	return h
}

func hashPair(a, b chainhash.Hash) chainhash.Hash {
	var buf [64]byte
	copy(buf[:32], a[:])
	copy(buf[32:], b[:])
	return chainhash.DoubleHashH(buf[:])
}
