package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/registry/market"
	"github.com/blvm/blvm-sandbox/verify"
)

// The author's loop for a paid module: draft the terms, sign-payment with
// the key of author_payment_code, then the maintainers sign; verify and
// publish accept it. Another key is refused with the file unchanged, and
// signing the terms after the maintainers drops (and names) their
// signatures, which no longer cover the manifest.
func TestSignPaymentThenMaintainers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	base, reg, nodeConfig, _, _ := registryNode(t, "")
	authorKey := filepath.Join(base, "author.key")
	if _, errOut, code := cli(t, "keys", "generate", "--out", authorKey); code != 0 {
		t.Fatal(errOut)
	}
	author, err := verify.ReadKeyFile(authorKey)
	if err != nil {
		t.Fatal(err)
	}
	pc := market.PaymentCode(author.PubKey(), [32]byte{7})
	dir := filepath.Join(base, "paid")
	os.MkdirAll(dir, 0o755)
	draft := fmt.Sprintf("name = \"probe\"\nversion = \"2.0.0\"\nentry_point = \"probe\"\ncapabilities = [\"read_blockchain\"]\n\n# the terms\n[payment]\nrequired = true\nprice_sats = 1000\nauthor_payment_code = %q\ncommons_payment_code = %q\n", pc, pc)
	manifestPath := filepath.Join(dir, "module.toml")
	os.WriteFile(manifestPath, []byte(draft), 0o644)
	os.WriteFile(filepath.Join(dir, "probe"), elftest.Static("paid"), 0o755)

	if _, errOut, code := cli(t, "sign-payment", "--key", filepath.Join(base, "alice.key"), dir); code != 2 || !strings.Contains(errOut, "is not the key of author_payment_code") {
		t.Fatalf("another key: exit %d %s", code, errOut)
	}
	if got, _ := os.ReadFile(manifestPath); string(got) != draft {
		t.Fatalf("a refused sign-payment changed module.toml:\n%s", got)
	}
	out, errOut, code := cli(t, "sign-payment", "--key", authorKey, dir)
	if code != 0 || !strings.Contains(out, "1000 sats (author 750, marketplace 150, node 100)") {
		t.Fatalf("sign-payment: exit %d %s %s", code, out, errOut)
	}
	signMaintainers := func() {
		t.Helper()
		for _, k := range []string{"alice", "bob"} {
			if _, errOut, code := cli(t, "sign", "--key", filepath.Join(base, k+".key"), "--binary", filepath.Join(dir, "probe"), "--threshold", "2-of-3", dir); code != 0 {
				t.Fatalf("sign: %s", errOut)
			}
		}
	}
	signMaintainers()
	if out, errOut, code := cli(t, "verify", "--node-config", nodeConfig, dir); code != 0 || !strings.Contains(out, "ok  payment") {
		t.Fatalf("verify after the author and the maintainers: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := cli(t, "registry", "publish", reg, dir); code != 0 {
		t.Fatalf("publish: %s", errOut)
	}

	// A new price after the maintainers signed: the author signs again,
	// and the maintainers' signatures are dropped, by name.
	src, _ := os.ReadFile(manifestPath)
	os.WriteFile(manifestPath, []byte(strings.Replace(string(src), "price_sats = 1000", "price_sats = 2000", 1)), 0o644)
	_, errOut, code = cli(t, "sign-payment", "--key", authorKey, dir)
	if code != 0 || !strings.Contains(errOut, "dropped alice's signature") || !strings.Contains(errOut, "dropped bob's signature") {
		t.Fatalf("sign-payment after the maintainers: exit %d %s", code, errOut)
	}
	if out, _, code := cli(t, "verify", "--node-config", nodeConfig, dir); code == 0 {
		t.Fatalf("verify passed with the maintainers' signatures dropped:\n%s", out)
	}
	signMaintainers()
	if out, errOut, code := cli(t, "verify", "--node-config", nodeConfig, dir); code != 0 || !strings.Contains(out, "ok  payment") {
		t.Fatalf("verify after signing again: exit %d\n%s%s", code, out, errOut)
	}
}
