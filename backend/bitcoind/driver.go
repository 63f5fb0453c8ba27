// Package bitcoind is a hub.Backend served by Bitcoin Core over its JSON-RPC
// (HTTP). Every read is pulled with a timeout. ZMQ hashblock, rawblock and
// sequence messages only wake the one syncer goroutine, which reconciles
// the tip (chainsync) and the mempool and publishes the events; a gap in a
// topic's sequence numbers (Core drops messages past its high-water mark)
// forces a full resync. Without ZMQ, or while it is not connected, the
// syncer polls. While the node is down every call fails fast with
// hub.ErrNodeUnavailable and a prober retries with backoff.
package bitcoind

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/blvm/blvm-sandbox/backend/chainsync"
	"github.com/blvm/blvm-sandbox/backend/nodegov"
	"github.com/blvm/blvm-sandbox/backend/rpcread"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Defaults for the zero values of Config.
const (
	DefaultCallTimeout  = 10 * time.Second
	DefaultPoll         = 10 * time.Second
	DefaultFallbackPoll = time.Second
	DefaultRetryMin     = 200 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	// txQueue bounds the mempool additions waiting for the syncer; past it
	// the syncer resyncs the mempool instead.
	txQueue = 4096
)

// Config says how to reach Bitcoin Core.
type Config struct {
	// URL is http://host:port (or https) of the RPC server, no credentials.
	URL        string
	User, Pass string
	// Network, if set, must be the chain Core reports ("main", "test",
	// "testnet4", "signet", "regtest"); a mismatch keeps the driver down.
	Network string
	// ZMQ endpoints (tcp://host:port) of -zmqpubhashblock and
	// -zmqpubsequence; either or both may be empty. Equal endpoints share
	// one socket.
	ZMQHashBlock, ZMQSequence string

	CallTimeout  time.Duration // every RPC; 0 means 10 s
	Poll         time.Duration // reconcile ticker while ZMQ is connected; 0 means 10 s
	FallbackPoll time.Duration // reconcile ticker without ZMQ; 0 means 1 s
	RetryMin     time.Duration // first reconnect delay; 0 means 200 ms
	RetryMax     time.Duration // reconnect delay cap; 0 means 30 s
	MempoolMax   int           // remembered mempool txids; 0 means chainsync's default
	ReorgWindow  int           // remembered blocks; 0 means chainsync's default

	Governance nodegov.Store // nil: no proposals
	Logger     *slog.Logger
}

// Driver is the Bitcoin Core backend. Every method is safe for concurrent use.
type Driver struct {
	nodegov.Forward
	// The reads every JSON-RPC node answers alike, over HTTP, with the told
	// chain sparing best-chain checks.
	rpcread.Reader
	cfg    Config
	log    *slog.Logger
	http   *http.Client
	nextID atomic.Uint64

	mu      sync.Mutex
	isUp    bool
	network string
	lastErr error
	up      chan struct{} // closed and replaced at each connect
	down    chan struct{} // poked when a call finds the node gone

	wake     chan struct{}
	txs      chan chainhash.Hash
	overflow atomic.Bool
	resync   atomic.Bool
	zmqUp    atomic.Int32    // connected ZMQ sockets
	zmqRedo  []chan struct{} // one per ZMQ socket: redial now

	tracker   *chainsync.Tracker
	events    chainsync.Fanout
	toldMu    sync.Mutex
	toldHash  chainhash.Hash
	toldH     uint64
	cancelGov func()

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	zmqMsgs atomic.Uint64 // for tests
	gaps    atomic.Uint64
}

// New starts the driver and returns at once; the connection is made in the
// background. Use WaitConnected to wait for the first one.
func New(cfg Config) (*Driver, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("bitcoind: url %q: want http://host:port without credentials", cfg.URL)
	}
	for _, z := range []string{cfg.ZMQHashBlock, cfg.ZMQSequence} {
		if z == "" {
			continue
		}
		if zu, err := url.Parse(z); err != nil || zu.Scheme != "tcp" || zu.Port() == "" {
			return nil, fmt.Errorf("bitcoind: zmq endpoint %q: want tcp://host:port", z)
		}
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&cfg.CallTimeout, DefaultCallTimeout)
	def(&cfg.Poll, DefaultPoll)
	def(&cfg.FallbackPoll, DefaultFallbackPoll)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Driver{
		Forward: nodegov.Forward{Store: cfg.Governance},
		cfg:     cfg, log: log.With("backend", "bitcoind", "url", cfg.URL),
		http: &http.Client{
			Timeout: cfg.CallTimeout,
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: cfg.CallTimeout}).DialContext,
				MaxIdleConnsPerHost: 8,
				IdleConnTimeout:     time.Minute,
			},
		},
		network: cfg.Network,
		up:      make(chan struct{}),
		down:    make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		txs:     make(chan chainhash.Hash, txQueue),
		tracker: &chainsync.Tracker{Window: cfg.ReorgWindow},
		done:    make(chan struct{}),
		lastErr: errors.New("not connected yet"),
	}
	d.Reader = rpcread.Reader{Caller: caller{d}, Told: d.tracker, Up: d.connected, Node: "bitcoind"}
	d.cancelGov = d.Forward.Events(d.events.Publish)
	eps := zmqTopics(cfg)
	redos := make(map[string]chan struct{}, len(eps))
	for ep := range eps {
		redos[ep] = make(chan struct{}, 1)
		d.zmqRedo = append(d.zmqRedo, redos[ep])
	}
	d.wg.Add(2 + len(eps))
	go d.probeLoop()
	go d.syncLoop()
	for ep, topics := range eps {
		go d.zmqLoop(ep, topics, redos[ep])
	}
	return d, nil
}

// Close stops the driver.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.cancelGov()
		d.wg.Wait()
		d.http.CloseIdleConnections()
	})
	return nil
}

// WaitConnected waits until Core answered; it returns the last error,
// naming the url, if ctx ends first.
func (d *Driver) WaitConnected(ctx context.Context) error {
	for {
		d.mu.Lock()
		ok, up := d.isUp, d.up
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			d.mu.Lock()
			last := d.lastErr
			d.mu.Unlock()
			return fmt.Errorf("bitcoind at %s is unreachable: %v", d.cfg.URL, last)
		case <-d.done:
			return errors.New("bitcoind: driver closed")
		}
	}
}

// markDown records that the node stopped answering and wakes the prober.
func (d *Driver) markDown(err error) {
	d.mu.Lock()
	was := d.isUp
	d.isUp, d.lastErr = false, err
	d.mu.Unlock()
	if was {
		d.log.Warn("lost the node; modules get UNAVAILABLE until it is back", "err", err)
		select {
		case d.down <- struct{}{}:
		default:
		}
	}
}

func (d *Driver) connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.isUp
}

func (d *Driver) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// probeLoop brings the driver up: while the node is down it retries
// getblockchaininfo with backoff; once up it waits for a call to find the
// node gone.
func (d *Driver) probeLoop() {
	defer d.wg.Done()
	delay := d.cfg.RetryMin
	for {
		err := d.probe()
		if err == nil {
			delay = d.cfg.RetryMin
			select {
			case <-d.down:
				continue
			case <-d.done:
				return
			}
		}
		d.mu.Lock()
		d.lastErr = err
		d.mu.Unlock()
		d.log.Warn("node unreachable; retrying", "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-d.done:
			return
		}
		delay = min(2*delay, d.cfg.RetryMax)
	}
}

func (d *Driver) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.CallTimeout)
	defer cancel()
	var info struct {
		Chain string `json:"chain"`
	}
	if err := d.rawCall(ctx, &info, "getblockchaininfo"); err != nil {
		return err
	}
	if d.cfg.Network != "" && info.Chain != d.cfg.Network {
		return fmt.Errorf("the node is on %q, the config says %q", info.Chain, d.cfg.Network)
	}
	d.mu.Lock()
	// Drain a stale "down" from before this probe.
	select {
	case <-d.down:
	default:
	}
	d.isUp, d.network, d.lastErr = true, info.Chain, nil
	close(d.up)
	d.up = make(chan struct{})
	d.mu.Unlock()
	d.log.Info("connected to the node", "chain", info.Chain)
	// What happened while we were away is pulled, not notified; a node
	// that restarted has new ZMQ sockets.
	d.resync.Store(true)
	d.poke()
	for _, redo := range d.zmqRedo {
		select {
		case redo <- struct{}{}:
		default:
		}
	}
	return nil
}

func (d *Driver) syncLoop() {
	defer d.wg.Done()
	tracker := d.tracker
	pool := &chainsync.Mempool{Max: d.cfg.MempoolMax}
	for {
		every := d.cfg.FallbackPoll
		if d.zmqUp.Load() > 0 {
			every = d.cfg.Poll
		}
		tick := time.NewTimer(every)
		full := false
		select {
		case <-d.done:
			tick.Stop()
			return
		case <-d.wake:
		case <-tick.C:
			full = true
		}
		tick.Stop()
		if d.resync.Swap(false) {
			full = true
		}
		if err := d.syncOnce(tracker, pool, full); err != nil {
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
		Tracker: tracker, Mempool: pool, Source: source{d}, Txs: d.txs, Overflow: &d.overflow,
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

// Network is the chain Core reports, or the configured one before the
// first connection.
func (d *Driver) Network() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.network == "" {
		return "unknown"
	}
	return d.network
}

// Told is the tip the subscribers were last told about.
func (d *Driver) Told() (chainhash.Hash, uint64) {
	d.toldMu.Lock()
	defer d.toldMu.Unlock()
	return d.toldHash, d.toldH
}

// ZMQMessages is how many ZMQ messages arrived; Gaps how many sequence
// gaps forced a resync; ZMQConnected how many ZMQ sockets are dialled.
func (d *Driver) ZMQMessages() uint64 { return d.zmqMsgs.Load() }
func (d *Driver) Gaps() uint64        { return d.gaps.Load() }
func (d *Driver) ZMQConnected() int   { return int(d.zmqUp.Load()) }

var _ hub.Backend = (*Driver)(nil)
