package market

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/btcsuite/btcd/address/v2/base58"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/gowebpki/jcs"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

// TermsTag separates payment-terms signatures from every other use of the
// author's payment-code key.
const TermsTag = "blvm-sandbox/payment-terms/v1\n"

// Terms are what payment_signature signs: the author, as the owner of
// author_payment_code, agrees to be paid for this module version at this
// price, with commons_payment_code as the commons' share.
type Terms struct {
	Module             string `json:"module"`
	Version            string `json:"version"`
	Required           bool   `json:"required"`
	PriceSats          int64  `json:"price_sats"`
	AuthorPaymentCode  string `json:"author_payment_code"`
	CommonsPaymentCode string `json:"commons_payment_code"`
}

// TermsOf returns the terms a manifest's [payment] section states.
func TermsOf(m *manifest.Manifest) Terms {
	return Terms{Module: m.Name, Version: m.Version, Required: m.Payment.Required, PriceSats: m.Payment.PriceSats,
		AuthorPaymentCode: m.Payment.AuthorPaymentCode, CommonsPaymentCode: m.Payment.CommonsPaymentCode}
}

// Digest is SHA-256(TermsTag || JCS(terms)).
func (t Terms) Digest() ([32]byte, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return [32]byte{}, err
	}
	canon, err := jcs.Transform(raw)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(append([]byte(TermsTag), canon...)), nil
}

// PaymentCodeKey returns the public key a BIP47 payment code carries
// (payload bytes 2..34: the sign byte and x coordinate of the key at
// m/47'/coin'/account'), hex, compressed.
func PaymentCodeKey(field, code string) (string, error) {
	if err := ValidatePaymentCode(field, code); err != nil {
		return "", err
	}
	payload, _, _ := base58.CheckDecode(code)
	key := payload[2:35]
	if _, err := secp256k1.ParsePubKey(key); err != nil {
		return "", fmt.Errorf("%s %q: bytes 2..34 are not a secp256k1 public key: %v", field, code, err)
	}
	return hex.EncodeToString(key), nil
}

// PaymentCode builds a BIP47 (version 1) payment code from a public key
// and chain code: for tests and for authors who hold only the key.
func PaymentCode(pub *secp256k1.PublicKey, chainCode [32]byte) string {
	payload := make([]byte, 80)
	payload[0] = 0x01
	copy(payload[2:35], pub.SerializeCompressed())
	copy(payload[35:67], chainCode[:])
	return base58.CheckEncode(payload, 0x47)
}

// CheckPaymentSignature refuses a paid manifest whose payment_signature is
// not a valid signature over its terms by the key in author_payment_code.
// A manifest without [payment], or not required, passes.
func CheckPaymentSignature(m *manifest.Manifest) error {
	if m.Payment == nil || !m.Payment.Required {
		return nil
	}
	key, err := PaymentCodeKey("payment.author_payment_code", m.Payment.AuthorPaymentCode)
	if err != nil {
		return fmt.Errorf("%s %s: %w", m.Name, m.Version, err)
	}
	if err := ValidatePaymentCode("payment.commons_payment_code", m.Payment.CommonsPaymentCode); err != nil {
		return fmt.Errorf("%s %s: %w", m.Name, m.Version, err)
	}
	d, err := TermsOf(m).Digest()
	if err != nil {
		return err
	}
	if !verify.SignatureValid(key, m.Payment.PaymentSignature, d) {
		return fmt.Errorf("%s %s: payment.payment_signature %q: not a valid signature over the payment terms by the key of author_payment_code (%s)", m.Name, m.Version, m.Payment.PaymentSignature, key)
	}
	return nil
}

// SignTerms returns payment_signature for m's terms, signed by priv, which
// must be the key of m's author_payment_code.
func SignTerms(m *manifest.Manifest, priv *secp256k1.PrivateKey) (string, error) {
	if m.Payment == nil {
		return "", fmt.Errorf("%s %s: no [payment] section", m.Name, m.Version)
	}
	key, err := PaymentCodeKey("payment.author_payment_code", m.Payment.AuthorPaymentCode)
	if err != nil {
		return "", err
	}
	if got := hex.EncodeToString(priv.PubKey().SerializeCompressed()); got != key {
		return "", fmt.Errorf("%s %s: the key %s is not the key of author_payment_code (%s)", m.Name, m.Version, got, key)
	}
	d, err := TermsOf(m).Digest()
	if err != nil {
		return "", err
	}
	return verify.SignDigest(priv, d), nil
}
