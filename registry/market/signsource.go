package market

import (
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

// SignedTerms is a module.toml after its author signed the payment terms.
type SignedTerms struct {
	Source   []byte // the rewritten module.toml, ready to write
	Manifest *manifest.Manifest
	// Dropped names the maintainers whose signatures no longer verify: the
	// maintainers' view covers payment_signature, so they sign after the
	// author (docs/signing.md).
	Dropped []string
}

// SignTermsSource sets payment_signature in the module.toml in src (read
// from path) to the author's signature over its [payment] terms, by priv,
// the key of author_payment_code. Every other line is kept, but for the
// maintainers' signatures that the new value invalidates. The result is
// re-parsed and its terms checked as install will check them.
func SignTermsSource(path string, src []byte, priv *secp256k1.PrivateKey) (*SignedTerms, error) {
	m, err := manifest.ParseBytes(path, src)
	if err != nil {
		// A draft has no payment_signature yet, and its maintainers'
		// signatures are about to be invalid anyway.
		problems, ok := err.(manifest.Problems)
		if !ok || m == nil {
			return nil, err
		}
		if _, rest := problems.Split("signatures", "payment.payment_signature"); len(rest) > 0 {
			return nil, rest
		}
	}
	if m.Payment == nil || !m.Payment.Required {
		return nil, fmt.Errorf("%s: [payment] required is not true: a free module has no terms to sign", path)
	}
	sig, err := SignTerms(m, priv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out, err := manifest.RewritePaymentSignature(src, sig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signed := &SignedTerms{}
	if m.Signatures != nil && len(m.Signatures.Maintainers) > 0 {
		after, err := manifest.ParseBytes(path, out)
		if after == nil {
			return nil, err
		}
		digest, err := manifest.SigningDigest(after)
		if err != nil {
			return nil, err
		}
		sigs := manifest.Signatures{Threshold: m.Signatures.Threshold}
		for _, s := range m.Signatures.Maintainers {
			if verify.SignatureValid(s.PublicKey, s.Signature, digest) {
				sigs.Maintainers = append(sigs.Maintainers, s)
			} else {
				signed.Dropped = append(signed.Dropped, s.Name)
			}
		}
		if out, err = manifest.RewriteSignatures(out, sigs); err != nil {
			return nil, err
		}
	}
	// What install will check (maintainers' signatures aside: they come next).
	after, err := manifest.ParseBytes(path, out)
	if after == nil {
		return nil, fmt.Errorf("the rewritten manifest is invalid:\n%w", err)
	}
	if err := CheckPaymentSignature(after); err != nil {
		return nil, err
	}
	signed.Source, signed.Manifest = out, after
	return signed, nil
}
