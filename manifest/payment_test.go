package manifest

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSplitPayment(t *testing.T) {
	tests := []struct {
		price int64
		want  PaymentSplit
	}{
		{0, PaymentSplit{}},
		{-5, PaymentSplit{}},
		{1, PaymentSplit{Author: 1}},
		{3, PaymentSplit{Author: 3}},
		{10, PaymentSplit{Author: 8, Marketplace: 1, Node: 1}},
		{19, PaymentSplit{Author: 15, Marketplace: 2, Node: 2}},
		{100, PaymentSplit{Author: 75, Marketplace: 15, Node: 10}},
		{101, PaymentSplit{Author: 76, Marketplace: 15, Node: 10}},
		{100000, PaymentSplit{Author: 75000, Marketplace: 15000, Node: 10000}},
		{maxSats, PaymentSplit{Author: maxSats / 100 * 75, Marketplace: maxSats / 100 * 15, Node: maxSats / 100 * 10}},
	}
	for _, tt := range tests {
		if got := SplitPayment(tt.price); got != tt.want {
			t.Errorf("SplitPayment(%d) = %+v, want %+v", tt.price, got, tt.want)
		}
	}
}

// TestSplitPaymentProperties checks, over many prices, that the shares sum
// exactly, stay within one satoshi of their ideal, and round the way the
// documented rule says.
func TestSplitPaymentProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prices := []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 53}
	for p := int64(1); p <= 10000; p++ {
		prices = append(prices, p)
	}
	for range 100000 {
		prices = append(prices, r.Int64N(maxSats)+1, r.Int64())
	}
	for _, p := range prices {
		s := SplitPayment(p)
		if s.Author+s.Marketplace+s.Node != p {
			t.Fatalf("SplitPayment(%d) = %+v does not sum to the price", p, s)
		}
		if s.Author < 0 || s.Marketplace < 0 || s.Node < 0 {
			t.Fatalf("SplitPayment(%d) = %+v has a negative share", p, s)
		}
		// Ideal shares as exact rationals over 100: compare 100*share with pct*p
		// using 128-bit-safe arithmetic via big-enough decomposition.
		for _, c := range []struct {
			name  string
			share int64
			pct   int64
		}{{"author", s.Author, 75}, {"marketplace", s.Marketplace, 15}, {"node", s.Node, 10}} {
			diff := diffHundredths(c.share, p, c.pct) // 100*share - pct*p
			if diff <= -100 || diff >= 100 {
				t.Fatalf("SplitPayment(%d): %s share %d is a satoshi or more from %d%%", p, c.name, c.share, c.pct)
			}
			if c.name == "author" && diff < 0 {
				t.Fatalf("SplitPayment(%d): author rounded down", p)
			}
			if c.name == "marketplace" && diff > 0 {
				t.Fatalf("SplitPayment(%d): marketplace rounded up", p)
			}
		}
	}
}

// diffHundredths returns 100*share - pct*price without overflow, by
// splitting both sides into multiples of 100 and a remainder.
func diffHundredths(share, price, pct int64) int64 {
	q, r := price/100, price%100
	// pct*price = 100*(pct*q) + pct*r, so 100*share - pct*price =
	// 100*(share - pct*q) - pct*r, and share - pct*q is small.
	return 100*(share-pct*q) - pct*r
}
