package verify

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/manifest"
)

func TestCheckSignaturesThreshold(t *testing.T) {
	cases := []struct {
		threshold string
		signers   []string
		ok        bool
		summary   string
	}{
		{"2-of-3", []string{"alice", "bob"}, true, "threshold 2-of-3: 2 distinct pinned keys signed (alice, bob)"},
		{"2-of-3", []string{"alice"}, false, "threshold 2-of-3 not met: 1 distinct pinned key signed (alice)"},
		{"3-of-3", []string{"carol", "alice", "bob"}, true, "threshold 3-of-3: 3 distinct pinned keys signed (carol, alice, bob)"},
		{"1-of-3", nil, false, "threshold 1-of-3 not met: 0 distinct pinned keys signed (none)"},
	}
	for _, c := range cases {
		t.Run(c.summary, func(t *testing.T) {
			f := newFixture(t, c.threshold, c.signers...)
			rep, err := CheckSignatures(f.m, f.cfg)
			if (err == nil) != c.ok || rep.OK != c.ok || rep.Summary != c.summary {
				t.Fatalf("got ok=%v err=%v summary %q, want ok=%v %q", rep.OK, err, rep.Summary, c.ok, c.summary)
			}
			if err != nil && err.Error() != c.summary {
				t.Errorf("error %q, want the summary", err)
			}
		})
	}
}

// python-tuf GHSA-pwqf-9h7j-7mv8: one key signing twice must count once.
func TestGHSA_pwqf_9h7j_7mv8_OneKeySigningTwice(t *testing.T) {
	f := newFixture(t, "2-of-3", "alice", "alice")
	rep, err := CheckSignatures(f.m, f.cfg)
	if err == nil || rep.OK {
		t.Fatal("alice twice met a 2-of-3 threshold")
	}
	if got := rep.Entries[1].Reason; got != "does not count: key already counted (pinned as alice)" {
		t.Errorf("second entry: %q", got)
	}
	if want := "threshold 2-of-3 not met: 1 distinct pinned key signed (alice)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// go-tuf GHSA-3633-5h82-39pq and go-tuf #733: one key under two names, or
// in two encodings, must count once.
func TestGoTUF_GHSA_3633_5h82_39pq_SameKeyTwoNames(t *testing.T) {
	alice := testKey("alice")
	variants := map[string]string{
		"same hex":     pubHex(alice),
		"upper case":   strings.ToUpper(pubHex(alice)),
		"uncompressed": hex.EncodeToString(alice.PubKey().SerializeUncompressed()),
	}
	for name, key := range variants {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, "2-of-3", "alice")
			f.addSig(t, "mallory", alice) // same key, another claimed name
			f.m.Signatures.Maintainers[1].PublicKey = key
			rep, err := CheckSignatures(f.m, f.cfg)
			if err == nil {
				t.Fatal("one key under two names met 2-of-3")
			}
			if got := rep.Entries[1].Reason; got != "does not count: key already counted (pinned as alice)" {
				t.Errorf("second entry: %q", got)
			}
		})
	}
	// The pinned name is reported, whatever the manifest claims.
	f := newFixture(t, "1-of-3")
	f.addSig(t, "bob", testKey("alice"))
	rep, err := CheckSignatures(f.m, f.cfg)
	if err != nil || rep.Signed[0] != "alice" || !strings.HasPrefix(rep.Entries[0].Reason, "counts: pinned as alice") {
		t.Fatalf("got %v %+v", err, rep)
	}
}

func TestUnpinnedKeyDoesNotCount(t *testing.T) {
	f := newFixture(t, "1-of-3")
	mallory := testKey("mallory")
	f.addSig(t, "alice", mallory) // claims to be alice
	rep, err := CheckSignatures(f.m, f.cfg)
	if err == nil {
		t.Fatal("an unpinned key met the threshold")
	}
	want := "does not count: key " + pubHex(mallory)[:16] + "… is not pinned"
	if got := rep.Entries[0].Reason; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}

	// Manifest keys are hints: an unpinned key claimed with a pinned
	// signer's signature does not borrow the pinned key.
	f = newFixture(t, "1-of-3", "alice")
	f.m.Signatures.Maintainers[0].PublicKey = pubHex(mallory)
	if _, err := CheckSignatures(f.m, f.cfg); err == nil {
		t.Fatal("counted a signature whose claimed key is not pinned")
	}
}

// A malformed or missing key hint: the signature is tried against the
// pinned keys, and counts only if one verifies it.
func TestMalformedKeyHint(t *testing.T) {
	for _, key := range []string{"", "zz", "02"} {
		f := newFixture(t, "1-of-3", "bob")
		f.m.Signatures.Maintainers[0].PublicKey = key
		rep, err := CheckSignatures(f.m, f.cfg)
		if err != nil || rep.Signed[0] != "bob" {
			t.Errorf("key %q: %v %+v", key, err, rep.Entries)
		}
	}
	f := newFixture(t, "1-of-3")
	f.addSig(t, "m", testKey("mallory"))
	f.m.Signatures.Maintainers[0].PublicKey = ""
	rep, err := CheckSignatures(f.m, f.cfg)
	if err == nil || !strings.Contains(rep.Entries[0].Reason, "verifies under no pinned key") {
		t.Fatalf("got %v %+v", err, rep.Entries)
	}
}

func TestMalformedSignatureHex(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	f.m.Signatures.Maintainers[0].Signature = "nothex"
	rep, _ := CheckSignatures(f.m, f.cfg)
	if got := rep.Entries[0].Reason; !strings.HasPrefix(got, "does not count: malformed signature hex") {
		t.Errorf("reason %q", got)
	}
}

// cosign GHSA-8gw7-4j42-w388: a valid proof for a different artifact must
// not count. Here: alice's valid signature over another module's view.
func TestCosign_GHSA_8gw7_4j42_w388_SignatureOverAnotherModule(t *testing.T) {
	f := newFixture(t, "1-of-3")
	other := *f.m
	other.Name = "other-module"
	other.Signatures = nil
	sig, err := SignManifest(testKey("alice"), &other)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := manifest.SigningDigest(&other)
	if !SignatureValid(pubHex(testKey("alice")), sig, d) {
		t.Fatal("the signature should be valid over the other module")
	}
	f.m.Signatures.Maintainers = []manifest.Maintainer{{Name: "alice", PublicKey: pubHex(testKey("alice")), Signature: sig}}
	rep, err := CheckSignatures(f.m, f.cfg)
	if err == nil {
		t.Fatal("a signature over another module counted")
	}
	if got := rep.Entries[0].Reason; got != "does not count: bad signature over this manifest (key pinned as alice)" {
		t.Errorf("reason %q", got)
	}
}

func TestOneManifestValueChanged(t *testing.T) {
	changes := map[string]func(m *manifest.Manifest){
		"version":         func(m *manifest.Manifest) { m.Version = "1.0.1" },
		"capability":      func(m *manifest.Manifest) { m.Capabilities = append(m.Capabilities, "send_transactions") },
		"node constraint": func(m *manifest.Manifest) { m.Dependencies = map[string]string{"blvm-node": ">=0.0.1"} },
		"binary hash": func(m *manifest.Manifest) {
			m.Binary = &manifest.Binary{Hash: "sha256:" + strings.Repeat("0", 64), Size: m.Binary.Size}
		},
		"binary size": func(m *manifest.Manifest) { m.Binary = &manifest.Binary{Hash: m.Binary.Hash, Size: m.Binary.Size + 1} },
		"expires":     func(m *manifest.Manifest) { e := m.Expires.Add(time.Second); m.Expires = &e },
		"entry point": func(m *manifest.Manifest) { m.EntryPoint = "other" },
		"description": func(m *manifest.Manifest) { m.Description = "x" },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, "2-of-3", "alice", "bob")
			if _, err := CheckSignatures(f.m, f.cfg); err != nil {
				t.Fatal(err)
			}
			change(f.m)
			rep, err := CheckSignatures(f.m, f.cfg)
			if err == nil {
				t.Fatal("still verifies after the change")
			}
			for _, e := range rep.Entries {
				if !strings.HasPrefix(e.Reason, "does not count: bad signature over this manifest") {
					t.Errorf("%s: %q", e.Name, e.Reason)
				}
			}
		})
	}
}

const reformatA = `name = "example-module"
version = "1.0.0"
entry_point = "example-module"
capabilities = ["read_blockchain", "subscribe_events"]

[dependencies]
"blvm-node" = ">=0.1.0, <2.0.0"

[binary]
hash = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
size = 3
`

const reformatB = `# the same values, reordered, re-commented, inline tables
binary = { size = 3, hash = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" }
dependencies = { blvm-node = ">=0.1.0, <2.0.0" }
capabilities = [
  "read_blockchain",   # first
  "subscribe_events",
]
entry_point    = 'example-module'
version        = "1.0.0"
name           = "example-module"

[signatures]
threshold = "2-of-3"
maintainers = [
  { name = "alice", public_key = "ALICE_KEY", signature = "ALICE_SIG" },
  { signature = "BOB_SIG", public_key = "BOB_KEY", name = "bob" },
]
`

func TestReformattedManifestStillVerifies(t *testing.T) {
	a, err := manifest.ParseBytes("a/module.toml", []byte(reformatA))
	if err != nil {
		t.Fatal(err)
	}
	src := reformatB
	for _, n := range []string{"alice", "bob"} {
		sig, err := SignManifest(testKey(n), a)
		if err != nil {
			t.Fatal(err)
		}
		up := strings.ToUpper(n)
		src = strings.NewReplacer(up+"_KEY", pubHex(testKey(n)), up+"_SIG", sig).Replace(src)
	}
	b, err := manifest.ParseBytes("b/module.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "2-of-3")
	rep, err := CheckSignatures(b, f.cfg)
	if err != nil {
		t.Fatalf("reformatted manifest: %v (%+v)", err, rep.Entries)
	}
}

func TestExpiredSignatures(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	exp := *f.m.Expires
	if err := CheckExpiry(f.m, exp); err != nil {
		t.Errorf("at the expiry instant: %v", err)
	}
	err := CheckExpiry(f.m, exp.Add(time.Second))
	if err == nil || !strings.Contains(err.Error(), "signatures expired at 2030-01-01T00:00:00Z") {
		t.Fatalf("got %v", err)
	}
	res, err := Verify(f.dir, f.m, f.cfg, Options{Root: f.root, Now: exp.Add(time.Hour)})
	if err == nil || res.OK() || res.StorePath != "" {
		t.Fatal("expired manifest verified")
	}
	if !strings.Contains(err.Error(), "signatures expired at 2030-01-01T00:00:00Z") {
		t.Errorf("error %q", err)
	}
	f.m.Expires = nil
	f.sign(t, "alice")
	if err := CheckExpiry(f.m, exp.Add(100*365*24*time.Hour)); err != nil {
		t.Errorf("no expires: %v", err)
	}
}
