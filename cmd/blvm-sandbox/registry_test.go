package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/registry/market"
	"github.com/blvm/blvm-sandbox/registry/server"
	"github.com/blvm/blvm-sandbox/verify"
)

// TestRegistryCommandsEndToEnd: init, publish, serve on loopback, then
// search, info, install NAME --dry-run, install NAME --yes, outdated and
// yank, all through the CLI.
func TestRegistryCommandsEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	dir, nodeConfig, root := signedModule(t)
	reg := filepath.Join(t.TempDir(), "reg")
	if out, errOut, code := cli(t, "registry", "init", "--root-threshold", "2-of-3", reg); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, errOut)
	}
	if st, err := os.Stat(filepath.Join(reg, "keys")); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("keys dir: %v %v", st, err)
	}
	keys, _ := filepath.Glob(filepath.Join(reg, "keys", "*.key"))
	for _, k := range keys {
		if st, _ := os.Stat(k); st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %s", k, st.Mode())
		}
	}
	if len(keys) != 6 {
		t.Fatalf("%d keys, want 3 root + targets + snapshot + timestamp", len(keys))
	}
	if out, errOut, code := cli(t, "registry", "publish", reg, dir); code != 0 || !strings.Contains(out, "published probe 1.0.0") {
		t.Fatalf("publish: %d %s %s", code, out, errOut)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	go run([]string{"registry", "serve", reg, "--listen", addr}, &strings.Builder{}, &strings.Builder{})
	url := "http://" + addr
	for i := 0; i < 50; i++ {
		if resp, err := http.Get(url + "/metadata/timestamp.json"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cfg, _ := os.ReadFile(nodeConfig)
	cfg = append(cfg, fmt.Sprintf("[node]\nversion = \"0.2.0\"\n[paths]\nroot = %q\n[registry]\nurl = %q\nroot = %q\n", root, url, filepath.Join(reg, "root.json"))...)
	os.WriteFile(nodeConfig, cfg, 0o644)

	out, errOut, code := cli(t, "search", "probe", "--node-config", nodeConfig, "--json")
	if code != 0 || !strings.Contains(out, `"name": "probe"`) {
		t.Fatalf("search: %d %s %s", code, out, errOut)
	}
	if out, errOut, code = cli(t, "info", "probe", "--node-config", nodeConfig); code != 0 || !strings.Contains(out, "latest compatible with blvm-node 0.2.0: 1.0.0") {
		t.Fatalf("info: %d %s %s", code, out, errOut)
	}
	out, errOut, code = cli(t, "install", "probe", "--node-config", nodeConfig, "--dry-run")
	if code != 0 || !strings.Contains(out, "install   probe 1.0.0: requested; grants read_blockchain") {
		t.Fatalf("dry run: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(root, "modules", "probe")); err == nil {
		t.Fatal("--dry-run installed")
	}
	// Not a terminal and no --yes: refused, nothing installed.
	if _, errOut, code = cli(t, "install", "probe", "--node-config", nodeConfig); code != 1 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("without --yes: %d %s", code, errOut)
	}
	out, errOut, code = cli(t, "--admin-socket", filepath.Join(t.TempDir(), "none.sock"), "install", "probe@^1.0", "--node-config", nodeConfig, "--yes")
	if code != 0 || !strings.Contains(out, "installed probe 1.0.0") || !strings.Contains(out, "no daemon") {
		t.Fatalf("install: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(root, "modules", "probe", "probe")); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code = cli(t, "outdated", "--node-config", nodeConfig, "--json"); code != 0 || !strings.Contains(out, `"outdated": []`) {
		t.Fatalf("outdated: %d %s %s", code, out, errOut)
	}
	if _, errOut, code = cli(t, "registry", "yank", reg, "probe", "1.0.0"); code != 0 {
		t.Fatalf("yank: %s", errOut)
	}
	if _, errOut, code = cli(t, "install", "probe@1.0.0", "--node-config", nodeConfig, "--yes"); code != 1 || !strings.Contains(errOut, "yanked") {
		t.Fatalf("yanked: %d %s", code, errOut)
	}
	// A module dir still installs as before.
	if out, errOut, code = cli(t, "install", "--node-config", nodeConfig, dir); code != 0 {
		t.Fatalf("install DIR: %d %s %s", code, out, errOut)
	}
}

// TestPaidModuleNeedsReceipt: a paid module installs only with a receipt
// signed by the pinned marketplace key for this node, price and split.
func TestPaidModuleNeedsReceipt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	dir, nodeConfig, root := signedModule(t)
	base := filepath.Dir(dir)
	src, _ := os.ReadFile(filepath.Join(dir, "module.toml"))
	author, _ := verify.GenerateKey()
	pc := market.PaymentCode(author.PubKey(), [32]byte{7})
	terms := market.Terms{Module: "probe", Version: "1.0.0", Required: true, PriceSats: 1000, AuthorPaymentCode: pc, CommonsPaymentCode: pc}
	td, _ := terms.Digest()
	i := strings.Index(string(src), "[signatures]")
	src = append([]byte(string(src[:i])+fmt.Sprintf("[payment]\nrequired = true\nprice_sats = 1000\nauthor_payment_code = %q\ncommons_payment_code = %q\npayment_signature = %q\n\n", pc, pc, verify.SignDigest(author, td))), src[i:]...)
	os.WriteFile(filepath.Join(dir, "module.toml"), src, 0o644)
	for _, name := range []string{"alice", "bob"} {
		if _, errOut, code := cli(t, "sign", "--key", filepath.Join(base, name+".key"), "--threshold", "2-of-3", dir); code != 0 {
			t.Fatalf("sign: %s", errOut)
		}
	}
	reg := filepath.Join(t.TempDir(), "reg")
	cli(t, "registry", "init", reg)
	if out, errOut, code := cli(t, "registry", "publish", reg, dir); code != 0 {
		t.Fatalf("publish: %s %s", out, errOut)
	}
	mk, _ := verify.GenerateKey()
	srv := httptest.NewServer(server.Handler(reg, nil))
	defer srv.Close()
	cfg, _ := os.ReadFile(nodeConfig)
	cfg = append(cfg, fmt.Sprintf("[paths]\nroot = %q\n[registry]\nurl = %q\nroot = %q\nmarketplace_key = %q\n", root, srv.URL, filepath.Join(reg, "root.json"), hex.EncodeToString(mk.PubKey().SerializeCompressed()))...)
	os.WriteFile(nodeConfig, cfg, 0o644)

	_, errOut, code := cli(t, "install", "probe", "--node-config", nodeConfig, "--node-id", "n1", "--yes")
	if code != 1 || !strings.Contains(errOut, "is paid (1000 sats): obtain a receipt") {
		t.Fatalf("no receipt: %d %s", code, errOut)
	}
	r := market.Receipt{Module: "probe", Versions: "^1.0.0", NodeID: "n1", AmountSats: 1000, Split: market.Split{Author: 750, Marketplace: 150, Node: 100}}
	d, _ := r.Digest()
	r.Signature = verify.SignDigest(mk, d)
	data, _ := json.Marshal(r)
	rf := filepath.Join(base, "receipt.json")
	os.WriteFile(rf, data, 0o644)
	if _, errOut, code = cli(t, "install", "probe", "--node-config", nodeConfig, "--node-id", "n2", "--receipt", rf, "--yes"); code != 1 || !strings.Contains(errOut, `for node "n1"`) {
		t.Fatalf("receipt for another node: %d %s", code, errOut)
	}
	out, errOut, code := cli(t, "--admin-socket", filepath.Join(base, "none.sock"), "install", "probe", "--node-config", nodeConfig, "--node-id", "n1", "--receipt", rf, "--yes")
	if code != 0 || !strings.Contains(out, "price 1000 sats (author 750, marketplace 150, node 100), receipt checked") {
		t.Fatalf("with receipt: %d %s %s", code, out, errOut)
	}
}
