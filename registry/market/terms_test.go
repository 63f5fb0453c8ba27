package market

import (
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

// paidManifest is a paid manifest whose payment_signature is valid: the
// author's payment code carries a fresh key, which signs the terms.
func paidManifest(t *testing.T) *manifest.Manifest {
	t.Helper()
	author, _ := verify.GenerateKey()
	commons, _ := verify.GenerateKey()
	m := &manifest.Manifest{Name: "paid", Version: "1.2.0", Payment: &manifest.Payment{
		Required: true, PriceSats: 1001,
		AuthorPaymentCode:  PaymentCode(author.PubKey(), [32]byte{1}),
		CommonsPaymentCode: PaymentCode(commons.PubKey(), [32]byte{2})}}
	sig, err := SignTerms(m, author)
	if err != nil {
		t.Fatal(err)
	}
	m.Payment.PaymentSignature = sig
	if _, err := SignTerms(m, commons); err == nil || !strings.Contains(err.Error(), "is not the key of author_payment_code") {
		t.Fatalf("SignTerms with another key: %v", err)
	}
	return m
}

// TestPaymentSignature: payment_signature verifies against the key inside
// author_payment_code over the module, version, price and both codes;
// changing any of them, or signing with another key, is refused.
func TestPaymentSignature(t *testing.T) {
	m := paidManifest(t)
	if err := CheckPaymentSignature(m); err != nil {
		t.Fatal(err)
	}
	other, _ := verify.GenerateKey()
	for _, tc := range []struct {
		name string
		edit func(m *manifest.Manifest)
		want string
	}{
		{"price", func(m *manifest.Manifest) { m.Payment.PriceSats = 1 }, "not a valid signature over the payment terms"},
		{"version", func(m *manifest.Manifest) { m.Version = "1.2.1" }, "not a valid signature"},
		{"module", func(m *manifest.Manifest) { m.Name = "other" }, "not a valid signature"},
		{"commons code swapped", func(m *manifest.Manifest) { m.Payment.CommonsPaymentCode = PaymentCode(other.PubKey(), [32]byte{}) }, "not a valid signature"},
		{"author code swapped", func(m *manifest.Manifest) { m.Payment.AuthorPaymentCode = PaymentCode(other.PubKey(), [32]byte{}) }, "by the key of author_payment_code"},
		{"signed by another key", func(m *manifest.Manifest) {
			d, _ := TermsOf(m).Digest()
			m.Payment.PaymentSignature = verify.SignDigest(other, d)
		}, "not a valid signature"},
		{"placeholder", func(m *manifest.Manifest) { m.Payment.PaymentSignature = "00" }, `payment_signature "00"`},
		{"no key in the code", func(m *manifest.Manifest) { m.Payment.AuthorPaymentCode = code(0x47, 80) }, "not a secp256k1 public key"},
	} {
		c := *m
		p := *m.Payment
		c.Payment = &p
		tc.edit(&c)
		if err := CheckPaymentSignature(&c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A free module needs none.
	if err := CheckPaymentSignature(&manifest.Manifest{Name: "free", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	// The payment code of BIP47's test vector carries a key.
	if _, err := PaymentCodeKey("f", "PM8TJS2JxQ5ztXUpBBRnpTbcUXbUHy2T1abfrb3KkAAtMEGNbey4oumH7Hc578WgQJhPjBxteQ5GHHToTYHE3A1w6p7tU6KSoFmWBVbFGjKPisZDbP97"); err != nil {
		t.Fatal(err)
	}
}
