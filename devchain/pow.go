package devchain

import (
	"math/big"

	"github.com/btcsuite/btcd/chainhash/v2"
)

// compactToTarget expands the compact "bits" encoding of a block header into
// the 256-bit target: a 3-byte mantissa times 256^(exponent-3). The sign bit
// (0x00800000) makes a negative target, which no valid header uses, so it is
// reported as nil.
func compactToTarget(bits uint32) *big.Int {
	mantissa := int64(bits & 0x007fffff)
	exponent := uint(bits >> 24)
	if bits&0x00800000 != 0 {
		return nil
	}
	t := big.NewInt(mantissa)
	if exponent <= 3 {
		return t.Rsh(t, 8*(3-exponent))
	}
	return t.Lsh(t, 8*(exponent-3))
}

// hashToInt reads a block hash as the number proof of work compares: the hash
// bytes are little-endian.
func hashToInt(h chainhash.Hash) *big.Int {
	var be [chainhash.HashSize]byte
	for i := range h {
		be[chainhash.HashSize-1-i] = h[i]
	}
	return new(big.Int).SetBytes(be[:])
}

// meetsTarget reports whether hash is at or below the target encoded by bits.
func meetsTarget(hash chainhash.Hash, bits uint32) bool {
	target := compactToTarget(bits)
	if target == nil || target.Sign() <= 0 {
		return false
	}
	return hashToInt(hash).Cmp(target) <= 0
}

// blockWork is the expected number of hashes for one block at bits:
// 2^256 / (target+1), the quantity chainwork sums.
func blockWork(bits uint32) *big.Int {
	target := compactToTarget(bits)
	if target == nil || target.Sign() <= 0 {
		return new(big.Int)
	}
	denom := new(big.Int).Add(target, big.NewInt(1))
	return new(big.Int).Div(new(big.Int).Lsh(big.NewInt(1), 256), denom)
}
