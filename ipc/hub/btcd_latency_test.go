package hub_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"
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
func TestBtcdEventLatencyThroughHub(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	ctl := n.Client()
	d, err := btcd.New(btcd.Config{Host: n.RPCAddr, User: n.User, Pass: n.Pass, CertPEM: n.CertPEM, Network: "regtest", CallTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	// Settled: the driver's first pass learnt the tip.
	for h, _ := d.Told(); h == (chainhash.Hash{}); h, _ = d.Told() {
		if ctx.Err() != nil {
			t.Fatal("the driver never learnt btcd's tip")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e := newEnvWith(t, hub.Config{RequestsPerSecond: 1e6}, d)
	c := e.module("block-logger", "read_blockchain", "subscribe_events")
	mustCall(t, c, 1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected"}}, pb.ErrorCode_OK)

	plainSeen := make(chan chainhash.Hash, 200)
	pc, err := rpcclient.New(&rpcclient.ConnConfig{Host: n.RPCAddr, Endpoint: "ws", User: n.User, Pass: n.Pass, Certificates: n.CertPEM},
		&rpcclient.NotificationHandlers{OnBlockConnected: func(h *chainhash.Hash, _ int32, _ time.Time) { plainSeen <- *h }})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Shutdown()
	if err := pc.NotifyBlocks(); err != nil {
		t.Fatal(err)
	}
	var viaHub, plain []time.Duration
	for i := range 100 {
		hs, err := ctl.Generate(1)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		done := make(chan time.Duration, 1)
		go func() {
			for {
				select {
				case h := <-plainSeen:
					if h == *hs[0] {
						done <- time.Since(t0)
						return
					}
				case <-time.After(10 * time.Second):
					done <- -1
					return
				}
			}
		}()
		ev := nextEvent(t, c, 10*time.Second)
		took := time.Since(t0)
		var be pb.BlockEvent
		if err := proto.Unmarshal(ev.Payload, &be); err != nil || be.Hash != hs[0].String() {
			t.Fatalf("block %d: event %s %s (%v), want %s", i, ev.Type, be.Hash, err, hs[0])
		}
		viaHub = append(viaHub, took)
		p := <-done
		if p < 0 {
			t.Fatalf("no rpcclient notification for %s", hs[0])
		}
		plain = append(plain, p)
	}
	q := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1))]
	}
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
