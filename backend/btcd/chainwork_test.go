package btcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
