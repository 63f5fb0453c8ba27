package devchain

import (
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
)

// targetFromBits is the test's own reading of the compact encoding:
// mantissa * 256^(exponent-3), written as a power rather than a shift.
func targetFromBits(bits uint32) *big.Int {
	mant := big.NewInt(int64(bits & 0x007fffff))
	exp := int64(bits>>24) - 3
	if exp < 0 {
		return mant.Div(mant, new(big.Int).Exp(big.NewInt(256), big.NewInt(-exp), nil))
	}
	return mant.Mul(mant, new(big.Int).Exp(big.NewInt(256), big.NewInt(exp), nil))
}

func mustHex(t *testing.T, s string) *big.Int {
	t.Helper()
	v, ok := new(big.Int).SetString(s, 16)
	if !ok {
		t.Fatalf("bad hex %q", s)
	}
	return v
}

func TestCompactToTarget(t *testing.T) {
	tests := []struct {
		bits uint32
		want string
	}{
		{0x207fffff, "7fffff0000000000000000000000000000000000000000000000000000000000"},
		{0x1d00ffff, "00000000ffff0000000000000000000000000000000000000000000000000000"},
		{0x1b0404cb, "00000000000404cb000000000000000000000000000000000000000000000000"},
		{0x03123456, "123456"},
		{0x02123456, "1234"},
		{0x01003456, "0"},
	}
	for _, tt := range tests {
		got := compactToTarget(tt.bits)
		if got.Cmp(mustHex(t, tt.want)) != 0 {
			t.Errorf("compactToTarget(%08x) = %x, want %s", tt.bits, got, tt.want)
		}
		if tt.bits>>24 >= 3 && got.Cmp(targetFromBits(tt.bits)) != 0 {
			t.Errorf("compactToTarget(%08x) = %x, reference says %x", tt.bits, got, targetFromBits(tt.bits))
		}
	}
	if compactToTarget(0x04923456) != nil {
		t.Error("a negative compact target must be refused")
	}
}

func TestRegtestTargetWithinPowLimit(t *testing.T) {
	p := chaincfg.RegressionNetParams
	if target := compactToTarget(p.PowLimitBits); target.Cmp(p.PowLimit) > 0 {
		t.Fatalf("target %x above regtest pow limit %x", target, p.PowLimit)
	}
}

func TestBlockWork(t *testing.T) {
	if w := blockWork(0x207fffff); w.Cmp(big.NewInt(2)) != 0 {
		t.Errorf("regtest work per block = %s, want 2", w)
	}
	// Bitcoin Core's chainwork of mainnet block 1 (two blocks at 0x1d00ffff).
	two := new(big.Int).Mul(blockWork(0x1d00ffff), big.NewInt(2))
	if two.Cmp(mustHex(t, "200020002")) != 0 {
		t.Errorf("mainnet chainwork at height 1 = %x, want 200020002", two)
	}
}

func TestMeetsTarget(t *testing.T) {
	g := chaincfg.RegressionNetParams.GenesisBlock
	if !meetsTarget(g.BlockHash(), g.Header.Bits) {
		t.Fatal("regtest genesis block does not meet its own target")
	}
	main := chaincfg.MainNetParams.GenesisBlock
	if !meetsTarget(main.BlockHash(), main.Header.Bits) {
		t.Fatal("mainnet genesis block does not meet its own target")
	}
	var high chainhash.Hash
	high[31] = 0x80 // the most significant byte: above 0x7fffff...
	if meetsTarget(high, 0x207fffff) {
		t.Fatal("a hash above the regtest target passed")
	}
}
