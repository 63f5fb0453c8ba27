package sdk_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/hub/hubtest"
	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

// exampleNode stands in for the node and the runtime in Example: the real
// hub on hubtest's in-memory chain, one module attached with its
// capabilities' ACL, and the BLVM_* environment pointing at a temp dir.
type exampleNode struct {
	h      *hub.Hub
	b      *hubtest.Backend
	name   string
	dir    string
	oldEnv map[string]*string
}

func startExampleNode(name string, caps ...string) *exampleNode {
	dir, err := os.MkdirTemp("", "sdk-example-")
	if err != nil {
		panic(err)
	}
	b := hubtest.NewBackend(3)
	n := &exampleNode{h: hub.New(b, hub.Config{NodeVersion: "0.1.0", Logger: quiet()}), b: b, name: name, dir: dir, oldEnv: map[string]*string{}}
	acl, err := hubtest.ACL(name, caps...)
	if err != nil {
		panic(err)
	}
	sock := filepath.Join(dir, "hub.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		panic(err)
	}
	if err := n.h.Attach(hub.ModuleSpec{ID: name + "#1", Name: name, Version: "0.1.0", Capabilities: caps, ACL: acl}, ln); err != nil {
		panic(err)
	}
	for k, v := range map[string]string{
		sdk.EnvModuleName: name, sdk.EnvModuleVersion: "0.1.0", sdk.EnvSocket: sock,
		sdk.EnvConfig: filepath.Join(dir, "config.toml"), sdk.EnvDataDir: filepath.Join(dir, "data"),
	} {
		if old, ok := os.LookupEnv(k); ok {
			n.oldEnv[k] = &old
		} else {
			n.oldEnv[k] = nil
		}
		os.Setenv(k, v)
	}
	return n
}

// cli runs the module's command through the hub, as `blvm-sandbox cli`
// does, until it prints want (the module may still be starting, or the
// event still on its way) or 10 s pass; it returns the last output.
func (n *exampleNode) cli(command, want string) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := n.h.RunCli(ctx, n.name, command, nil)
		cancel()
		out := ""
		if err == nil {
			out = string(res.GetStdout())
		}
		if out == want || time.Now().After(deadline) {
			if err != nil {
				return err.Error() + "\n"
			}
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connectBlock publishes node.BlockConnected for a new block.
func (n *exampleNode) connectBlock() {
	hash, height := n.b.Tip()
	n.b.Emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: chainhash.DoubleHashH(hash[:]), Height: height + 1})
}

func (n *exampleNode) stop() {
	n.h.Close()
	for k, v := range n.oldEnv {
		if v == nil {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, *v)
		}
	}
	os.RemoveAll(n.dir)
}
