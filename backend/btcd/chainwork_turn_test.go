package btcd

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/backend/rpcread"
)

// fakeHeaders answers the three calls the chainwork sum makes from a chain
// of n headers at regtest's proof-of-work limit (2 units of work each), as
// btcd does: getheaders gives up to 2000 headers after the locator's block.
// gate, if set, runs before the nth getheaders (from 1) is answered; an
// error from it is the call's.
type fakeHeaders struct {
	hdrs  []wire.BlockHeader
	index map[chainhash.Hash]int
	gate  func(ctx context.Context, n int) error

	mu                       sync.Mutex
	getheaders, genesisCalls int
}

func newFakeHeaders(n int) *fakeHeaders {
	f := &fakeHeaders{index: make(map[chainhash.Hash]int)}
	var prev chainhash.Hash
	for i := range n {
		h := wire.BlockHeader{Version: 1, PrevBlock: prev, Timestamp: time.Unix(int64(1296688602+i), 0), Bits: 0x207fffff, Nonce: uint32(i)}
		prev = h.BlockHash()
		f.hdrs = append(f.hdrs, h)
		f.index[prev] = i
	}
	return f
}

func (f *fakeHeaders) tip() (chainhash.Hash, uint64) {
	return f.hdrs[len(f.hdrs)-1].BlockHash(), uint64(len(f.hdrs) - 1)
}

func (f *fakeHeaders) counts() (getheaders, genesis int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getheaders, f.genesisCalls
}

func hexHeader(h wire.BlockHeader) string {
	var b bytes.Buffer
	h.Serialize(&b)
	return hex.EncodeToString(b.Bytes())
}

func (f *fakeHeaders) Call(ctx context.Context, out any, method string, params ...any) error {
	switch method {
	case "getblockhash":
		f.mu.Lock()
		f.genesisCalls++
		f.mu.Unlock()
		*out.(*string) = f.hdrs[params[0].(uint64)].BlockHash().String()
	case "getblockheader":
		h, err := chainhash.NewHashFromStr(params[0].(string))
		if err != nil {
			return err
		}
		*out.(*string) = hexHeader(f.hdrs[f.index[*h]])
	case "getheaders":
		f.mu.Lock()
		f.getheaders++
		n := f.getheaders
		f.mu.Unlock()
		if f.gate != nil {
			if err := f.gate(ctx, n); err != nil {
				return fmt.Errorf("getheaders: %w", err)
			}
		}
		from, err := chainhash.NewHashFromStr(params[0].([]string)[0])
		if err != nil {
			return err
		}
		i, ok := f.index[*from]
		if !ok {
			i = 0 // btcd: none of the locator is known, so after genesis
		}
		var hexes []string
		for j := i + 1; j < len(f.hdrs) && len(hexes) < 2000; j++ {
			hexes = append(hexes, hexHeader(f.hdrs[j]))
			if f.hdrs[j].BlockHash().String() == params[1].(string) {
				break
			}
		}
		*out.(*[]string) = hexes
	default:
		return fmt.Errorf("fakeHeaders: unexpected %s", method)
	}
	return nil
}

// workThrough is the chainwork at height on a fakeHeaders chain.
func workThrough(height uint64) *big.Int { return big.NewInt(2 * int64(height+1)) }

// A caller waiting for another's sum gives up when its own ctx ends, with
// an error that says what it was waiting for, and leaves the turn to the
// one summing, whose sum is right.
func TestChainworkWaiterHonoursItsContext(t *testing.T) {
	f := newFakeHeaders(3000)
	entered, release := make(chan struct{}), make(chan struct{})
	f.gate = func(ctx context.Context, n int) error {
		if n == 1 {
			close(entered)
			<-release
		}
		return nil
	}
	r := rpcread.Reader{Caller: f, Node: "btcd"}
	w := newChainwork()
	best, height := f.tip()
	first := make(chan error, 1)
	go func() {
		got, err := w.at(context.Background(), r, best, height)
		if err == nil && got.Cmp(workThrough(height)) != 0 {
			err = fmt.Errorf("sum %v, want %v", got, workThrough(height))
		}
		first <- err
	}()
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	waiter := make(chan error, 1)
	go func() {
		_, err := w.at(ctx, r, best, height)
		waiter <- err
	}()
	select {
	case err := <-waiter:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for the sum another call is running") {
			t.Fatalf("a waiter whose ctx ended = %v; want its deadline, saying it was waiting", err)
		}
	case <-time.After(2 * time.Second):
		close(release)
		t.Fatal("a waiter with a 50 ms ctx still waits for the other sum after 2 s")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the sum the waiter waited for: %v", err)
	}
	// The waiter that gave up did not keep the turn.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := w.at(ctx, r, best, height); err != nil || got.Cmp(workThrough(height)) != 0 {
		t.Fatalf("a sum after the waiter gave up = %v, %v; want %v", got, err, workThrough(height))
	}
}

// A sum whose ctx ends in its third getheaders keeps the two batches it
// read (4000 headers, all more than 100 below the tip): the next sum reads
// only the three batches after them, and not genesis again.
func TestChainworkKeepsProgressWhenCutShort(t *testing.T) {
	f := newFakeHeaders(10000)
	f.gate = func(ctx context.Context, n int) error {
		if n == 3 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	r := rpcread.Reader{Caller: f, Node: "btcd"}
	w := newChainwork()
	best, height := f.tip()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := w.at(ctx, r, best, height)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a sum cut short by its deadline = %v; want the deadline", err)
	}
	if want := "summed to height 4000 of 9999 (kept through 4000)"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if w.height != 4000 || w.work.Cmp(workThrough(4000)) != 0 || w.anchor != f.hdrs[4000].BlockHash() {
		t.Fatalf("kept %v through height %d (%s); want %v through 4000 (%s)", w.work, w.height, w.anchor, workThrough(4000), f.hdrs[4000].BlockHash())
	}

	f.gate = nil
	headersBefore, genesisBefore := f.counts()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := w.at(ctx, r, best, height)
	if err != nil || got.Cmp(workThrough(height)) != 0 {
		t.Fatalf("the sum after one cut short = %v, %v; want %v", got, err, workThrough(height))
	}
	headers, genesis := f.counts()
	if headers-headersBefore != 3 || genesis != genesisBefore {
		t.Fatalf("the sum after one cut short read %d getheaders and genesis %d times; want 3 and none", headers-headersBefore, genesis-genesisBefore)
	}
	if w.height != height-anchorMargin {
		t.Fatalf("kept through %d after a full sum to %d; want %d", w.height, height, height-anchorMargin)
	}
}
