package btcd_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/backend/btcd"
	"github.com/blvm/blvm-sandbox/backend/btcdtest"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

func newDriver(t *testing.T, n *btcdtest.Node) *btcd.Driver {
	d, err := btcd.New(btcd.Config{
		Host: n.RPCAddr, User: n.User, Pass: n.Pass, CertPEM: n.CertPEM, Network: "regtest",
		Poll: time.Hour, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, CallTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

// A subscriber stuck on its first event must not stall rpcclient's reader:
// notifications keep being taken and reads keep being answered; once it is
// released, every block arrives in order. (Poll is an hour, so only the
// notifications drive the syncer here.)
func TestHandlersDoNotBlockTheReader(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	ctl := n.Client()
	d := newDriver(t, n)
	deadline := time.Now().Add(10 * time.Second)
	for d.Notifications() == 0 && time.Now().Before(deadline) {
		if _, err := ctl.Generate(1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	_, base := d.Told()

	release := make(chan struct{})
	var mu sync.Mutex
	var heights []uint64
	first := true
	defer d.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind != hub.BlockConnected {
			return
		}
		if first {
			first = false
			<-release
		}
		mu.Lock()
		heights = append(heights, ev.Height)
		mu.Unlock()
	})()
	before := d.Notifications()
	if _, err := ctl.Generate(20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, tip, err := d.ChainTip(ctx)
	if err != nil || tip != base+20 {
		t.Fatalf("ChainTip with a stuck subscriber = %d, %v; want %d", tip, err, base+20)
	}
	for d.Notifications() < before+20 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if got := d.Notifications() - before; got < 20 {
		t.Fatalf("rpcclient delivered %d of 20 notifications while a subscriber was stuck", got)
	}
	close(release)
	for {
		mu.Lock()
		got := append([]uint64(nil), heights...)
		mu.Unlock()
		if len(got) >= 20 {
			for i, h := range got {
				if h != base+1+uint64(i) {
					t.Fatalf("heights %v, want %d.. in order", got, base+1)
				}
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after release: %d of 20 blocks", len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A node that is not there at start is a clear error naming the url, calls
// fail fast as unavailable, and the driver connects once it appears.
func TestUnreachableAtStartThenRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	n.Stop()
	d, err := btcd.New(btcd.Config{
		Host: n.RPCAddr, User: n.User, Pass: n.Pass, CertPEM: n.CertPEM,
		RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, CallTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = d.WaitConnected(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), n.RPCAddr) {
		t.Fatalf("WaitConnected with no node = %v; want an error naming %s", err, n.RPCAddr)
	}
	start := time.Now()
	if _, _, err := d.ChainTip(context.Background()); !errors.Is(err, hub.ErrNodeUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("ChainTip while down = %v after %s; want ErrNodeUnavailable at once", err, time.Since(start))
	}
	n.Restart()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.ChainTip(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []btcd.Config{{}, {Host: "nocolon"}, {Host: "127.0.0.1:1"}} {
		if _, err := btcd.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// More blocks than the hint queue holds (1024) while a subscriber stalls
// the syncer: the hints past the bound are dropped and the syncer pulls
// the rest from btcd, so every block still arrives once, in order. (Poll is
// an hour: only the overflow's reconcile can deliver them.)
func TestHintQueueOverflowReconciles(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	ctl := n.Client()
	d := newDriver(t, n)
	if _, err := ctl.Generate(1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, h := d.Told(); h != 1 && time.Now().Before(deadline); _, h = d.Told() {
		time.Sleep(10 * time.Millisecond)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	var heights []uint64
	first := true
	defer d.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind != hub.BlockConnected {
			return
		}
		if first {
			first = false
			<-release
		}
		mu.Lock()
		heights = append(heights, ev.Height)
		mu.Unlock()
	})()
	const count = 1100
	before := d.Notifications()
	if _, err := ctl.Generate(count); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for d.Notifications() < before+2*count && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	for {
		mu.Lock()
		got := append([]uint64(nil), heights...)
		mu.Unlock()
		if len(got) >= count {
			// Anything after the last block would be a duplicate.
			time.Sleep(200 * time.Millisecond)
			mu.Lock()
			got = append([]uint64(nil), heights...)
			mu.Unlock()
			for i, h := range got {
				if h != 2+uint64(i) {
					t.Fatalf("event %d is height %d, want %d: a gap or a duplicate", i, h, 2+i)
				}
			}
			if len(got) != count {
				t.Fatalf("%d events for %d blocks", len(got), count)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("after release: %d of %d blocks", len(got), count)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
