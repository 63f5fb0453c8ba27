package market

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/address/v2/base58"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

func code(version byte, n int) string { return base58.CheckEncode(make([]byte, n), version) }

func TestPaymentCodes(t *testing.T) {
	// BIP47's test vector (Alice's payment code) and a synthetic one.
	for _, ok := range []string{"PM8TJS2JxQ5ztXUpBBRnpTbcUXbUHy2T1abfrb3KkAAtMEGNbey4oumH7Hc578WgQJhPjBxteQ5GHHToTYHE3A1w6p7tU6KSoFmWBVbFGjKPisZDbP97", code(0x47, 80)} {
		if err := ValidatePaymentCode("f", ok); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ s, want string }{
		{code(0x00, 80), "version byte 0x00"},
		{code(0x47, 79), "payload is 79 bytes"},
		{"PM8TJS2JxQ5ztXUpBBRnpTbcUXbUHy2T1abfrb3KkAAtMEGNbey4oumH7Hc578WgQJhPjBxteQ5GHHToTYHE3A1w6p7tU6KSoFmWBVbFGjKPisZDbP98", "not base58check"},
	} {
		if err := ValidatePaymentCode("payment.author_payment_code", tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.s, err, tc.want)
		}
	}
}

func TestReceipt(t *testing.T) {
	key, _ := verify.GenerateKey()
	pub := hex.EncodeToString(key.PubKey().SerializeCompressed())
	m := paidManifest(t)
	s := manifest.SplitPayment(1001)
	r := Receipt{Module: "paid", Versions: "^1.0.0", NodeID: "node-a", AmountSats: 1001, Split: Split{s.Author, s.Marketplace, s.Node}}
	d, _ := r.Digest()
	r.Signature = verify.SignDigest(key, d)
	if err := Check(r, m, "node-a", pub); err != nil {
		t.Fatal(err)
	}
	other, _ := verify.GenerateKey()
	for _, tc := range []struct {
		name string
		edit func(*Receipt)
		node string
		key  string
		want string
	}{
		{"other node", func(*Receipt) {}, "node-b", pub, "for node"},
		{"other key", func(*Receipt) {}, "node-a", hex.EncodeToString(other.PubKey().SerializeCompressed()), "signature"},
		{"no key pinned", func(*Receipt) {}, "node-a", "", "marketplace_key"},
		{"amount", func(r *Receipt) { r.AmountSats = 1 }, "node-a", pub, "amount 1 sats"},
		{"split", func(r *Receipt) { r.Split.Node++ }, "node-a", pub, "split"},
		{"versions", func(r *Receipt) { r.Versions = "^2.0.0" }, "node-a", pub, "do not cover"},
		{"tampered after signing", func(r *Receipt) { r.Versions = ">=1.0.0" }, "node-a", pub, "signature"},
	} {
		r2 := r
		tc.edit(&r2)
		if err := Check(r2, m, tc.node, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	bad := *m.Payment
	bad.AuthorPaymentCode = "xyz"
	m.Payment = &bad
	if err := Check(r, m, "node-a", pub); err == nil || !strings.Contains(err.Error(), "payment.author_payment_code") {
		t.Errorf("bad payment code: %v", err)
	}
}
