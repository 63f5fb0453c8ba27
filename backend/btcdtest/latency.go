package btcdtest

import (
	"slices"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"
)

// BlockLatency mines blocks on n one at a time and times, from generate
// returning, the side under test against a plain rpcclient websocket
// subscriber's blockconnected notification, both listening at once. seen
// blocks until the side under test has the block with that hash, or returns
// false if it never comes.
func BlockLatency(tb testing.TB, n *Node, blocks int, seen func(chainhash.Hash) bool) (ours, plain []time.Duration) {
	tb.Helper()
	plainSeen := make(chan chainhash.Hash, 2*blocks)
	pc, err := rpcclient.New(&rpcclient.ConnConfig{Host: n.RPCAddr, Endpoint: "ws", User: n.User, Pass: n.Pass, Certificates: n.CertPEM},
		&rpcclient.NotificationHandlers{OnBlockConnected: func(h *chainhash.Hash, _ int32, _ time.Time) {
			select {
			case plainSeen <- *h:
			default:
			}
		}})
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Shutdown()
	if err := pc.NotifyBlocks(); err != nil {
		tb.Fatal(err)
	}
	ctl := n.Client()
	for range blocks {
		hs, err := ctl.Generate(1)
		if err != nil {
			tb.Fatal(err)
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
		if !seen(*hs[0]) {
			tb.Fatalf("block %s never reached the side under test", hs[0])
		}
		ours = append(ours, time.Since(t0))
		p := <-done
		if p < 0 {
			tb.Fatalf("no rpcclient notification for %s", hs[0])
		}
		plain = append(plain, p)
	}
	return ours, plain
}

// Quantile is the p-quantile (0..1) of ds, by rank.
func Quantile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}
