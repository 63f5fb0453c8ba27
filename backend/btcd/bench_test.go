package btcd_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"

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

// TestBlockEventLatency prints p50/p99 from btcd's generate returning to the
// driver's BlockConnected, against a plain rpcclient websocket subscriber in
// the same run (run with -v; BLVM_BTCD_LATENCY=1 to enable).
func TestBlockEventLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	ctl := n.Client()
	d := newDriver(t, n)
	drvSeen := make(chan chainhash.Hash, 200)
	defer d.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind == hub.BlockConnected {
			drvSeen <- ev.Hash
		}
	})()
	plainSeen := make(chan chainhash.Hash, 200)
	plain, err := rpcclient.New(&rpcclient.ConnConfig{Host: n.RPCAddr, Endpoint: "ws", User: n.User, Pass: n.Pass, Certificates: n.CertPEM},
		&rpcclient.NotificationHandlers{OnBlockConnected: func(h *chainhash.Hash, _ int32, _ time.Time) { plainSeen <- *h }})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Shutdown()
	if err := plain.NotifyBlocks(); err != nil {
		t.Fatal(err)
	}
	wait := func(ch chan chainhash.Hash, want chainhash.Hash) {
		for {
			select {
			case h := <-ch:
				if h == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no event for %s", want)
			}
		}
	}
	var drv, pl []time.Duration
	for range 100 {
		hs, err := ctl.Generate(1)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		// Both listen at once; each wait measures its own arrival.
		done := make(chan time.Duration, 1)
		go func() { wait(plainSeen, *hs[0]); done <- time.Since(t0) }()
		wait(drvSeen, *hs[0])
		drv = append(drv, time.Since(t0))
		pl = append(pl, <-done)
	}
	q := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1))]
	}
	t.Logf("block event latency after generate returns, 100 blocks: driver p50 %s p99 %s; plain rpcclient p50 %s p99 %s",
		q(drv, .5), q(drv, .99), q(pl, .5), q(pl, .99))
}
