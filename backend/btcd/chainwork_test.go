package btcd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/backend/btcd"
	"github.com/blvm/blvm-sandbox/backend/btcdtest"
)

// btcd reports no chainwork; the driver sums it from the headers and keeps
// the sum through a block 100 below the tip. Every regtest block is at the
// proof-of-work limit, 2 units of work each, so the chainwork at height h
// is 2(h+1). Checked after a first sum from genesis, after more blocks
// (summed from the kept block), with the tip below the kept block, and
// after a reorg that replaced the kept block.
func TestChainworkSummed(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	ctl := n.Client()
	d := newDriver(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := func(what string) int64 {
		t.Helper()
		_, h, err := ctl.GetBestBlock()
		if err != nil {
			t.Fatal(err)
		}
		info, err := d.ChainInfo(ctx)
		if err != nil {
			t.Fatalf("%s: ChainInfo: %v", what, err)
		}
		if want := fmt.Sprintf("%x", 2*(int64(h)+1)); info.Chainwork != want || info.Height != uint64(h) {
			t.Fatalf("%s: chainwork %q at %d, want %q at %d", what, info.Chainwork, info.Height, want, h)
		}
		return int64(h)
	}
	if _, err := ctl.Generate(300); err != nil {
		t.Fatal(err)
	}
	check("first sum")
	if _, err := ctl.Generate(5); err != nil {
		t.Fatal(err)
	}
	check("5 more blocks")

	// The tip below the kept block (at about 205): summed again.
	at150, err := ctl.GetBlockHash(150)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.InvalidateBlock(at150); err != nil {
		t.Fatal(err)
	}
	if h := check("tip below the kept block"); h != 149 {
		t.Fatalf("tip %d after invalidating 150", h)
	}
	if err := ctl.ReconsiderBlock(at150); err != nil {
		t.Fatal(err)
	}
	check("back on the old chain")

	// A competing branch from 150 that outgrows the old one: the kept
	// block left the best chain. A second later, so that its headers
	// differ from the invalidated ones.
	if err := ctl.InvalidateBlock(at150); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := ctl.Generate(200); err != nil {
		t.Fatal(err)
	}
	if nb, _ := ctl.GetBlockHash(150); *nb == *at150 {
		t.Fatal("the competing branch re-mined block 150: no reorg to check")
	}
	if h := check("after a reorg below the kept block"); h != 349 {
		t.Fatalf("tip %d on the new branch, want 349", h)
	}
}

// Once connected, the driver sums the chainwork itself: with no ChainInfo
// call the kept block reaches 100 below the tip.
func TestChainworkWarmedOnConnect(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	if _, err := n.Client().Generate(300); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		kept, err := d.KeptHeight(ctx)
		if err != nil {
			t.Fatalf("kept block at %d when the warm-up should have reached 200: %v", kept, err)
		}
		if kept == 200 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The warm-up waits for the sum's turn like any caller, but on the
// driver's context: a module's ChainInfo meanwhile gives up at its own
// deadline, and Close ends the waiting warm-up (no goroutine left). The node
// is started after the turn is taken, so the warm-up cannot have run first.
func TestChainworkWarmupEndsWithClose(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real btcd")
	}
	if warmUpLingers() {
		t.Fatal("a warm-up from an earlier test still runs")
	}
	n := btcdtest.Start(t, btcdtest.Options{})
	n.Stop()
	d, err := btcd.New(btcd.Config{
		Host: n.RPCAddr, User: n.User, Pass: n.Pass, CertPEM: n.CertPEM,
		Poll: time.Hour, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, CallTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	release := d.HoldChainwork()
	defer release()
	n.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	for !btcd.WarmingUp() {
		if ctx.Err() != nil {
			t.Fatal("no warm-up after connecting")
		}
		time.Sleep(10 * time.Millisecond)
	}

	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := d.ChainInfo(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ChainInfo with a 100 ms ctx while the sum's turn is taken = %v; want its deadline", err)
	}

	closed := make(chan struct{})
	go func() { d.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s of a warm-up waiting for its turn")
	}
	if warmUpLingers() {
		t.Fatal("the warm-up still runs a second after Close")
	}
}

// warmUpLingers reports whether a warm-up goroutine is still there after a
// second: it calls wg.Done in a defer, so Close may return while it is
// still leaving its frame.
func warmUpLingers() bool {
	for deadline := time.Now().Add(time.Second); btcd.WarmingUp(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return true
		}
	}
	return false
}
