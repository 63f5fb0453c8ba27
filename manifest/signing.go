package manifest

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// SigningTag separates manifest signatures from every other use of a
// maintainer's key: a signature over a manifest can never be replayed as a
// signature over something else, and vice versa.
const SigningTag = "blvm-sandbox/module-manifest/v1\n"

// SigningView returns the bytes maintainers sign: SigningTag followed by the
// RFC 8785 (JCS) canonical JSON of the manifest without its [signatures]
// table. Because it is built from values, not file bytes, reformatting,
// reordering or re-commenting module.toml keeps signatures valid, while
// changing any value breaks them. expires is encoded in UTC so one instant
// has one encoding. docs/signing.md specifies it with test vectors.
func SigningView(m *Manifest) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("signing view: nil manifest")
	}
	c := *m
	c.Signatures = nil // excluded by its json tag too; belt and braces
	if c.Expires != nil {
		t := c.Expires.UTC()
		c.Expires = &t
	}
	if c.Expires != nil && (c.Expires.Year() < 0 || c.Expires.Year() > 9999) {
		return nil, fmt.Errorf("signing view: expires %s is outside years 0-9999", c.Expires.Format(time.RFC3339))
	}
	// encoding/json would silently replace invalid UTF-8, letting two
	// different manifests share a view; TOML input is always valid, so this
	// only guards manifests built in code.
	for _, str := range c.strings() {
		if !utf8.ValidString(str) {
			return nil, fmt.Errorf("signing view: invalid UTF-8 in %q", str)
		}
	}
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("signing view: marshal: %w", err)
	}
	canon, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("signing view: canonicalize: %w", err)
	}
	return append([]byte(SigningTag), canon...), nil
}

// SigningDigest is the SHA-256 of SigningView: the 32 bytes an ECDSA
// signature over a manifest signs.
func SigningDigest(m *Manifest) ([32]byte, error) {
	view, err := SigningView(m)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(view), nil
}

// strings lists every string value that goes into the signing view.
func (m *Manifest) strings() []string {
	s := []string{m.Name, m.Version, m.EntryPoint, m.Description, m.Author}
	s = append(s, m.Capabilities...)
	for _, deps := range []map[string]string{m.Dependencies, m.OptionalDependencies, m.ConfigSchema} {
		for k, v := range deps {
			s = append(s, k, v)
		}
	}
	if m.Binary != nil {
		s = append(s, m.Binary.Hash)
	}
	if m.Config != nil {
		s = append(s, m.Config.Hash)
	}
	if p := m.Payment; p != nil {
		s = append(s, p.AuthorPaymentCode, p.CommonsPaymentCode, p.PaymentSignature)
	}
	return s
}
