package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/blvm/blvm-sandbox/backend/bitcoind"
	"github.com/blvm/blvm-sandbox/backend/bitcoind/coretest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// kind = "bitcoind" builds the Core driver from the cookie file and the
// ZMQ endpoints, on the chain [node] network names.
func TestNodeBackendBitcoind(t *testing.T) {
	n := coretest.Start(t, coretest.Options{ZMQ: true}, 7)
	cookie := filepath.Join(t.TempDir(), ".cookie")
	os.WriteFile(cookie, []byte(coretest.User+":"+coretest.Pass), 0o600)
	for _, tc := range []struct {
		network string
		ok      bool
	}{{"regtest", true}, {"signet", false}} {
		src := "[node]\nnetwork = \"" + tc.network + "\"\n[backend]\nkind = \"bitcoind\"\nurl = \"" + n.URL + "\"\ncookie_file = \"" + cookie + "\"\nzmq_hashblock = \"" + n.ZMQ + "\"\nzmq_sequence = \"" + n.ZMQ + "\"\n"
		cfg, err := nodeconfig.ParseBytes("node.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		b, mine, stop, err := nodeBackend(cfg, openTestChain(t), slog.New(slog.DiscardHandler))
		if err != nil || mine {
			t.Fatalf("nodeBackend = mine %v, %v", mine, err)
		}
		if _, ok := b.(*bitcoind.Driver); !ok {
			t.Fatalf("backend is %T", b)
		}
		_, h, err := b.ChainTip(context.Background())
		stop()
		if tc.ok && (err != nil || h != 7 || b.Network() != "regtest") {
			t.Fatalf("ChainTip = %d, %v on %q", h, err, b.Network())
		}
		if !tc.ok && err == nil {
			t.Fatalf("a regtest node served a config for %s", tc.network)
		}
	}
}
