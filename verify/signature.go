package verify

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/blvm/blvm-sandbox/manifest"
)

// Form is the encoding a signature was written in.
type Form int

const (
	// Compact is 64 bytes: 32-byte big-endian r followed by 32-byte s.
	Compact Form = iota + 1
	// DER is a strict DER SEQUENCE { INTEGER r, INTEGER s }.
	DER
)

// String names the form as docs/signing.md does.
func (f Form) String() string {
	switch f {
	case Compact:
		return "compact"
	case DER:
		return "DER"
	}
	return fmt.Sprintf("Form(%d)", int(f))
}

// ErrHighS marks a signature whose s is in the upper half of the curve
// order. Such a signature verifies, but it is the malleated twin of a low-S
// one, so it is refused by name (blvm-node accepts it).
var ErrHighS = errors.New("high-S signature (s > N/2): refused, re-sign to get the low-S form")

// compactLen is the size of a compact r||s signature. A 64-byte input is
// always read as compact, never as DER.
const compactLen = 64

// ParseSignature decodes a signature in hex, in exactly one of two forms:
// 64-byte compact r||s, or strict DER. r and s must be in [1, N-1] and s
// must be low (s <= N/2); a high-S signature fails with an error wrapping
// ErrHighS.
func ParseSignature(s string) (*ecdsa.Signature, Form, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, 0, fmt.Errorf("signature: not hex: %v", err)
	}
	var (
		sig  *ecdsa.Signature
		form Form
	)
	switch {
	case len(b) == compactLen:
		sig, err = parseCompact(b)
		form = Compact
	case len(b) > 0 && b[0] == 0x30:
		// dcrd's parser is strict: minimal lengths, no padding, no trailing
		// bytes, r and s in [1, N-1].
		sig, err = ecdsa.ParseDERSignature(b)
		if err != nil {
			err = fmt.Errorf("signature: DER: %v", err)
		}
		form = DER
	default:
		return nil, 0, fmt.Errorf("signature: %d bytes: want 64-byte compact r||s or DER", len(b))
	}
	if err != nil {
		return nil, 0, err
	}
	if sv := sig.S(); sv.IsOverHalfOrder() {
		return nil, 0, fmt.Errorf("signature: %s: %w", form, ErrHighS)
	}
	return sig, form, nil
}

func parseCompact(b []byte) (*ecdsa.Signature, error) {
	var r, s secp256k1.ModNScalar
	if r.SetByteSlice(b[:32]) {
		return nil, errors.New("signature: compact: r is not below the curve order N")
	}
	if s.SetByteSlice(b[32:]) {
		return nil, errors.New("signature: compact: s is not below the curve order N")
	}
	if r.IsZero() || s.IsZero() {
		return nil, errors.New("signature: compact: r and s must be non-zero")
	}
	return ecdsa.NewSignature(&r, &s), nil
}

// compactBytes encodes sig as 64-byte r||s.
func compactBytes(sig *ecdsa.Signature) []byte {
	out := make([]byte, compactLen)
	r, s := sig.R(), sig.S()
	r.PutBytesUnchecked(out[:32])
	s.PutBytesUnchecked(out[32:])
	return out
}

// SignDigest signs a 32-byte digest (normally manifest.SigningDigest) and
// returns the compact low-S signature in lowercase hex. Nonces are RFC 6979
// deterministic, so the same key and digest always give the same signature.
func SignDigest(priv *secp256k1.PrivateKey, digest [32]byte) string {
	return hex.EncodeToString(compactBytes(ecdsa.Sign(priv, digest[:])))
}

// SignManifest signs the manifest's canonical signing view and returns the
// compact hex signature to put in [signatures].
func SignManifest(priv *secp256k1.PrivateKey, m *manifest.Manifest) (string, error) {
	d, err := manifest.SigningDigest(m)
	if err != nil {
		return "", err
	}
	return SignDigest(priv, d), nil
}

// ParsePublicKeyHex decodes a 33-byte compressed public key in hex (either
// case). It is manifest.ParsePublicKey, so the CLI and verification agree.
func ParsePublicKeyHex(s string) (*secp256k1.PublicKey, error) {
	return manifest.ParsePublicKey(s)
}

// SignatureValid reports whether sigHex (compact or DER, low-S) is a valid
// signature by pubHex over digest. It answers only "is this signature
// good"; whether the key counts is CheckSignatures' question.
func SignatureValid(pubHex, sigHex string, digest [32]byte) bool {
	pub, err := ParsePublicKeyHex(pubHex)
	if err != nil {
		return false
	}
	sig, _, err := ParseSignature(sigHex)
	if err != nil {
		return false
	}
	return sig.Verify(digest[:], pub)
}
