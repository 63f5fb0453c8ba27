package btcd_test

import (
	"context"
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
		btcdtest.Quantile(drv, .5), btcdtest.Quantile(drv, .99), btcdtest.Quantile(pl, .5), btcdtest.Quantile(pl, .99))
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
		{"driver_p50", btcdtest.Quantile(drv, .5)}, {"rpcclient_p50", btcdtest.Quantile(pl, .5)},
		{"driver_p99", btcdtest.Quantile(drv, .99)}, {"rpcclient_p99", btcdtest.Quantile(pl, .99)},
	} {
		b.Run(m.name, func(b *testing.B) { b.ReportMetric(float64(m.v.Nanoseconds()), "ns/op") })
	}
}

// measureLatency times the driver's BlockConnected against a plain
// rpcclient subscriber (btcdtest.BlockLatency).
func measureLatency(tb testing.TB, n *btcdtest.Node, d *btcd.Driver, blocks int) (drv, plain []time.Duration) {
	drvSeen := make(chan chainhash.Hash, 2*blocks)
	defer d.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind == hub.BlockConnected {
			drvSeen <- ev.Hash
		}
	})()
	return btcdtest.BlockLatency(tb, n, blocks, func(want chainhash.Hash) bool {
		for {
			select {
			case h := <-drvSeen:
				if h == want {
					return true
				}
			case <-time.After(10 * time.Second):
				return false
			}
		}
	})
}
