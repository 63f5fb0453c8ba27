// Package btcd is a hub.Backend served by a btcd node over its websocket
// JSON-RPC. Every read is pulled from the node with a timeout; btcd's block
// and transaction notifications are queued for a single syncer goroutine,
// which applies a block notification that extends (or retracts) the told tip
// by its own header, reconciles the tip (chainsync) from the node for
// anything else, brings the mempool up to date and publishes the events.
// While the node is unreachable every call fails fast with
// hub.ErrNodeUnavailable and the driver reconnects in the background with
// backoff; on every (re)connect and on a ticker the tip is reconciled, so a
// module never misses a block or sees one twice.
package btcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcutil/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/backend/chainsync"
	"github.com/blvm/blvm-sandbox/backend/nodegov"
	"github.com/blvm/blvm-sandbox/backend/rpcread"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Defaults for the zero values of Config.
const (
	DefaultCallTimeout = 10 * time.Second
	DefaultPoll        = 10 * time.Second
	DefaultRetryMin    = 200 * time.Millisecond
	DefaultRetryMax    = 30 * time.Second
	// txQueue bounds the transaction notifications waiting for the syncer;
	// past it the syncer resyncs the mempool instead.
	txQueue = 4096
	// hintQueue bounds the block notifications waiting for the syncer;
	// past it the syncer reconciles from the node instead.
	hintQueue = 1024
	// plainGrace is how long a plain block notification may go without
	// the filtered one that carries its header before the syncer
	// reconciles anyway (btcd sends the two back to back).
	plainGrace = 250 * time.Millisecond
)

// Governance is the node-side store of proposals and votes: Bitcoin nodes
// have none, so the daemon keeps the one it has (devchain's). Only its
// proposal events are forwarded.
type Governance = nodegov.Store

// Config says how to reach btcd. Host is host:port of its RPC listener.
type Config struct {
	Host       string
	User, Pass string
	// CertPEM is btcd's rpc.cert; required unless DisableTLS.
	CertPEM    []byte
	DisableTLS bool
	// Network, if set, must be the chain btcd reports ("regtest",
	// "testnet3", "mainnet", "signet", ...); a mismatch keeps the driver down.
	Network string

	CallTimeout time.Duration // every RPC; 0 means 10 s
	Poll        time.Duration // tip reconcile ticker; 0 means 10 s
	RetryMin    time.Duration // first reconnect delay; 0 means 200 ms
	RetryMax    time.Duration // reconnect delay cap; 0 means 30 s
	MempoolMax  int           // remembered mempool txids; 0 means chainsync's default
	ReorgWindow int           // remembered blocks; 0 means chainsync's default

	Governance Governance // nil: no proposals
	Logger     *slog.Logger
}

// Driver is the btcd backend. Every method is safe for concurrent use.
type Driver struct {
	nodegov.Forward
	// The reads every JSON-RPC node answers alike, over this driver's
	// websocket, with the told chain sparing best-chain checks.
	rpcread.Reader
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	client  *rpcclient.Client // nil while down
	network string
	lastErr error
	up      chan struct{} // closed and replaced at each connect

	wake chan struct{}
	// graceDue is poked plainGrace after a plain notification arrived
	// with no grace period running (graceArmed); the syncer then checks
	// that every plain one got its twin.
	graceDue   chan struct{}
	graceArmed atomic.Bool
	hints      chan chainsync.Hint
	txs        chan chainhash.Hash
	overflow   atomic.Bool
	resync     atomic.Bool
	twins      twins
	tracker    *chainsync.Tracker
	work       chainwork

	events    chainsync.Fanout
	toldMu    sync.Mutex
	toldHash  chainhash.Hash
	toldH     uint64
	cancelGov func()

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	// notifications counts rpcclient callbacks, for tests: they must
	// all return at once whatever the syncer does.
	notifications atomic.Uint64
}

// New starts the driver and returns at once; the connection is made in the
// background. Use WaitConnected to wait for the first one.
func New(cfg Config) (*Driver, error) {
	if cfg.Host == "" {
		return nil, errors.New("btcd: no host")
	}
	if _, _, err := net.SplitHostPort(cfg.Host); err != nil {
		return nil, fmt.Errorf("btcd: host %q: %w", cfg.Host, err)
	}
	if !cfg.DisableTLS && len(cfg.CertPEM) == 0 {
		return nil, fmt.Errorf("btcd: host %q: TLS needs btcd's rpc.cert (or disable TLS for a loopback node)", cfg.Host)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Driver{
		cfg: cfg, log: log.With("backend", "btcd", "url", cfg.Host),
		network:  cfg.Network,
		up:       make(chan struct{}),
		wake:     make(chan struct{}, 1),
		graceDue: make(chan struct{}, 1),
		hints:    make(chan chainsync.Hint, hintQueue),
		txs:      make(chan chainhash.Hash, txQueue),
		tracker:  &chainsync.Tracker{Window: cfg.ReorgWindow},
		work:     newChainwork(),
		done:     make(chan struct{}),
		lastErr:  errors.New("not connected yet"),
	}
	d.Forward = nodegov.Forward{Store: cfg.Governance}
	d.Reader = rpcread.Reader{Caller: caller{d}, Told: d.tracker, Up: d.connected, Node: "btcd"}
	d.cancelGov = d.Forward.Events(d.events.Publish)
	d.wg.Add(2)
	go d.connectLoop()
	go d.syncLoop()
	return d, nil
}

// Close stops the driver and disconnects.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.cancelGov()
		d.mu.Lock()
		c := d.client
		d.mu.Unlock()
		if c != nil {
			c.Shutdown()
		}
		d.wg.Wait()
	})
	return nil
}

// WaitConnected waits for a connection to btcd; it returns the last
// connection error, naming the url, if ctx ends first.
func (d *Driver) WaitConnected(ctx context.Context) error {
	for {
		d.mu.Lock()
		c, up, last := d.client, d.up, d.lastErr
		d.mu.Unlock()
		if c != nil {
			return nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return fmt.Errorf("btcd at %s is unreachable: %v", d.cfg.Host, last)
		case <-d.done:
			return errors.New("btcd: driver closed")
		}
	}
}

func (d *Driver) current() (*rpcclient.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return nil, fmt.Errorf("btcd at %s: %w: %v", d.cfg.Host, hub.ErrNodeUnavailable, d.lastErr)
	}
	return d.client, nil
}

func (d *Driver) connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.client != nil
}

func (d *Driver) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// handlers run on rpcclient's reader goroutine: they only count, queue a
// hint or a txid and poke the syncer, never block. btcd sends every block
// twice, a plain notification (hash, height) then a filtered one with the
// header: the filtered one is the hint, the plain one is only counted.
func (d *Driver) handlers() *rpcclient.NotificationHandlers {
	// A plain one does not wake the syncer (its twin follows at once and
	// does): it only starts the grace period, on a runtime timer.
	graceOver := func() {
		d.graceArmed.Store(false)
		select {
		case d.graceDue <- struct{}{}:
		default:
		}
	}
	plain := func() {
		d.notifications.Add(1)
		d.twins.plain.Add(1)
		if d.graceArmed.CompareAndSwap(false, true) {
			time.AfterFunc(plainGrace, graceOver)
		}
	}
	hint := func(disconnect bool, height int32, hdr *wire.BlockHeader) {
		d.notifications.Add(1)
		d.twins.filtered.Add(1)
		if hdr == nil || height < 0 {
			d.resync.Store(true)
		} else {
			select {
			case d.hints <- chainsync.Hint{Disconnect: disconnect, Height: uint64(height), Header: *hdr}:
			default:
				d.resync.Store(true)
			}
		}
		d.poke()
	}
	return &rpcclient.NotificationHandlers{
		OnBlockConnected:    func(*chainhash.Hash, int32, time.Time) { plain() },
		OnBlockDisconnected: func(*chainhash.Hash, int32, time.Time) { plain() },
		OnFilteredBlockConnected: func(height int32, hdr *wire.BlockHeader, _ []*btcutil.Tx) {
			hint(false, height, hdr)
		},
		OnFilteredBlockDisconnected: func(height int32, hdr *wire.BlockHeader) { hint(true, height, hdr) },
		OnTxAccepted: func(h *chainhash.Hash, _ btcutil.Amount) {
			d.notifications.Add(1)
			select {
			case d.txs <- *h:
			default:
				d.overflow.Store(true)
			}
			d.poke()
		},
	}
}

func (d *Driver) connectLoop() {
	defer d.wg.Done()
	delay := d.cfg.RetryMin
	for {
		start := time.Now()
		err := d.session()
		select {
		case <-d.done:
			return
		default:
		}
		d.mu.Lock()
		wasUp := d.client != nil
		d.client, d.lastErr = nil, err
		d.mu.Unlock()
		if wasUp {
			d.log.Warn("lost the node; modules get UNAVAILABLE until it is back", "err", err)
		} else {
			d.log.Warn("node unreachable; retrying", "err", err, "retry_in", delay)
		}
		if time.Since(start) > d.cfg.RetryMax {
			delay = d.cfg.RetryMin
		}
		select {
		case <-time.After(delay):
		case <-d.done:
			return
		}
		delay = min(2*delay, d.cfg.RetryMax)
	}
}

// session connects, registers for notifications, marks the driver up and
// waits until the connection ends.
func (d *Driver) session() error {
	// rpcclient's Connect sleeps 5 s after a failed dial even for one try:
	// a plain dial first keeps the retry on our backoff.
	nc, err := net.DialTimeout("tcp", d.cfg.Host, d.cfg.CallTimeout)
	if err != nil {
		return err
	}
	nc.Close()
	client, err := rpcclient.New(&rpcclient.ConnConfig{
		Host: d.cfg.Host, Endpoint: "ws", User: d.cfg.User, Pass: d.cfg.Pass,
		Certificates: d.cfg.CertPEM, DisableTLS: d.cfg.DisableTLS,
		DisableConnectOnNew: true, DisableAutoReconnect: true,
	}, d.handlers())
	if err != nil {
		return err
	}
	defer client.Shutdown()
	if err := client.Connect(1); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.CallTimeout)
	defer cancel()
	var info struct {
		Chain string `json:"chain"`
	}
	if err := d.callOn(ctx, client, &info, "getblockchaininfo"); err != nil {
		return fmt.Errorf("getblockchaininfo: %w", err)
	}
	if d.cfg.Network != "" && info.Chain != d.cfg.Network {
		return fmt.Errorf("the node is on %q, the config says %q", info.Chain, d.cfg.Network)
	}
	if err := d.awaitFuture(ctx, client.NotifyBlocksAsync(), nil); err != nil {
		return fmt.Errorf("notifyblocks: %w", err)
	}
	if err := d.awaitFuture(ctx, client.NotifyNewTransactionsAsync(false), nil); err != nil {
		return fmt.Errorf("notifynewtransactions: %w", err)
	}
	d.mu.Lock()
	select {
	case <-d.done:
		d.mu.Unlock()
		return errors.New("closed")
	default:
	}
	d.client, d.network, d.lastErr = client, info.Chain, nil
	close(d.up)
	d.up = make(chan struct{})
	d.mu.Unlock()
	d.log.Info("connected to the node", "chain", info.Chain)
	// What happened while we were away is pulled, not notified.
	d.resync.Store(true)
	d.poke()
	// The warm-up ends with the connection, which Close shuts down.
	warm, endWarm := context.WithCancel(context.Background())
	defer endWarm()
	d.wg.Add(1)
	go d.warmChainwork(warm)
	client.WaitForShutdown()
	return errors.New("connection closed")
}

func (d *Driver) syncLoop() {
	defer d.wg.Done()
	pool := &chainsync.Mempool{Max: d.cfg.MempoolMax}
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	for {
		full := false
		select {
		case <-d.done:
			return
		case <-d.wake:
		case <-tick.C:
			full = true
		case <-d.graceDue:
			// Plain notifications without their twin make the pass a
			// full reconcile.
			if !d.twins.owed() {
				continue
			}
			full = true
		}
		if d.resync.Swap(false) {
			full = true
		}
		if err := d.syncOnce(d.tracker, pool, full); err != nil {
			d.log.Warn("reconcile", "err", err)
			if !errors.Is(err, chainsync.ErrTooDeep) {
				d.resync.Store(true)
			}
		}
	}
}

func (d *Driver) syncOnce(tracker *chainsync.Tracker, pool *chainsync.Mempool, full bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*d.cfg.CallTimeout)
	defer cancel()
	err := chainsync.Pass{
		Tracker: tracker, Mempool: pool, Source: source{d}, Hints: d.hints, Txs: d.txs, Overflow: &d.overflow,
		List: d.MempoolTxids, Emit: d.events.Publish,
	}.Run(ctx, full)
	// The tip is what the subscribers were told, even when the pass failed
	// after it: Reconcile publishes nothing it has not recorded.
	if h, ht, ok := tracker.Tip(); ok {
		d.toldMu.Lock()
		d.toldHash, d.toldH = h, ht
		d.toldMu.Unlock()
	}
	return err
}

// twins counts btcd's two notifications of every block: the plain one
// (hash, height) comes first, then the filtered one with the header, which
// is the hint the syncer applies. A plain one without its twin means a node
// that sends no headers; the syncer then reconciles from the node.
type twins struct {
	plain, filtered atomic.Uint64
	settled         int64 // plain minus filtered already accounted for
}

// owed reports whether plain notifications arrived without their filtered
// twin since the last call. Only the syncer calls it.
func (w *twins) owed() bool {
	// Filtered first: a pair landing between the two loads shows as owed
	// at worst, which costs one needless reconcile.
	f := int64(w.filtered.Load())
	p := int64(w.plain.Load())
	owed := p - f - w.settled
	w.settled += owed
	return owed > 0
}

// source is the driver as chainsync reads it.
type source struct{ d *Driver }

func (s source) BestBlock(ctx context.Context) (chainhash.Hash, uint64, error) {
	return s.d.ChainTip(ctx)
}

func (s source) Header(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error) {
	return s.d.Header(ctx, hash)
}

func (s source) BlockHash(ctx context.Context, height uint64) (chainhash.Hash, error) {
	return s.d.BlockHash(ctx, height)
}

// Subscribe is hub.Backend's: events come from the syncer goroutine, in order.
func (d *Driver) Subscribe(fn func(hub.NodeEvent)) (cancel func()) {
	return d.events.Subscribe(fn)
}

// Network is the chain btcd reports, or the configured one before the first
// connection.
func (d *Driver) Network() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.network == "" {
		return "unknown"
	}
	return d.network
}

// Told is the tip the subscribers were last told about (zero before the
// first reconcile).
func (d *Driver) Told() (chainhash.Hash, uint64) {
	d.toldMu.Lock()
	defer d.toldMu.Unlock()
	return d.toldHash, d.toldH
}

// Notifications is how many notifications rpcclient delivered.
func (d *Driver) Notifications() uint64 { return d.notifications.Load() }
