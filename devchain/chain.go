// Package devchain is the embedded regtest chain behind the API hub: the
// default hub.Backend, so that `make run` and the tests need no external node.
//
// It mines real blocks with btcd's wire types at the regtest proof-of-work
// target, with a BIP34 coinbase, a BIP141 witness commitment, and a few
// P2WPKH transactions per block signed by the chain's own wallet key. Those
// transactions wait in a mempool between blocks. Blocks, the UTXO set, the
// mempool, governance proposals and votes persist in one bbolt file, so a
// reopened chain continues where it stopped.
//
// It is a development chain, not a node: it validates only what it builds
// itself, has no peers, and keeps its wallet key unencrypted in the database.
package devchain

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Defaults for the zero values of Options.
const (
	DefaultBlockInterval = 2 * time.Second
	DefaultTxPerBlock    = 2
	// InitialBlocks is how many blocks a new chain mines on first open: one
	// more than coinbase maturity, so the first coinbase can be spent at once.
	InitialBlocks = 101
)

// ErrClosed is returned by every method of a closed Chain.
var ErrClosed = errors.New("devchain: closed")

// Options configure a Chain. The zero value works.
type Options struct {
	// BlockInterval is how often Run mines a block; 0 means 2 s.
	BlockInterval time.Duration
	// TxPerBlock is how many wallet transactions enter the mempool after
	// each block, to be mined in the next one; 0 means 2, negative means none.
	TxPerBlock int
	// Now is the clock for block timestamps and mempool times; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives mining and governance logs; nil discards them.
	Logger *slog.Logger
	// Network must be "" or "regtest", the only network the dev chain mines.
	Network string
}

// Chain is the dev chain. It implements hub.Backend; every method is safe
// for concurrent use.
type Chain struct {
	db     *bolt.DB
	params *chaincfg.Params
	opts   Options
	log    *slog.Logger
	key    *btcec.PrivateKey
	// walletScript is the P2WPKH script of key; every output the chain
	// creates pays to it.
	walletScript []byte

	// writeMu serialises the writers (mining, proposals, votes, reorgs) so
	// that the bbolt write and the in-memory state change as one step.
	writeMu sync.Mutex
	// mu guards tip, recentTimes and mempool for the readers.
	mu          sync.RWMutex
	tip         tipState
	recentTimes []int64 // timestamps of up to the last 11 blocks, oldest first
	mempool     map[chainhash.Hash]*mempoolRecord
	// mempoolSpent is the set of outpoints the mempool spends.
	mempoolSpent map[wire.OutPoint]chainhash.Hash

	// emitMu keeps event delivery in order: a writer takes it before
	// releasing writeMu and delivers with no other lock held.
	emitMu  sync.Mutex
	subMu   sync.Mutex
	subs    map[uint64]*subscription
	nextSub uint64

	closed atomic.Bool
}

// tipState is the in-memory copy of the best chain's tip.
type tipState struct {
	hash      chainhash.Hash
	height    uint64
	header    wire.BlockHeader
	chainwork *big.Int
}

var _ hub.Backend = (*Chain)(nil)

// Open opens the chain stored at path, creating it if the file does not
// exist: a new chain starts from the regtest genesis block, gets a fresh
// wallet key, mines InitialBlocks blocks in one transaction, seeds two
// governance proposals, and puts its first wallet transactions in the
// mempool. Only one process may have path open at a time; a second Open
// fails after a second. The runtime keeps it under its root, as
// filepath.Join(root, "devchain.db").
func Open(path string, opts Options) (*Chain, error) {
	if opts.Network != "" && opts.Network != "regtest" {
		return nil, fmt.Errorf("devchain: network %q: only regtest is supported", opts.Network)
	}
	if opts.BlockInterval <= 0 {
		opts.BlockInterval = DefaultBlockInterval
	}
	if opts.TxPerBlock == 0 {
		opts.TxPerBlock = DefaultTxPerBlock
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("devchain: create directory for %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("devchain: open %s: locked by another process", path)
		}
		return nil, fmt.Errorf("devchain: open %s: %w", path, err)
	}
	c := &Chain{
		db:           db,
		params:       &chaincfg.RegressionNetParams,
		opts:         opts,
		log:          log.With("component", "devchain"),
		mempool:      make(map[chainhash.Hash]*mempoolRecord),
		mempoolSpent: make(map[wire.OutPoint]chainhash.Hash),
		subs:         make(map[uint64]*subscription),
	}
	if err := c.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("devchain: open %s: %w", path, err)
	}
	return c, nil
}

// init loads an existing chain, or creates a new one in a single bbolt
// transaction: either the whole bootstrap is stored or none of it.
func (c *Chain) init() error {
	var p *pending
	start := time.Now()
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		m := tx.Bucket(bucketMeta)
		if v := m.Get(metaKeyVersion); v != nil {
			if len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion {
				return fmt.Errorf("database schema version %x, want %d", v, schemaVersion)
			}
			if n := string(m.Get(metaKeyNetwork)); n != c.params.Name {
				return fmt.Errorf("database holds network %q, want %q", n, c.params.Name)
			}
			return c.loadKey(tx)
		}
		key, err := btcec.NewPrivateKey()
		if err != nil {
			return fmt.Errorf("generate wallet key: %w", err)
		}
		for k, v := range map[string][]byte{
			string(metaKeyVersion):   u64(schemaVersion),
			string(metaKeyNetwork):   []byte(c.params.Name),
			string(metaKeyWalletKey): key.Serialize(),
		} {
			if err := m.Put([]byte(k), v); err != nil {
				return err
			}
		}
		if err := c.loadKey(tx); err != nil {
			return err
		}
		if p, err = c.storeGenesis(tx); err != nil {
			return err
		}
		return c.bootstrap(tx, p)
	})
	if err != nil {
		return err
	}
	if err := c.loadState(); err != nil {
		return err
	}
	if p != nil {
		c.log.Info("new dev chain", "height", p.tip.height, "tip", p.tip.hash,
			"mempool", len(p.mempool), "took", time.Since(start))
	}
	return nil
}

func (c *Chain) loadKey(tx *bolt.Tx) error {
	raw := tx.Bucket(bucketMeta).Get(metaKeyWalletKey)
	if len(raw) != 32 {
		return errors.New("wallet key missing or malformed")
	}
	c.key, _ = btcec.PrivKeyFromBytes(raw)
	script, err := p2wpkhScript(c.key.PubKey())
	if err != nil {
		return err
	}
	c.walletScript = script
	return nil
}

// loadState reads the tip, the recent timestamps and the mempool into memory.
func (c *Chain) loadState() error {
	return c.db.View(func(tx *bolt.Tx) error {
		t, err := readTip(tx)
		if err != nil {
			return err
		}
		hdr, _, err := decodeHeader(tx.Bucket(bucketBlocks).Get(t.hash[:]))
		if err != nil {
			return fmt.Errorf("tip block %s: %w", t.hash, err)
		}
		times, err := recentTimestamps(tx, t.height)
		if err != nil {
			return err
		}
		mp := make(map[chainhash.Hash]*mempoolRecord)
		spent := make(map[wire.OutPoint]chainhash.Hash)
		err = tx.Bucket(bucketMempool).ForEach(func(k, v []byte) error {
			r, err := decodeMempool(v)
			if err != nil {
				return fmt.Errorf("mempool entry %x: %w", k, err)
			}
			id := r.tx.TxHash()
			mp[id] = r
			for _, in := range r.tx.TxIn {
				spent[in.PreviousOutPoint] = id
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.tip = tipState{hash: t.hash, height: t.height, header: *hdr, chainwork: t.chainwork}
		c.recentTimes = times
		c.mempool = mp
		c.mempoolSpent = spent
		c.mu.Unlock()
		return nil
	})
}

// recentTimestamps returns the timestamps of the up to 11 blocks ending at
// height, oldest first: the window median-time-past is taken over.
func recentTimestamps(tx *bolt.Tx, height uint64) ([]int64, error) {
	var times []int64
	start := uint64(0)
	if height >= medianTimeBlocks {
		start = height - medianTimeBlocks + 1
	}
	for h := start; h <= height; h++ {
		hash := tx.Bucket(bucketHeights).Get(u64(h))
		hdr, _, err := decodeHeader(tx.Bucket(bucketBlocks).Get(hash))
		if err != nil {
			return nil, fmt.Errorf("block at height %d: %w", h, err)
		}
		times = append(times, hdr.Timestamp.Unix())
	}
	return times, nil
}

// medianTimeBlocks is the window of median-time-past.
const medianTimeBlocks = 11

func medianTime(times []int64) int64 {
	if len(times) == 0 {
		return 0
	}
	s := append([]int64(nil), times...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Close stops accepting calls, waits for a block being mined, and closes
// the database. It does not stop Run; cancel Run's context first.
func (c *Chain) Close() error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("devchain: close: %w", err)
	}
	return nil
}

// Run mines a block every BlockInterval until ctx is done, then returns nil.
// A block that fails to be mined or stored ends Run with the error.
func (c *Chain) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.BlockInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := c.MineBlock(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// Network is "regtest".
func (c *Chain) Network() string { return c.params.Name }

func (c *Chain) ready(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}
