// Package market checks what a paid module needs before it installs: BIP47
// payment codes in its [payment] section, and a receipt signed by the
// marketplace key the operator pins ([registry] marketplace_key).
package market

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"

	"github.com/btcsuite/btcd/address/v2/base58"
	"github.com/gowebpki/jcs"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

// ValidatePaymentCode checks a BIP47 payment code: base58check, version
// byte 0x47, an 80-byte payload.
func ValidatePaymentCode(field, s string) error {
	payload, version, err := base58.CheckDecode(s)
	switch {
	case err != nil:
		return fmt.Errorf("%s %q: not base58check: %v", field, s, err)
	case version != 0x47:
		return fmt.Errorf("%s %q: version byte 0x%02x, a BIP47 payment code has 0x47", field, s, version)
	case len(payload) != 80:
		return fmt.Errorf("%s %q: payload is %d bytes, a BIP47 payment code has 80", field, s, len(payload))
	}
	return nil
}

// Split is the three outputs a receipt binds, in satoshis.
type Split struct {
	Author      int64 `json:"author"`
	Marketplace int64 `json:"marketplace"`
	Node        int64 `json:"node"`
}

// Receipt says the marketplace was paid for module (versions in Versions)
// on the node NodeID.
type Receipt struct {
	Module     string `json:"module"`
	Versions   string `json:"versions"` // a semver constraint
	NodeID     string `json:"node_id"`
	AmountSats int64  `json:"amount_sats"`
	Split      Split  `json:"split"`
	Signature  string `json:"signature,omitempty"` // secp256k1, compact or DER hex, low-S
}

// Tag separates receipt signatures from every other use of the key.
const Tag = "blvm-sandbox/marketplace-receipt/v1\n"

// Digest is SHA-256(Tag || JCS(receipt without signature)).
func (r Receipt) Digest() ([32]byte, error) {
	r.Signature = ""
	raw, err := json.Marshal(r)
	if err != nil {
		return [32]byte{}, err
	}
	canon, err := jcs.Transform(raw)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(append([]byte(Tag), canon...)), nil
}

// Read parses a receipt file (at most 64 KiB).
func Read(path string) (Receipt, error) {
	var r Receipt
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if len(data) > 64<<10 {
		return r, fmt.Errorf("%s: over 64 KiB", path)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Check refuses a receipt that is not for this module version, this node,
// this price and its split, or not signed by marketKey.
func Check(r Receipt, m *manifest.Manifest, nodeID, marketKey string) error {
	if m.Payment == nil || !m.Payment.Required {
		return nil
	}
	if err := CheckPaymentSignature(m); err != nil {
		return err
	}
	if marketKey == "" {
		return fmt.Errorf("%s %s is paid: pin the marketplace's key in [registry] marketplace_key", m.Name, m.Version)
	}
	want := manifest.SplitPayment(m.Payment.PriceSats)
	cons, err := manifest.ParseConstraint(r.Versions)
	v, _ := manifest.ParseVersion(m.Version)
	switch {
	case r.Module != m.Name:
		return fmt.Errorf("receipt: for module %q, not %s", r.Module, m.Name)
	case err != nil || v == nil || !cons.Check(v):
		return fmt.Errorf("receipt: versions %q do not cover %s %s", r.Versions, m.Name, m.Version)
	case r.NodeID != nodeID:
		return fmt.Errorf("receipt: for node %q, this node is %q", r.NodeID, nodeID)
	case r.AmountSats != m.Payment.PriceSats:
		return fmt.Errorf("receipt: amount %d sats, the signed price is %d", r.AmountSats, m.Payment.PriceSats)
	case r.Split != (Split{want.Author, want.Marketplace, want.Node}):
		return fmt.Errorf("receipt: split %+v, the price splits as author %d, marketplace %d, node %d", r.Split, want.Author, want.Marketplace, want.Node)
	}
	d, err := r.Digest()
	if err != nil {
		return err
	}
	if !verify.SignatureValid(marketKey, r.Signature, d) {
		return fmt.Errorf("receipt: signature: not a valid signature by the pinned marketplace key %s", marketKey)
	}
	return nil
}
