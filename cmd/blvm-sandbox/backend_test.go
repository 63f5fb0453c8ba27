package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/backend/btcdtest"
	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

func openTestChain(t *testing.T) *devchain.Chain {
	c, err := devchain.Open(filepath.Join(t.TempDir(), "dev.db"), devchain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNodeBackendDevchainByDefault(t *testing.T) {
	chain := openTestChain(t)
	cfg, err := nodeconfig.ParseBytes("node.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, mine, stop, err := nodeBackend(cfg, chain, slog.New(slog.DiscardHandler))
	if err != nil || !mine || b != hub.Backend(chain) {
		t.Fatalf("default backend = %T mine=%v, %v", b, mine, err)
	}
	stop()
}

// An unreachable btcd is a logged error naming the url (never the
// password), and the backend answers unavailable; a reachable one serves.
func TestNodeBackendBtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	cert := filepath.Join(dir, "rpc.cert")
	os.WriteFile(pass, []byte(n.Pass+"\n"), 0o600)
	os.WriteFile(cert, n.CertPEM, 0o600)
	src := "[backend]\nkind = \"btcd\"\nurl = \"" + n.RPCAddr + "\"\nuser = \"" + n.User + "\"\npassword_file = \"" + pass + "\"\ntls_cert = \"" + cert + "\"\n"
	cfg, err := nodeconfig.ParseBytes("node.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	chain := openTestChain(t)

	n.Stop()
	var logs bytes.Buffer
	b, mine, stop, err := nodeBackend(cfg, chain, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || mine {
		t.Fatalf("nodeBackend = mine %v, %v", mine, err)
	}
	if !strings.Contains(logs.String(), n.RPCAddr) || strings.Contains(logs.String(), n.Pass) {
		t.Fatalf("log must name %s and not the password:\n%s", n.RPCAddr, logs.String())
	}
	if _, _, err := b.ChainTip(context.Background()); !errors.Is(err, hub.ErrNodeUnavailable) {
		t.Fatalf("ChainTip with btcd down: %v", err)
	}
	stop()

	n.Restart()
	b, _, stop, err = nodeBackend(cfg, chain, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, h, err := b.ChainTip(context.Background()); err != nil || h != 0 || b.Network() != "regtest" {
		t.Fatalf("ChainTip = %d, %v on %q", h, err, b.Network())
	}
}
