package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/backend/btcd"
	"github.com/blvm/blvm-sandbox/backend/btcdtest"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// TestBtcdEventLatencyThroughHub measures what issue 16's goal names: from
// btcd's generate returning to a module's node.BlockConnected event on the
// hub (over its socket), p50 and p99 over 100 blocks mined one at a time,
// against a plain rpcclient websocket subscriber in the same run. It prints
// the four figures as benchmark lines (go test -v) for
// scripts/bench-backend.sh, and fails on a missing or out-of-order event.
// settledBtcd starts a btcd and a driver on it (closed in cleanup) and
// waits until the driver's first pass learnt btcd's tip.
func settledBtcd(t *testing.T) (*btcdtest.Node, *btcd.Driver) {
	t.Helper()
	n := btcdtest.Start(t, btcdtest.Options{})
	d, err := btcd.New(btcd.Config{Host: n.RPCAddr, User: n.User, Pass: n.Pass, CertPEM: n.CertPEM, CallTimeout: 5 * time.Second, RetryMin: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	for h, _ := d.Told(); h == (chainhash.Hash{}); h, _ = d.Told() {
		if ctx.Err() != nil {
			t.Fatal("the driver never learnt btcd's tip")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n, d
}

func TestBtcdEventLatencyThroughHub(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n, d := settledBtcd(t)
	e := newEnvWith(t, hub.Config{RequestsPerSecond: 1e6}, d)
	c := e.module("block-logger", "read_blockchain", "subscribe_events")
	mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected"}}, pb.ErrorCode_OK)

	viaHub, plain := btcdtest.BlockLatency(t, n, 100, func(want chainhash.Hash) bool {
		ev := nextEvent(t, c, 10*time.Second)
		var be pb.BlockEvent
		if err := proto.Unmarshal(ev.Payload, &be); err != nil || be.Hash != want.String() {
			t.Fatalf("event %s %s (%v), want the block %s", ev.Type, be.Hash, err, want)
		}
		return true
	})
	q := btcdtest.Quantile
	for _, m := range []struct {
		name string
		v    time.Duration
	}{
		{"hub_p50", q(viaHub, .5)}, {"rpcclient_p50", q(plain, .5)},
		{"hub_p99", q(viaHub, .99)}, {"rpcclient_p99", q(plain, .99)},
	} {
		fmt.Printf("BenchmarkBlockEventLatencyHub/%s\t1\t%d ns/op\n", m.name, m.v.Nanoseconds())
	}
	t.Logf("generate returning to the module's hub event, 100 blocks: hub p50 %s p99 %s; plain rpcclient p50 %s p99 %s",
		q(viaHub, .5), q(viaHub, .99), q(plain, .5), q(plain, .99))
}
