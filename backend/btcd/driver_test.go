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

	sub := subscribeStuck(t, d)
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
	close(sub.release)
	sub.waitInOrder(ctx, base+1, 20)
}

// stuckSub is a subscriber stuck on its first block until release is
// closed; it records the heights of the connects it gets.
type stuckSub struct {
	t       *testing.T
	release chan struct{}
	mu      sync.Mutex
	heights []uint64
}

func subscribeStuck(t *testing.T, d *btcd.Driver) *stuckSub {
	s := &stuckSub{t: t, release: make(chan struct{})}
	first := true
	t.Cleanup(d.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind != hub.BlockConnected {
			return
		}
		if first {
			first = false
			<-s.release
		}
		s.mu.Lock()
		s.heights = append(s.heights, ev.Height)
		s.mu.Unlock()
	}))
	return s
}

// waitInOrder waits for count connects and checks they are from, from+1,
// ... with nothing after them (a duplicate would come after the last).
func (s *stuckSub) waitInOrder(ctx context.Context, from uint64, count int) {
	s.t.Helper()
	got := func() []uint64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return append([]uint64(nil), s.heights...)
	}
	for len(got()) < count {
		if ctx.Err() != nil {
			s.t.Fatalf("after release: %d of %d blocks", len(got()), count)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	hs := got()
	for i, h := range hs {
		if h != from+uint64(i) {
			s.t.Fatalf("event %d is height %d, want %d: a gap or a duplicate", i, h, from+uint64(i))
		}
	}
	if len(hs) != count {
		s.t.Fatalf("%d events for %d blocks", len(hs), count)
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
	sub := subscribeStuck(t, d)
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
	close(sub.release)
	sub.waitInOrder(ctx, 2, count)
}
