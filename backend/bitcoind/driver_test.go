package bitcoind_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/backend/bitcoind"
	"github.com/blvm/blvm-sandbox/backend/bitcoind/coretest"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// events records what a subscriber is told.
type events struct {
	mu  sync.Mutex
	evs []hub.NodeEvent
}

func (e *events) add(ev hub.NodeEvent) { e.mu.Lock(); e.evs = append(e.evs, ev); e.mu.Unlock() }

func (e *events) snapshot() []hub.NodeEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.evs)
}

func (e *events) waitFor(t *testing.T, what string, within time.Duration, ok func([]hub.NodeEvent) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ok(e.snapshot()) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s within %s; events %v", what, within, e.snapshot())
}

func hasTx(kind hub.NodeEventKind, id chainhash.Hash) func([]hub.NodeEvent) bool {
	return func(evs []hub.NodeEvent) bool {
		return slices.ContainsFunc(evs, func(e hub.NodeEvent) bool { return e.Kind == kind && e.Txid == id })
	}
}

func blockEvents(evs []hub.NodeEvent) []hub.NodeEvent {
	return slices.DeleteFunc(evs, func(e hub.NodeEvent) bool {
		return e.Kind != hub.BlockConnected && e.Kind != hub.BlockDisconnected
	})
}

func start(t *testing.T, cfg bitcoind.Config) *bitcoind.Driver {
	t.Helper()
	if cfg.User == "" {
		cfg.User, cfg.Pass = coretest.User, coretest.Pass
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 2 * time.Second
	}
	d, err := bitcoind.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

// settle waits until the driver told its subscribers the node's tip.
func settle(t *testing.T, n *coretest.Node, d *bitcoind.Driver) {
	t.Helper()
	want, _ := n.Tip()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if h, _ := d.Told(); h == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the driver never told the tip %s", want)
}

// warmZMQ mines until a ZMQ message reached the driver: a SUB socket
// misses what is published before its subscription reaches the PUB.
func warmZMQ(t *testing.T, n *coretest.Node, d *bitcoind.Driver) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for d.ZMQMessages() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no ZMQ message reached the driver")
		}
		n.Mine(1)
		time.Sleep(20 * time.Millisecond)
	}
	settle(t, n, d)
}

// With ZMQ up and the poll ticker an hour long, blocks and mempool
// additions still arrive: the ZMQ messages are what wake the syncer.
func TestZMQWakesSyncer(t *testing.T) {
	n := coretest.Start(t, coretest.Options{ZMQ: true}, 110)
	d := start(t, bitcoind.Config{URL: n.URL, ZMQHashBlock: n.ZMQ, ZMQSequence: n.ZMQ, Poll: time.Hour, FallbackPoll: time.Hour})
	warmZMQ(t, n, d)
	var rec events
	defer d.Subscribe(rec.add)()
	mined := n.Mine(2)
	rec.waitFor(t, "two connects", 5*time.Second, func(evs []hub.NodeEvent) bool { return len(blockEvents(evs)) == 2 })
	if got := blockEvents(rec.snapshot()); got[0].Hash != mined[0] || got[1].Hash != mined[1] {
		t.Fatalf("connects %v, want %v", got, mined)
	}
	tx, _ := n.SendTx(1)
	rec.waitFor(t, "MempoolTransactionAdded", 5*time.Second, hasTx(hub.MempoolTransactionAdded, tx.TxHash()))
	if d.Gaps() != 0 {
		t.Fatalf("%d gaps without a dropped message", d.Gaps())
	}
}

// A dropped sequence message (Core's high-water mark) shows as a gap in the
// topic's numbers and forces a mempool resync: the transaction whose "A"
// was lost still reaches the modules, long before the hour-long poll.
func TestZMQGapResyncs(t *testing.T) {
	n := coretest.Start(t, coretest.Options{ZMQ: true}, 110)
	d := start(t, bitcoind.Config{URL: n.URL, ZMQSequence: n.ZMQ, Poll: time.Hour, FallbackPoll: time.Hour})
	warmZMQ(t, n, d)
	var rec events
	defer d.Subscribe(rec.add)()
	n.Drop("sequence", 1)
	lost, _ := n.SendTx(1)
	seen, _ := n.SendTx(2)
	rec.waitFor(t, "the added transaction after the gap", 5*time.Second, hasTx(hub.MempoolTransactionAdded, seen.TxHash()))
	rec.waitFor(t, "the transaction whose message was dropped", 5*time.Second, hasTx(hub.MempoolTransactionAdded, lost.TxHash()))
	if d.Gaps() != 1 {
		t.Fatalf("gaps = %d, want 1", d.Gaps())
	}
}

// Without a ZMQ publisher (configured but not listening) the driver polls.
func TestNoZMQPolls(t *testing.T) {
	n := coretest.Start(t, coretest.Options{}, 5)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "tcp://" + l.Addr().String()
	l.Close()
	d := start(t, bitcoind.Config{URL: n.URL, ZMQHashBlock: dead, Poll: time.Hour, FallbackPoll: 50 * time.Millisecond})
	settle(t, n, d)
	if d.ZMQConnected() != 0 {
		t.Fatalf("ZMQ connected to a closed port")
	}
	var rec events
	defer d.Subscribe(rec.add)()
	mined := n.Mine(3)
	rec.waitFor(t, "three connects by polling", 3*time.Second, func(evs []hub.NodeEvent) bool { return len(blockEvents(evs)) == 3 })
	for i, ev := range blockEvents(rec.snapshot()) {
		if ev.Kind != hub.BlockConnected || ev.Hash != mined[i] {
			t.Fatalf("event %d = %v %s, want connect %s", i, ev.Kind, ev.Hash, mined[i])
		}
	}
}

// A reorg seen only through RPC (no ZMQ) is delivered as disconnects,
// newest first, then connects in order.
func TestReorgThroughRPC(t *testing.T) {
	n := coretest.Start(t, coretest.Options{}, 10)
	d := start(t, bitcoind.Config{URL: n.URL, Poll: time.Hour, FallbackPoll: 30 * time.Millisecond})
	settle(t, n, d)
	var rec events
	defer d.Subscribe(rec.add)()
	top, _ := n.Tip()
	ctx := context.Background()
	below, err := d.BlockHash(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	n.Disconnect(2)
	fresh := n.Mine(3)
	rec.waitFor(t, "five block events", 3*time.Second, func(evs []hub.NodeEvent) bool { return len(blockEvents(evs)) >= 5 })
	time.Sleep(100 * time.Millisecond)
	got := blockEvents(rec.snapshot())
	want := []struct {
		kind hub.NodeEventKind
		hash chainhash.Hash
	}{{hub.BlockDisconnected, top}, {hub.BlockDisconnected, below}, {hub.BlockConnected, fresh[0]}, {hub.BlockConnected, fresh[1]}, {hub.BlockConnected, fresh[2]}}
	if len(got) != len(want) {
		t.Fatalf("%d events, want 5: %v", len(got), got)
	}
	for i, w := range want {
		if got[i].Kind != w.kind || got[i].Hash != w.hash {
			t.Fatalf("event %d = %v %s, want %v %s", i, got[i].Kind, got[i].Hash, w.kind, w.hash)
		}
	}
	if _, _, err := d.Block(ctx, top); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("Block(disconnected) = %v, want ErrNotFound", err)
	}
}

// A node that stops or stalls makes calls fail with ErrNodeUnavailable
// within the call timeout, then at once; it comes back by itself.
func TestNodeDownFailsFast(t *testing.T) {
	n := coretest.Start(t, coretest.Options{}, 3)
	d := start(t, bitcoind.Config{URL: n.URL, CallTimeout: 300 * time.Millisecond, Poll: time.Hour, FallbackPoll: time.Hour})
	ctx := context.Background()
	n.Stall(5 * time.Second)
	t0 := time.Now()
	if _, _, err := d.ChainTip(ctx); !errors.Is(err, hub.ErrNodeUnavailable) {
		t.Fatalf("ChainTip on a stalled node: %v", err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("stalled call took %s, timeout 300ms", el)
	}
	n.Stall(0)
	n.Stop()
	deadline := time.Now().Add(2 * time.Second)
	for {
		t0 = time.Now()
		_, _, err := d.ChainTip(ctx)
		if el := time.Since(t0); el > 400*time.Millisecond {
			t.Fatalf("call on a stopped node took %s", el)
		}
		if errors.Is(err, hub.ErrNodeUnavailable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ChainTip on a stopped node: %v", err)
		}
	}
	n.Restart()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.ChainTip(ctx); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// Refused credentials and an unreachable node at start are errors naming
// the url; the password appears in neither them nor the log.
func TestCredentialsNeverShown(t *testing.T) {
	n := coretest.Start(t, coretest.Options{}, 1)
	var logs bytes.Buffer
	secret := "s3cret-pass-" + t.Name()
	d, err := bitcoind.New(bitcoind.Config{URL: n.URL, User: "u", Pass: secret, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = d.WaitConnected(ctx)
	d.Close()
	if err == nil || !strings.Contains(err.Error(), n.URL) || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("WaitConnected with a wrong password: %v", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) || logs.Len() == 0 {
		t.Fatalf("password shown (or nothing logged): %v\n%s", err, logs.String())
	}
}
