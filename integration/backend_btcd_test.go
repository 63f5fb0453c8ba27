package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/backend/btcdtest"
)

// TestRootBackendBtcd runs the daemon with [backend] kind = "btcd" and the
// example modules, mines blocks through btcd's RPC, and checks from outside
// (`cli block-logger recent`, `logs`) that the modules saw them, across a
// reorg of depth 2.
func TestRootBackendBtcd(t *testing.T) {
	requireRoot(t)
	node := btcdtest.Start(t, btcdtest.Options{})
	ctl := node.Client()
	d := newDaemon(t)
	pass := filepath.Join(d.dir, "btcd.pass")
	cert := filepath.Join(d.dir, "btcd.cert")
	os.WriteFile(pass, []byte(node.Pass+"\n"), 0o600)
	os.WriteFile(cert, node.CertPEM, 0o600)
	f, err := os.OpenFile(filepath.Join(d.dir, "node.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[backend]\nkind = \"btcd\"\nurl = %q\nuser = %q\npassword_file = %q\ntls_cert = %q\npoll_interval = \"1s\"\n", node.RPCAddr, node.User, pass, cert)
	f.Close()
	d.start()
	if strings.Contains(d.log.String(), node.Pass) {
		t.Fatal("the daemon logged btcd's password")
	}

	recent := func() string {
		r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "cli", "block-logger", "recent", "10")
		if r.code != 0 {
			t.Fatalf("cli block-logger recent: %+v", r)
		}
		return r.stdout
	}
	waitRecent := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out := recent()
			if ok(out) {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("block-logger never showed %s:\n%s\ndaemon log:\n%s", what, out, d.log.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	mine := func(n int) []chainhash.Hash {
		hs, err := ctl.Generate(uint32(n))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]chainhash.Hash, n)
		for i, h := range hs {
			out[i] = *h
		}
		return out
	}
	hasAll := func(hs []chainhash.Hash) func(string) bool {
		return func(out string) bool {
			for _, h := range hs {
				if !strings.Contains(out, h.String()) {
					return false
				}
			}
			return true
		}
	}

	first := mine(5)
	waitRecent("the 5 blocks mined through btcd", hasAll(first))

	// Reorg: drop the top two, mine a longer branch. A wait first, so that
	// the branch's timestamps (hence hashes) differ from the dropped blocks.
	if err := ctl.InvalidateBlock(&first[3]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	branch := mine(3)
	for _, h := range branch {
		if h == first[3] || h == first[4] {
			t.Fatal("btcd re-mined a dropped block: no reorg to check")
		}
	}
	out := waitRecent("the new branch", hasAll(append(first[:3:3], branch...)))
	if strings.Contains(out, first[3].String()) || strings.Contains(out, first[4].String()) {
		t.Fatalf("block-logger still lists the disconnected blocks:\n%s", out)
	}
	logs := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "logs", "block-logger").stdout
	for _, h := range first[3:] {
		if !strings.Contains(logs, h.String()) || !strings.Contains(logs, "block disconnected") {
			t.Fatalf("block-logger's log has no disconnect of %s:\n%s", h, logs)
		}
	}
}
