package manifest

import (
	"os"
	"strings"
	"testing"
)

func TestRewriteKeepsCommentsAndSignedView(t *testing.T) {
	src, err := os.ReadFile("testdata/lightning-network.toml")
	if err != nil {
		t.Fatal(err)
	}
	hash := "sha256:" + strings.Repeat("ab", 32)
	out, err := RewriteBinary(src, hash, 4242)
	if err != nil {
		t.Fatal(err)
	}
	sigs := Signatures{Threshold: "2-of-3", Maintainers: []Maintainer{{Name: "alice", PublicKey: "02" + strings.Repeat("11", 32), Signature: strings.Repeat("22", 64)}}}
	out, err = RewriteSignatures(out, sigs)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ParseBytes("module.toml", out)
	if m == nil {
		t.Fatalf("rewritten manifest does not decode:\n%s", out)
	}
	if m.Binary.Hash != hash || m.Binary.Size != 4242 {
		t.Errorf("binary %+v after rewrite", m.Binary)
	}
	if len(m.Signatures.Maintainers) != 1 || m.Signatures.Maintainers[0] != sigs.Maintainers[0] {
		t.Errorf("signatures %+v after rewrite", m.Signatures)
	}
	for _, comment := range []string{
		"# Core Identity (Required)", "# Query blockchain data", "# Optional mesh networking support",
		"# Binary integrity verification", "# Maintainer signatures (for verified modules)",
		"# Payment configuration (for paid modules)",
	} {
		if !strings.Contains(string(out), comment) {
			t.Errorf("comment %q lost:\n%s", comment, out)
		}
	}
	// Everything signed except the binary is as before.
	orig, _ := ParseBytes("module.toml", src)
	orig.Binary = m.Binary
	v1, err1 := SigningView(orig)
	v2, err2 := SigningView(m)
	if err1 != nil || err2 != nil || string(v1) != string(v2) {
		t.Errorf("rewrite changed a signed value:\n%s\n%s", v1, v2)
	}
}

func TestRewriteAddsMissingTables(t *testing.T) {
	src := []byte("name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\" # the binary\n")
	out, err := RewriteBinary(src, "sha256:"+strings.Repeat("0f", 32), 7)
	if err != nil {
		t.Fatal(err)
	}
	out, err = RewriteSignatures(out, Signatures{Threshold: "1-of-1", Maintainers: []Maintainer{{Name: "a", PublicKey: "02" + strings.Repeat("aa", 32), Signature: strings.Repeat("bb", 64)}}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ParseBytes("module.toml", out)
	if m == nil || m.Binary == nil || m.Binary.Size != 7 || m.Signatures == nil || m.Signatures.Threshold != "1-of-1" {
		t.Fatalf("rewritten:\n%s", out)
	}
	if !strings.Contains(string(out), "# the binary") {
		t.Error("inline comment lost")
	}
	// A second signing replaces the table rather than adding another.
	out2, err := RewriteSignatures(out, Signatures{Threshold: "1-of-1"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out2), "[signatures]") != 1 {
		t.Fatalf("two [signatures] tables:\n%s", out2)
	}
}

// sign pins config.toml beside the binary: [config] is added before
// [signatures], then updated in place on the next signing.
func TestRewriteConfig(t *testing.T) {
	src := []byte("name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\"\n\n[binary]\nhash = \"sha256:" + strings.Repeat("0f", 32) + "\"\nsize = 7\n\n[signatures]\nthreshold = \"1-of-1\"\nmaintainers = []\n")
	h1, h2 := "sha256:"+strings.Repeat("1a", 32), "sha256:"+strings.Repeat("2b", 32)
	out, err := RewriteConfig(src, h1, 11)
	if err != nil {
		t.Fatal(err)
	}
	if i, j := strings.Index(string(out), "[config]"), strings.Index(string(out), "[signatures]"); i < 0 || i > j {
		t.Fatalf("[config] not added before [signatures]:\n%s", out)
	}
	out, err = RewriteConfig(out, h2, 0)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ParseBytes("module.toml", out)
	if m == nil || m.Config == nil || m.Config.Hash != h2 || m.Config.Size != 0 || m.Binary.Size != 7 || strings.Count(string(out), "[config]") != 1 {
		t.Fatalf("after two rewrites:\n%s", out)
	}
}

func TestRewritePaymentSignature(t *testing.T) {
	src := []byte("name = \"paid\"\n\n# the terms\n[payment]\nrequired = true # keep me\nprice_sats = 100\n\n# next\n[signatures]\nthreshold = \"1-of-1\"\n")
	out, err := RewritePaymentSignature(src, "aa")
	if err != nil {
		t.Fatal(err)
	}
	want := "name = \"paid\"\n\n# the terms\n[payment]\npayment_signature = \"aa\"\nrequired = true # keep me\nprice_sats = 100\n\n# next\n[signatures]\nthreshold = \"1-of-1\"\n"
	if string(out) != want {
		t.Fatalf("first signature:\n%s\nwant:\n%s", out, want)
	}
	again, err := RewritePaymentSignature(out, "bb")
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != strings.Replace(want, `"aa"`, `"bb"`, 1) {
		t.Fatalf("replaced signature:\n%s", again)
	}
	if _, err := RewritePaymentSignature([]byte("name = \"free\"\n"), "aa"); err == nil || !strings.Contains(err.Error(), "no [payment] table") {
		t.Fatalf("no [payment]: %v", err)
	}
}
