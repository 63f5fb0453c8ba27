package sdk_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/hub/hubtest"
	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

// These tests run the SDK against the real hub (with hubtest's in-memory
// backend), so the two sides' reading of the protocol cannot drift apart.

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type testHub struct {
	t   *testing.T
	h   *hub.Hub
	b   *hubtest.Backend
	dir string
}

func newTestHub(t *testing.T) *testHub {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdk")
	if err != nil {
		t.Fatal(err)
	}
	b := hubtest.NewBackend(10)
	h := hub.New(b, hub.Config{NodeVersion: "test", Logger: quiet()})
	t.Cleanup(func() { h.Close(); os.RemoveAll(dir) })
	return &testHub{t: t, h: h, b: b, dir: dir}
}

// connect attaches a module holding caps and connects to it with the SDK.
func (th *testHub) connect(name string, caps ...string) *sdk.Module {
	th.t.Helper()
	acl, err := hubtest.ACL(name, caps...)
	if err != nil {
		th.t.Fatal(err)
	}
	sock := filepath.Join(th.dir, name+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		th.t.Fatal(err)
	}
	if err := th.h.Attach(hub.ModuleSpec{ID: name + "#1", Name: name, Version: "1.0.0", Capabilities: caps, ACL: acl}, ln); err != nil {
		th.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := sdk.Connect(ctx, sdk.Options{Name: name, Version: "1.0.0", Socket: sock, Logger: quiet()})
	if err != nil {
		th.t.Fatalf("connect %s: %v", name, err)
	}
	th.t.Cleanup(func() { m.Close() })
	return m
}

func TestWithHub(t *testing.T) {
	th := newTestHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	provider := th.connect("stratum-v2", "read_blockchain", "subscribe_events", "register_module_api", "register_cli")
	consumer := th.connect("merge-mining", "read_blockchain", "read_stratum")

	if w := consumer.Welcome(); w.GetModuleId() != "merge-mining#1" || w.GetPublishNamespace() != "merge-mining" {
		t.Errorf("welcome = %v", w)
	}
	hash, height := th.b.Tip()
	tip, err := consumer.ChainTip(ctx)
	if err != nil || tip.GetHash() != hash.String() || tip.GetHeight() != height {
		t.Fatalf("ChainTip = %v, %v; want %s %d", tip, err, hash, height)
	}
	blk, err := consumer.BlockByHeight(ctx, 3)
	if err != nil || blk.GetHeader().GetHeight() != 3 {
		t.Fatalf("BlockByHeight(3) = %v, %v", blk, err)
	}
	if _, err := consumer.BlockByHeight(ctx, 999); sdk.CodeOf(err) != pb.ErrorCode_NOT_FOUND {
		t.Errorf("BlockByHeight(999): %v, want NOT_FOUND", err)
	}

	// Refused, and the connection stays up.
	if _, err := consumer.CastVote(ctx, hubtest.ProposalID, "yes"); sdk.CodeOf(err) != pb.ErrorCode_PERMISSION_DENIED {
		t.Errorf("CastVote without governance_vote: %v", err)
	}
	if err := consumer.Subscribe(ctx, "node.BlockConnected"); sdk.CodeOf(err) != pb.ErrorCode_PERMISSION_DENIED {
		t.Errorf("Subscribe without subscribe_events: %v", err)
	}
	if _, err := consumer.BlockHeight(ctx); err != nil {
		t.Errorf("call after refusals: %v", err)
	}

	// Module API: the callee sees the caller's real name.
	provider.HandleAPI("Echo", func(ctx context.Context, caller sdk.Caller, params []byte) ([]byte, error) {
		return []byte(caller.ModuleName + ":" + string(params)), nil
	})
	if err := provider.RegisterAPI(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := consumer.CallModule(ctx, "stratum-v2", "Echo", []byte("hi"))
	if err != nil || string(out) != "merge-mining:hi" {
		t.Errorf("CallModule = %q, %v", out, err)
	}
	if _, err := consumer.CallModule(ctx, "lightning-network", "Echo", nil); sdk.CodeOf(err) != pb.ErrorCode_PERMISSION_DENIED {
		t.Errorf("CallModule without the provider's capability: %v", err)
	}

	// CLI through the hub's runmodulecli.
	err = provider.HandleCLI(ctx, sdk.CLISpec{Commands: []sdk.CLICommand{{Name: "template", About: "the template"}}},
		func(ctx context.Context, cmd string, args []string) ([]byte, []byte, int) {
			return []byte(fmt.Sprintf("%s %v\n", cmd, args)), nil, 3
		})
	if err != nil {
		t.Fatal(err)
	}
	res, err := th.h.RunCli(ctx, "stratum-v2", "template", []string{"a"})
	if err != nil || string(res.GetStdout()) != "template [a]\n" || res.GetExitCode() != 3 {
		t.Errorf("RunCli = %v, %v", res, err)
	}

	// Events.
	got := make(chan *pb.BlockEvent, 1)
	provider.OnEvent("node.BlockConnected", func(ctx context.Context, ev sdk.Event) {
		var b pb.BlockEvent
		if err := proto.Unmarshal(ev.GetPayload(), &b); err == nil {
			got <- &b
		}
	})
	if err := provider.Subscribe(ctx, "node.BlockConnected"); err != nil {
		t.Fatal(err)
	}
	th.b.Emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: hash, Height: height})
	select {
	case b := <-got:
		if b.GetHash() != hash.String() || b.GetHeight() != height {
			t.Errorf("event = %v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no BlockConnected event")
	}
}

// 100 modules connect at once, each makes calls concurrently and receives
// the same event.
func TestHundredModulesWithHub(t *testing.T) {
	th := newTestHub(t)
	const n = 100
	mods := make([]*sdk.Module, n)
	var got sync.WaitGroup
	got.Add(n)
	for i := range mods {
		mods[i] = th.connect(fmt.Sprintf("mod-%03d", i), "read_blockchain", "subscribe_events")
		var once sync.Once
		mods[i].OnEvent("node.BlockConnected", func(context.Context, sdk.Event) { once.Do(got.Done) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, height := th.b.Tip()
	var wg sync.WaitGroup
	errs := make(chan error, n*10)
	for _, m := range mods {
		for j := 0; j < 10; j++ {
			wg.Add(1)
			go func(m *sdk.Module, h uint64) {
				defer wg.Done()
				b, err := m.BlockByHeight(ctx, h)
				if err == nil && b.GetHeader().GetHeight() != h {
					err = fmt.Errorf("asked %d got %d", h, b.GetHeader().GetHeight())
				}
				if err != nil {
					errs <- err
				}
			}(m, uint64(j)%(height+1))
		}
		if err := m.Subscribe(ctx, "node.BlockConnected"); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	hash, _ := th.b.Tip()
	th.b.Emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: hash, Height: height})
	done := make(chan struct{})
	go func() { got.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("not every module received the event")
	}
}
