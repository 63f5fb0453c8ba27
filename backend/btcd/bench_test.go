package btcd_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"

	"github.com/blvm/blvm-sandbox/backend/btcd"
	"github.com/blvm/blvm-sandbox/backend/btcdtest"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// BenchmarkBlockByHeight: the driver's BlockHash+Block (what the hub's
// chain.GetBlockByHeight calls) against rpcclient's getblockhash+getblock on
// the same btcd in the same run.
func BenchmarkBlockByHeight(b *testing.B) {
	n := btcdtest.Start(b, btcdtest.Options{})
	ctl := n.Client()
	if _, err := ctl.Generate(20); err != nil {
		b.Fatal(err)
	}
	d := newDriver(&testing.T{}, n)
	defer d.Close()
	ctx := context.Background()
	// The same transport as the driver: a websocket client.
	ws, err := rpcclient.New(&rpcclient.ConnConfig{Host: n.RPCAddr, Endpoint: "ws", User: n.User, Pass: n.Pass, Certificates: n.CertPEM}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Shutdown()
	b.Run("driver", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			h, err := d.BlockHash(ctx, uint64(1+i%20))
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := d.Block(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rpcclient", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			h, err := ws.GetBlockHash(int64(1 + i%20))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ws.GetBlock(h); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBlockEventLatency logs p50/p99 from btcd's generate returning to the
// driver's BlockConnected, against a plain rpcclient websocket subscriber in
// the same run (run with -v). BenchmarkBlockEventLatency reports the same
// figures as benchmark lines.
func TestBlockEventLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	drv, pl := measureLatency(t, n, newDriver(t, n), 100)
	t.Logf("block event latency after generate returns, 100 blocks: driver p50 %s p99 %s; plain rpcclient p50 %s p99 %s",
		quantile(drv, .5), quantile(drv, .99), quantile(pl, .5), quantile(pl, .99))
}

// BenchmarkBlockEventLatency measures 100 blocks once and reports each
// quantile as a sub-benchmark's ns/op, so that benchtable can pair
// driver_p50 with rpcclient_p50 (and p99): run it with -benchtime 1x.
func BenchmarkBlockEventLatency(b *testing.B) {
	n := btcdtest.Start(b, btcdtest.Options{})
	d, err := btcd.New(btcd.Config{Host: n.RPCAddr, User: n.User, Pass: n.Pass, CertPEM: n.CertPEM, Network: "regtest", Poll: time.Hour, CallTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	drv, pl := measureLatency(b, n, d, 100)
	for _, m := range []struct {
		name string
		v    time.Duration
	}{
		{"driver_p50", quantile(drv, .5)}, {"rpcclient_p50", quantile(pl, .5)},
		{"driver_p99", quantile(drv, .99)}, {"rpcclient_p99", quantile(pl, .99)},
	} {
		b.Run(m.name, func(b *testing.B) { b.ReportMetric(float64(m.v.Nanoseconds()), "ns/op") })
	}
}

func quantile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

// measureLatency mines blocks one at a time and times, from generate
// returning, the driver's BlockConnected and a plain rpcclient websocket
// subscriber's notification, both listening at once.
func measureLatency(tb testing.TB, n *btcdtest.Node, d *btcd.Driver, blocks int) (drv, plain []time.Duration) {
	ctl := n.Client()
	drvSeen := make(chan chainhash.Hash, 200)
	defer d.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind == hub.BlockConnected {
			drvSeen <- ev.Hash
		}
	})()
	plainSeen := make(chan chainhash.Hash, 200)
	pc, err := rpcclient.New(&rpcclient.ConnConfig{Host: n.RPCAddr, Endpoint: "ws", User: n.User, Pass: n.Pass, Certificates: n.CertPEM},
		&rpcclient.NotificationHandlers{OnBlockConnected: func(h *chainhash.Hash, _ int32, _ time.Time) { plainSeen <- *h }})
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Shutdown()
	if err := pc.NotifyBlocks(); err != nil {
		tb.Fatal(err)
	}
	wait := func(ch chan chainhash.Hash, want chainhash.Hash) bool {
		for {
			select {
			case h := <-ch:
				if h == want {
					return true
				}
			case <-time.After(10 * time.Second):
				return false
			}
		}
	}
	for range blocks {
		hs, err := ctl.Generate(1)
		if err != nil {
			tb.Fatal(err)
		}
		t0 := time.Now()
		done := make(chan time.Duration, 1)
		go func() {
			if wait(plainSeen, *hs[0]) {
				done <- time.Since(t0)
			} else {
				done <- -1
			}
		}()
		if !wait(drvSeen, *hs[0]) {
			tb.Fatalf("no driver event for %s", hs[0])
		}
		drv = append(drv, time.Since(t0))
		p := <-done
		if p < 0 {
			tb.Fatalf("no rpcclient notification for %s", hs[0])
		}
		plain = append(plain, p)
	}
	return drv, plain
}
