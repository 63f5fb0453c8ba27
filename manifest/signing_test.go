package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

const signedBase = `name = "lightning-network"
version = "1.2.3"
entry_point = "bin/lightning-network"
description = "Lightning"
author = "Alice <alice@example.com>"
expires = 2027-01-01T00:00:00Z
capabilities = ["read_blockchain", "subscribe_events"]

[dependencies]
"blvm-node" = ">=1.0.0"

[optional_dependencies]
blvm-mesh = "^0.5"

[config_schema]
network = "Network name"

[binary]
hash = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
size = 4096

[config]
hash = "sha256:0000000000000000000000000000000000000000000000000000000000000002"
size = 42

[payment]
required = true
price_sats = 1000
author_payment_code = "PM8TJauthor"
commons_payment_code = "PM8TJcommons"
payment_signature = "aa"
`

// Same values as signedBase: reordered, reformatted, re-commented, with
// inline tables, a different offset for the same expiry instant, and a
// [signatures] table.
const signedReformatted = `# a comment that changes nothing
capabilities = [
  "read_blockchain",  # first
  "subscribe_events",
]
expires = 2027-01-01T01:00:00+01:00
author = 'Alice <alice@example.com>'
description = "Lightning"
entry_point = "bin/lightning-network"
version = "1.2.3"
name = "lightning-network"
binary = { size = 4_096, hash = "sha256:0000000000000000000000000000000000000000000000000000000000000001" }
config.size = 0x2a
config.hash = "sha256:0000000000000000000000000000000000000000000000000000000000000002"
dependencies = { "blvm-node" = ">=1.0.0" }
optional_dependencies."blvm-mesh" = "^0.5"
config_schema.network = "Network name"

[payment]
payment_signature = "aa"
commons_payment_code = "PM8TJcommons"
author_payment_code = "PM8TJauthor"
price_sats = 1_000
required = true

[signatures]
threshold = "1-of-1"
maintainers = [{ name = "x", public_key = "02abc", signature = "00" }]
`

func mustParse(t *testing.T, src string) *Manifest {
	t.Helper()
	m, err := ParseBytes(FileName, []byte(src))
	if m == nil {
		t.Fatalf("parse: %v", err)
	}
	// Only the placeholder signatures may be invalid.
	if ps, ok := err.(Problems); ok {
		for _, p := range ps {
			if !strings.HasPrefix(p.Field, "signatures.") {
				t.Fatalf("unexpected problem: %v", p)
			}
		}
	} else if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

func mustView(t *testing.T, m *Manifest) []byte {
	t.Helper()
	v, err := SigningView(m)
	if err != nil {
		t.Fatalf("SigningView: %v", err)
	}
	return v
}

func TestSigningViewIgnoresFormatting(t *testing.T) {
	base := mustView(t, mustParse(t, signedBase))
	if !bytes.HasPrefix(base, []byte(SigningTag)) {
		t.Fatalf("view does not start with the tag: %q", base)
	}
	if got := mustView(t, mustParse(t, signedReformatted)); !bytes.Equal(got, base) {
		t.Errorf("reformatted manifest changed the view:\n%s\n%s", base, got)
	}
	// Changing the signatures table changes nothing either.
	m := mustParse(t, signedBase)
	m.Signatures = &Signatures{Threshold: "3-of-5", Maintainers: []Maintainer{{Name: "z"}}}
	if got := mustView(t, m); !bytes.Equal(got, base) {
		t.Errorf("signatures changed the view")
	}
}

func TestSigningViewCoversEveryValue(t *testing.T) {
	base := mustView(t, mustParse(t, signedBase))
	later := time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC)
	tests := []struct {
		field  string
		change func(m *Manifest)
	}{
		{"name", func(m *Manifest) { m.Name = "lightning-networks" }},
		{"version", func(m *Manifest) { m.Version = "1.2.4" }},
		{"entry_point", func(m *Manifest) { m.EntryPoint = "bin/other" }},
		{"description", func(m *Manifest) { m.Description += "." }},
		{"author", func(m *Manifest) { m.Author = "Mallory" }},
		{"expires", func(m *Manifest) { m.Expires = &later }},
		{"expires removed", func(m *Manifest) { m.Expires = nil }},
		{"capability changed", func(m *Manifest) { m.Capabilities[1] = "governance_vote" }},
		{"capability added", func(m *Manifest) { m.Capabilities = append(m.Capabilities, "send_transactions") }},
		{"capabilities reordered", func(m *Manifest) { m.Capabilities[0], m.Capabilities[1] = m.Capabilities[1], m.Capabilities[0] }},
		{"dependency constraint", func(m *Manifest) { m.Dependencies["blvm-node"] = ">=0.1.0" }},
		{"dependency added", func(m *Manifest) { m.Dependencies["blvm-stratum-v2"] = "^1" }},
		{"optional dependency", func(m *Manifest) { m.OptionalDependencies["blvm-mesh"] = "^0.6" }},
		{"config_schema", func(m *Manifest) { m.ConfigSchema["network"] = "Other" }},
		{"binary.hash", func(m *Manifest) { m.Binary.Hash = strings.Replace(m.Binary.Hash, "01", "02", 1) }},
		{"binary.size", func(m *Manifest) { m.Binary.Size++ }},
		{"binary removed", func(m *Manifest) { m.Binary = nil }},
		{"config.hash", func(m *Manifest) { m.Config.Hash = strings.Replace(m.Config.Hash, "02", "03", 1) }},
		{"config.size", func(m *Manifest) { m.Config.Size++ }},
		{"config removed", func(m *Manifest) { m.Config = nil }},
		{"payment.required", func(m *Manifest) { m.Payment.Required = false }},
		{"payment.price_sats", func(m *Manifest) { m.Payment.PriceSats = 1001 }},
		{"payment.author_payment_code", func(m *Manifest) { m.Payment.AuthorPaymentCode = "PM8TJmallory" }},
		{"payment.commons_payment_code", func(m *Manifest) { m.Payment.CommonsPaymentCode = "PM8TJmallory" }},
		{"payment.payment_signature", func(m *Manifest) { m.Payment.PaymentSignature = "bb" }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			m := mustParse(t, signedBase)
			tt.change(m)
			if got := mustView(t, m); bytes.Equal(got, base) {
				t.Errorf("changing %s left the view unchanged", tt.field)
			}
		})
	}
}

func TestSigningDigest(t *testing.T) {
	m := mustParse(t, signedBase)
	d, err := SigningDigest(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(mustView(t, m)); d != want {
		t.Errorf("digest is not sha256 of the view")
	}
	if _, err := SigningView(nil); err == nil {
		t.Errorf("SigningView(nil) succeeded")
	}
}

// vectorFile is testdata/vectors.json; docs/signing.md publishes the same
// values.
type vectorFile struct {
	Manifest string      `json:"manifest_toml"`
	View     string      `json:"view"`
	Digest   string      `json:"digest_hex"`
	Keys     []vectorKey `json:"keys"`
}

type vectorKey struct {
	Seed       string `json:"seed"`
	PrivateKey string `json:"private_key_hex"`
	PublicKey  string `json:"public_key_hex"`
	Compact    string `json:"signature_compact_hex"`
	DER        string `json:"signature_der_hex"`
}

// computeVectors derives every test vector from the manifest and the seeds.
func computeVectors(t *testing.T, manifestTOML string, seeds []string) vectorFile {
	t.Helper()
	m, err := ParseBytes(FileName, []byte(manifestTOML))
	if err != nil {
		t.Fatalf("vector manifest: %v", err)
	}
	view := mustView(t, m)
	digest, err := SigningDigest(m)
	if err != nil {
		t.Fatal(err)
	}
	vf := vectorFile{Manifest: manifestTOML, View: string(view), Digest: hex.EncodeToString(digest[:])}
	for _, seed := range seeds {
		sk := sha256.Sum256([]byte(seed))
		priv := secp256k1.PrivKeyFromBytes(sk[:])
		sig := ecdsa.Sign(priv, digest[:]) // RFC 6979, low-S
		r, s := sig.R(), sig.S()
		if s.IsOverHalfOrder() {
			t.Fatalf("%s: dcrd produced a high-S signature", seed)
		}
		rb, sb := r.Bytes(), s.Bytes()
		compact := append(rb[:], sb[:]...)
		if !sig.Verify(digest[:], priv.PubKey()) {
			t.Fatalf("%s: signature does not verify", seed)
		}
		vf.Keys = append(vf.Keys, vectorKey{
			Seed:       seed,
			PrivateKey: hex.EncodeToString(sk[:]),
			PublicKey:  hex.EncodeToString(priv.PubKey().SerializeCompressed()),
			Compact:    hex.EncodeToString(compact),
			DER:        hex.EncodeToString(sig.Serialize()),
		})
	}
	return vf
}

func TestSigningVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil && !*update {
		t.Fatal(err)
	}
	var stored vectorFile
	if !*update {
		if err := json.Unmarshal(raw, &stored); err != nil {
			t.Fatalf("vectors.json: %v", err)
		}
	} else {
		stored.Manifest = vectorManifest
		stored.Keys = []vectorKey{{Seed: "blvm-sandbox test key alice"}, {Seed: "blvm-sandbox test key bob"}, {Seed: "blvm-sandbox test key carol"}}
	}
	var seeds []string
	for _, k := range stored.Keys {
		seeds = append(seeds, k.Seed)
	}
	got := computeVectors(t, stored.Manifest, seeds)
	if *update {
		if err := os.WriteFile("testdata/vectors.json", encodeVectors(t, got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if gotJSON := encodeVectors(t, got); !bytes.Equal(gotJSON, raw) {
		t.Fatalf("testdata/vectors.json is stale (run go test ./manifest -run TestSigningVectors -args -update):\ngot %s", gotJSON)
	}
	if len(got.Keys) != 3 {
		t.Fatalf("want 3 test keys, have %d", len(got.Keys))
	}

	doc, err := os.ReadFile("../docs/signing.md")
	if err != nil {
		t.Fatal(err)
	}
	mustContain := map[string]string{
		"tag":          strings.TrimSuffix(SigningTag, "\n"),
		"manifest":     got.Manifest,
		"view":         got.View,
		"digest":       got.Digest,
		"split 75/15":  "75",
		"canonical js": "RFC 8785",
	}
	for _, k := range got.Keys {
		mustContain[k.Seed+" seed"] = k.Seed
		mustContain[k.Seed+" private key"] = k.PrivateKey
		mustContain[k.Seed+" public key"] = k.PublicKey
		mustContain[k.Seed+" compact"] = k.Compact
		mustContain[k.Seed+" der"] = k.DER
	}
	for what, s := range mustContain {
		if !bytes.Contains(doc, []byte(s)) {
			t.Errorf("docs/signing.md does not contain the %s vector %q", what, s)
		}
	}
}

// encodeVectors writes vectors.json readably: indented, "<" left as is.
func encodeVectors(t *testing.T, vf vectorFile) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(vf); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// vectorManifest seeds testdata/vectors.json on -update; afterwards the JSON
// file is the source of truth.
const vectorManifest = `name = "example-module"
version = "1.0.0"
entry_point = "example-module"
description = "Signing test vector"
expires = 2030-01-01T00:00:00Z
capabilities = ["read_blockchain", "subscribe_events"]

[dependencies]
"blvm-node" = ">=0.1.0, <2.0.0"

[binary]
hash = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
size = 3

[config]
hash = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
size = 3
`

// [config] is omitted from the view when absent, so every manifest signed
// before it existed keeps its view and its signatures: this is the digest
// docs/signing.md published for the vector manifest without [config].
func TestSigningViewWithoutConfigIsUnchanged(t *testing.T) {
	m := mustParse(t, vectorManifest[:strings.Index(vectorManifest, "\n[config]")+1])
	if m.Config != nil {
		t.Fatal("the cut manifest still has [config]")
	}
	d, err := SigningDigest(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(d[:]); got != "990fbe4572ec35131a0c09f18a870246e041ade2383472257376298a31eac27d" {
		t.Errorf("digest %s: a manifest without [config] changed its view", got)
	}
	if bytes.Contains(mustView(t, m), []byte(`"config"`)) {
		t.Error(`view names "config" without a [config] table`)
	}
}
