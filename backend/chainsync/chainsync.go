// Package chainsync turns what a node says its best chain is into the
// ordered events modules are owed. Notifications from a node are only hints:
// a Tracker pulls the node's tip, finds the common ancestor with what the
// modules were last told, and emits BlockDisconnected for every block that
// left the best chain (newest first), then BlockConnected for every new one
// in order. A module never sees a gap, a duplicate, or a connect whose parent
// it was not told about. A notification that carries its block's header and
// moves the told tip by exactly that block is applied without reading the
// node (Apply); anything else falls back to the pull.
package chainsync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Source is the part of a node a Tracker reads.
type Source interface {
	// BestBlock is the node's best block and its height.
	BestBlock(ctx context.Context) (chainhash.Hash, uint64, error)
	// Header is the header of any block the node knows, on the best chain or not.
	Header(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error)
	// BlockHash is the hash of the best chain's block at height.
	BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error)
}

// Defaults of a Tracker.
const (
	// DefaultWindow is how many of the last told blocks a Tracker keeps: a
	// reorg deeper than this cannot be replayed block by block.
	DefaultWindow = 1000
	// DefaultInitialDepth is how many blocks below the tip the first
	// Reconcile learns without emitting, so that a reorg right after start
	// disconnects blocks the modules read through ChainTip.
	DefaultInitialDepth = 100
	// DefaultMaxStep is how far above the told tip one walk of the node's
	// chain starts: a node further ahead (catching up, or claiming a tip it
	// does not have) is walked in steps, each emitted before the next is
	// read, so the headers held at once stay bounded.
	DefaultMaxStep = 2000
)

// ErrTooDeep is returned, after the Tracker jumped to the node's tip, when a
// reorg went below the blocks it remembers.
var ErrTooDeep = errors.New("chainsync: reorg deeper than the remembered window")

type ref struct {
	hash   chainhash.Hash
	header wire.BlockHeader
}

// Tracker remembers the chain the modules were told about. One goroutine
// reconciles and applies hints; only Lookup may be called from others.
type Tracker struct {
	Window       int
	InitialDepth int
	MaxStep      int

	// mu guards the writes to told and byHash (made only by the one
	// goroutine that reconciles, which reads them without it) and Lookup's
	// reads from other goroutines.
	mu     sync.RWMutex
	told   map[uint64]ref
	byHash map[chainhash.Hash]uint64
	top    uint64
	bottom uint64
	have   bool
}

// Lookup is the height and header of hash if it is on the chain the modules
// were told about, within the remembered window. It is safe for concurrent
// use: a driver answers "is this block on the best chain, at what height"
// from it without asking the node, at most one notification behind it.
func (t *Tracker) Lookup(hash chainhash.Hash) (uint64, wire.BlockHeader, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	h, ok := t.byHash[hash]
	if !ok {
		return 0, wire.BlockHeader{}, false
	}
	return h, t.told[h].header, true
}

// HashAt is the hash the modules were told is at height, if it is within
// the remembered window and not above the told tip. Safe for concurrent use.
func (t *Tracker) HashAt(height uint64) (chainhash.Hash, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	r, ok := t.told[height]
	return r.hash, ok
}

func (t *Tracker) record(height uint64, r ref) {
	t.mu.Lock()
	if t.told == nil {
		t.told, t.byHash = make(map[uint64]ref), make(map[chainhash.Hash]uint64)
	}
	if old, ok := t.told[height]; ok {
		delete(t.byHash, old.hash)
	}
	t.told[height] = r
	t.byHash[r.hash] = height
	t.mu.Unlock()
}

func (t *Tracker) forget(height uint64) {
	t.mu.Lock()
	if old, ok := t.told[height]; ok {
		delete(t.byHash, old.hash)
		delete(t.told, height)
	}
	t.mu.Unlock()
}

// Tip is the block the modules were last told is the best one.
func (t *Tracker) Tip() (chainhash.Hash, uint64, bool) {
	if !t.have {
		return chainhash.Hash{}, 0, false
	}
	return t.told[t.top].hash, t.top, true
}

func (t *Tracker) window() uint64 {
	if t.Window > 0 {
		return uint64(t.Window)
	}
	return DefaultWindow
}

func (t *Tracker) maxStep() uint64 {
	if t.MaxStep > 0 {
		return uint64(t.MaxStep)
	}
	return DefaultMaxStep
}

type pendingBlock struct {
	hash   chainhash.Hash
	height uint64
	header wire.BlockHeader
}

// Reconcile reads the node's best chain and emits what changed since the
// last call, in order. It emits nothing unless every read succeeded, so a
// node lost half-way leaves the told chain as it was for the next call. It
// returns how many block events it emitted. A node more than MaxStep blocks
// ahead is caught up with in steps of MaxStep, each a consistent piece of
// its best chain emitted before the next is read.
func (t *Tracker) Reconcile(ctx context.Context, src Source, emit func(hub.NodeEvent)) (int, error) {
	tipHash, tipHeight, err := src.BestBlock(ctx)
	if err != nil {
		return 0, err
	}
	if !t.have {
		return 0, t.learn(ctx, src, tipHash, tipHeight)
	}
	n := 0
	for tipHeight > t.top+t.maxStep() {
		target := t.top + t.maxStep()
		hash, err := src.BlockHash(ctx, target)
		if err != nil {
			return n, fmt.Errorf("block hash at height %d: %w", target, err)
		}
		k, err := t.reconcileTo(ctx, src, hash, target, emit)
		n += k
		if err != nil {
			return n, err
		}
	}
	k, err := t.reconcileTo(ctx, src, tipHash, tipHeight, emit)
	return n + k, err
}

// reconcileTo emits what changed between the told chain and the node's
// chain ending in tipHash at tipHeight, no more than MaxStep above the told
// tip.
func (t *Tracker) reconcileTo(ctx context.Context, src Source, tipHash chainhash.Hash, tipHeight uint64, emit func(hub.NodeEvent)) (int, error) {
	if h, ht, _ := t.Tip(); h == tipHash && ht == tipHeight {
		return 0, nil
	}
	if tipHeight+t.window() < t.top {
		// The node's tip is below every block remembered: no walk from it
		// can meet the told chain.
		return 0, t.tooDeep(ctx, src, tipHash, tipHeight, tipHeight)
	}
	// Walk the node's chain down from its tip to the first block the
	// modules were told about at the same height.
	var connects []pendingBlock
	var disconnects []uint64
	for h := t.top; h > tipHeight; h-- {
		disconnects = append(disconnects, h)
	}
	cur, curHeight := tipHash, tipHeight
	for {
		if curHeight <= t.top {
			if r, ok := t.told[curHeight]; ok && r.hash == cur {
				break
			}
			if curHeight < t.bottom || curHeight == 0 {
				return 0, t.tooDeep(ctx, src, tipHash, tipHeight, curHeight)
			}
			disconnects = append(disconnects, curHeight)
		}
		hdr, err := src.Header(ctx, cur)
		if err != nil {
			return 0, fmt.Errorf("header %s at height %d: %w", cur, curHeight, err)
		}
		connects = append(connects, pendingBlock{hash: cur, height: curHeight, header: *hdr})
		cur, curHeight = hdr.PrevBlock, curHeight-1
	}
	// disconnects may hold a height twice (above the node's tip first, then
	// from the walk); they are descending and distinct by construction
	// because the walk only adds heights <= min(top, tipHeight).
	// Every block that left is forgotten before the first event goes out,
	// so that Lookup never answers for a block a module was told is gone.
	gone := make([]ref, len(disconnects))
	for i, h := range disconnects {
		gone[i] = t.told[h]
		t.forget(h)
	}
	n := 0
	for i, h := range disconnects {
		hdr := gone[i].header
		emit(hub.NodeEvent{Kind: hub.BlockDisconnected, Hash: gone[i].hash, Height: h, Header: &hdr})
		n++
	}
	t.top = curHeight
	for i := len(connects) - 1; i >= 0; i-- {
		b := connects[i]
		hdr := b.header
		emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: b.hash, Height: b.height, Header: &hdr})
		t.record(b.height, ref{hash: b.hash, header: b.header})
		t.top = b.height
		n++
	}
	t.trim()
	return n, nil
}

// Hint is what a node's notification says happened to one block, with the
// block's header (its hash is computed from it, never taken on trust).
type Hint struct {
	Disconnect bool
	Height     uint64
	Header     wire.BlockHeader
}

// Apply emits the event h describes when it moves the told tip by exactly
// that block: a connect at the height above the tip whose parent is the
// tip, or a disconnect of the tip itself. A connect of a block already told
// at its height emits nothing. Anything else (no tip yet, a gap, a fork, a
// disconnect below the window) emits nothing and returns false: the caller
// reconciles, which reads the node. The notifications of one connection
// arrive in the node's order, so applying them in turn replays the node's
// own sequence of connects and disconnects.
func (t *Tracker) Apply(h Hint, emit func(hub.NodeEvent)) bool {
	if !t.have {
		return false
	}
	hash := h.Header.BlockHash()
	tip := t.told[t.top]
	hdr := h.Header
	switch {
	case h.Disconnect:
		if h.Height != t.top || hash != tip.hash || t.top <= t.bottom {
			return false
		}
		t.forget(t.top)
		emit(hub.NodeEvent{Kind: hub.BlockDisconnected, Hash: hash, Height: h.Height, Header: &hdr})
		t.top--
		return true
	case h.Height <= t.top:
		r, ok := t.told[h.Height]
		return ok && r.hash == hash
	case h.Height == t.top+1 && h.Header.PrevBlock == tip.hash:
		emit(hub.NodeEvent{Kind: hub.BlockConnected, Hash: hash, Height: h.Height, Header: &hdr})
		t.record(h.Height, ref{hash: hash, header: h.Header})
		t.top = h.Height
		t.trim()
		return true
	}
	return false
}

// tooDeep starts again from the node's tip, the told chain being out of
// its reach from height below.
func (t *Tracker) tooDeep(ctx context.Context, src Source, tipHash chainhash.Hash, tipHeight, below uint64) error {
	t.reset()
	if err := t.learn(ctx, src, tipHash, tipHeight); err != nil {
		return err
	}
	return fmt.Errorf("%w (%d blocks): modules were not told about the blocks below height %d", ErrTooDeep, t.window(), below)
}

func (t *Tracker) reset() {
	t.mu.Lock()
	t.told, t.byHash, t.have, t.top, t.bottom = nil, nil, false, 0, 0
	t.mu.Unlock()
}

// learn remembers the node's tip and up to InitialDepth blocks below it.
func (t *Tracker) learn(ctx context.Context, src Source, tip chainhash.Hash, height uint64) error {
	depth := uint64(DefaultInitialDepth)
	if t.InitialDepth > 0 {
		depth = uint64(t.InitialDepth)
	}
	told := make(map[uint64]ref)
	byHash := make(map[chainhash.Hash]uint64)
	cur, h := tip, height
	for i := uint64(0); i < depth; i++ {
		hdr, err := src.Header(ctx, cur)
		if err != nil {
			return fmt.Errorf("header %s at height %d: %w", cur, h, err)
		}
		told[h] = ref{hash: cur, header: *hdr}
		byHash[cur] = h
		if h == 0 {
			break
		}
		cur, h = hdr.PrevBlock, h-1
	}
	bottom := height
	for k := range told {
		bottom = min(bottom, k)
	}
	t.mu.Lock()
	t.told, t.byHash, t.top, t.bottom, t.have = told, byHash, height, bottom, true
	t.mu.Unlock()
	return nil
}

func (t *Tracker) trim() {
	w := t.window()
	if t.top+1 > w && t.top+1-w > t.bottom {
		for h := t.bottom; h < t.top+1-w; h++ {
			t.forget(h)
		}
		t.bottom = t.top + 1 - w
	}
	if t.bottom > t.top {
		t.bottom = t.top
	}
}

// Mempool remembers the transactions modules were told are in the mempool,
// at most Max of them, so that a resync emits only the difference.
type Mempool struct {
	Max   int
	known map[chainhash.Hash]struct{}
}

// DefaultMempoolMax bounds a Mempool with Max 0: 32 bytes and a map slot per
// entry, a few MiB.
const DefaultMempoolMax = 100000

func (m *Mempool) max() int {
	if m.Max > 0 {
		return m.Max
	}
	return DefaultMempoolMax
}

// Len is how many transactions are remembered.
func (m *Mempool) Len() int { return len(m.known) }

// Add emits MempoolTransactionAdded for txid unless it is known or the
// bound is reached.
func (m *Mempool) Add(txid chainhash.Hash, emit func(hub.NodeEvent)) {
	if m.known == nil {
		m.known = make(map[chainhash.Hash]struct{})
	}
	if _, ok := m.known[txid]; ok || len(m.known) >= m.max() {
		return
	}
	m.known[txid] = struct{}{}
	emit(hub.NodeEvent{Kind: hub.MempoolTransactionAdded, Txid: txid})
}

// Sync makes the known set the node's mempool now: removals first (in txid
// order, for a stable stream), then additions in the node's order.
func (m *Mempool) Sync(now []chainhash.Hash, emit func(hub.NodeEvent)) {
	if m.known == nil {
		m.known = make(map[chainhash.Hash]struct{})
	}
	in := make(map[chainhash.Hash]struct{}, len(now))
	for _, h := range now {
		in[h] = struct{}{}
	}
	var gone []chainhash.Hash
	for h := range m.known {
		if _, ok := in[h]; !ok {
			gone = append(gone, h)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return string(gone[i][:]) < string(gone[j][:]) })
	for _, h := range gone {
		delete(m.known, h)
		emit(hub.NodeEvent{Kind: hub.MempoolTransactionRemoved, Txid: h})
	}
	for _, h := range now {
		m.Add(h, emit)
	}
}

// Fanout delivers events to subscribers in order. Publish holds a lock while
// it calls them, so events from two publishers never interleave mid-event;
// subscribers must not block (the hub queues per module).
type Fanout struct {
	mu   sync.Mutex
	next uint64
	subs map[uint64]func(hub.NodeEvent)
}

// Subscribe is hub.Backend's Subscribe.
func (f *Fanout) Subscribe(fn func(hub.NodeEvent)) (cancel func()) {
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[uint64]func(hub.NodeEvent))
	}
	id := f.next
	f.next++
	f.subs[id] = fn
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

// Publish calls every subscriber with ev, in subscription order.
func (f *Fanout) Publish(ev hub.NodeEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]uint64, 0, len(f.subs))
	for id := range f.subs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		f.subs[id](ev)
	}
}
