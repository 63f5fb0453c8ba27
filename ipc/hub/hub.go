// Package hub is the node's API hub: it serves each module on that module's
// own Unix socket, answers only the calls the module's compiled ACL allows,
// fans node, lifecycle and module events out to subscribers, and carries CLI
// and module-to-module invocations. A module's identity is the socket its
// connection arrived on; nothing the module says changes it.
//
// Every module is isolated from every other: each connection has its own
// reader, its own writer goroutine and bounded queues, so a module that stops
// reading or floods requests slows only itself.
//
// A request is usually answered on the goroutine that read it. When its
// Backend call waits on ctx.Done(), or runs longer than about a millisecond,
// reading passes to another goroutine, so requests still run concurrently.
// Backend calls that wait should therefore select on ctx.Done().
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/policy"
)

// Config tunes the hub. The zero value works.
type Config struct {
	// NodeVersion is sent to every module in Welcome.
	NodeVersion string
	// MaxFrame is the largest frame either side may send; 0 means
	// ipc.DefaultMaxFrame, and nothing goes above ipc.HardMaxFrame.
	MaxFrame int
	// HandshakeTimeout bounds the wait for Hello; 0 means 5s.
	HandshakeTimeout time.Duration
	// FrameTimeout bounds the time a frame may take to arrive once its
	// first byte has; 0 means 5s. A connection may idle between frames.
	FrameTimeout time.Duration
	// MaxInFlight bounds a module's requests being handled at once; 0 means 64.
	MaxInFlight int
	// RequestsPerSecond is a module's sustained request rate (burst the same);
	// 0 means 1000. Requests over it are answered RATE_LIMITED.
	RequestsPerSecond float64
	// LogBytesPerSecond is a module's log budget (burst the same); 0 means
	// 64 KiB. It covers the module's Log frames and every line the hub
	// writes because of the module. Lines over it are dropped and counted.
	LogBytesPerSecond int
	// LogSummaryEvery is how often, at most, a module whose log lines are
	// being suppressed gets a summary line; 0 means 10s.
	LogSummaryEvery time.Duration
	// EventQueue is the number of events queued per connection; 0 means 1024.
	// When full, events are dropped, counted, and reported in Event.dropped.
	EventQueue int
	// EventQueueBytes bounds the bytes of events queued per connection; 0
	// means 4 MiB. Past it events are dropped, as past EventQueue.
	EventQueueBytes int
	// EventBytesTotal bounds the bytes of events queued on all connections
	// together; 0 means 64 MiB. Past it events are dropped and counted.
	EventBytesTotal int
	// MaxEventPayload bounds a published event's payload; 0 means 64 KiB,
	// and it never exceeds MaxFrame-1024. Larger payloads are INVALID.
	MaxEventPayload int
	// OutQueueBytes bounds the bytes of responses and invocations queued
	// per connection; 0 means 4 MiB. Past it the module's own goroutines
	// wait (a module that does not read stalls only itself).
	OutQueueBytes int
	// InFlightBytes bounds the request bytes a module has in flight; 0
	// means 8 MiB. Requests past it are answered RATE_LIMITED.
	InFlightBytes int
	// CallTimeout bounds backend calls, module-to-module calls and CLI
	// invocations; 0 means 10s.
	CallTimeout time.Duration
	// MaxConnections bounds a module's simultaneous connections; 0 means 4.
	MaxConnections int
	// Logger receives the hub's own log and the modules' Log lines (with a
	// "module" attribute); nil means slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told of every ACL decision (record mode). Nil
	// in normal operation, where it costs one comparison per decision.
	Observer Observer
}

// Observer sees the hub's ACL decisions for modules: each method a module
// called and each event type it asked for, and whether the ACL granted it.
// It is called on the connection's goroutines and must not block.
type Observer interface {
	Method(module, method string, granted bool)
	Event(module, eventType string, granted bool)
}

func (c Config) withDefaults() Config {
	c.MaxFrame = ipc.ClampMaxFrame(c.MaxFrame)
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.RequestsPerSecond <= 0 {
		c.RequestsPerSecond = 1000
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = 5 * time.Second
	}
	if c.LogBytesPerSecond <= 0 {
		c.LogBytesPerSecond = 64 << 10
	}
	if c.LogSummaryEvery <= 0 {
		c.LogSummaryEvery = 10 * time.Second
	}
	if c.EventQueue <= 0 {
		c.EventQueue = 1024
	}
	if c.EventQueueBytes <= 0 {
		c.EventQueueBytes = 4 << 20
	}
	if c.EventBytesTotal <= 0 {
		c.EventBytesTotal = 64 << 20
	}
	if c.MaxEventPayload <= 0 {
		c.MaxEventPayload = 64 << 10
	}
	c.MaxEventPayload = min(c.MaxEventPayload, c.MaxFrame-1024)
	if c.OutQueueBytes <= 0 {
		c.OutQueueBytes = 4 << 20
	}
	if c.InFlightBytes <= 0 {
		c.InFlightBytes = 8 << 20
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 4
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ModuleSpec is what the runtime knows about a module it attaches: its
// identity and the ACL that policy compiled for it.
type ModuleSpec struct {
	ID           string
	Name         string
	Version      string
	Capabilities []string
	ACL          policy.HubACL
	// PeerUID is the host uid the module runs as. Only it, and the hub's
	// own uid, may connect on the module's socket (SO_PEERCRED).
	PeerUID int
	// OnReady, when set, is called each time a connection completes its
	// handshake (its Hello accepted, the Welcome queued), just before
	// Ready's channel closes: the module is up, and the runtime's
	// supervisor counts its start as done. It runs on the connection's
	// reader and must not block.
	OnReady func()
}

// ModuleStats are a module's counters since the hub first saw its name. They
// survive re-attach (a restart) and Detach.
type ModuleStats struct {
	Requests          uint64 // requests and CLI registrations received
	Denied            uint64 // refused by the ACL (PERMISSION_DENIED)
	RateLimited       uint64 // refused by the rate or in-flight limit
	Invalid           uint64 // unknown method, bad params, stray invocation results
	EventsDelivered   uint64 // events written to the module's socket
	EventsDropped     uint64 // events lost because its queue was full
	BadFrames         uint64 // malformed, oversized, truncated or unexpected frames
	HandshakeFailures uint64 // no Hello in time, wrong name or version, request first
	LogBytes          uint64 // log bytes accepted
	LogDropped        uint64 // the module's Log lines dropped over budget
	LogSuppressed     uint64 // hub lines about the module suppressed over budget
	PeerRefused       uint64 // connections from a uid other than the module's, closed
	Connections       uint64 // connections accepted
	Open              uint64 // connections open now
	// Calls counts answered requests by method and code.
	Calls []CallCount
}

type counters struct {
	requests, denied, rateLimited, invalid         atomic.Uint64
	eventsDelivered, eventsDropped                 atomic.Uint64
	badFrames, handshakeFailures                   atomic.Uint64
	logBytes, logDropped, connections, connsClosed atomic.Uint64
	logSuppressed, peerRefused                     atomic.Uint64
	calls                                          callCounts
	// log is the module's log budget; like the counters it outlives a
	// restart, so restarting never refills it.
	log *modLog
}

func (c *counters) snapshot() ModuleStats {
	conns := c.connections.Load()
	return ModuleStats{
		Requests:          c.requests.Load(),
		Denied:            c.denied.Load(),
		RateLimited:       c.rateLimited.Load(),
		Invalid:           c.invalid.Load(),
		EventsDelivered:   c.eventsDelivered.Load(),
		EventsDropped:     c.eventsDropped.Load(),
		BadFrames:         c.badFrames.Load(),
		HandshakeFailures: c.handshakeFailures.Load(),
		LogBytes:          c.logBytes.Load(),
		LogDropped:        c.logDropped.Load(),
		LogSuppressed:     c.logSuppressed.Load(),
		PeerRefused:       c.peerRefused.Load(),
		Connections:       conns,
		Open:              conns - c.connsClosed.Load(),
		Calls:             c.calls.snapshot(),
	}
}

// Errors of the Go API (RunCli).
var (
	// ErrUnavailable: the module is not attached, not connected, or has not
	// registered what was asked for.
	ErrUnavailable = errors.New("module unavailable")
	// ErrUnknownCommand: the module's CLI spec has no such command.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrClosed: the hub was closed.
	ErrClosed = errors.New("hub closed")
)

// Hub serves modules. Create it with New; it is safe for concurrent use.
type Hub struct {
	b       Backend
	cfg     Config
	log     *slog.Logger
	selfUID int // the hub's own euid, allowed on every socket

	evBytes atomic.Int64 // event bytes queued on all connections

	mu      sync.Mutex
	closed  bool
	modules map[string]*module
	ready   map[string]chan struct{}
	stats   map[string]*counters

	subMu sync.RWMutex
	subs  map[string]map[*conn]struct{} // event type -> subscribed connections

	cancelNode func()

	watching atomic.Bool   // the watchdog runs
	stop     chan struct{} // closed by Close
}

// New creates a hub over b and subscribes to its node events.
func New(b Backend, cfg Config) *Hub {
	cfg = cfg.withDefaults()
	h := &Hub{
		b:       b,
		cfg:     cfg,
		log:     cfg.Logger,
		modules: make(map[string]*module),
		ready:   make(map[string]chan struct{}),
		stats:   make(map[string]*counters),
		subs:    make(map[string]map[*conn]struct{}),
		stop:    make(chan struct{}),
		selfUID: os.Geteuid(),
	}
	h.cancelNode = b.Subscribe(h.onNodeEvent)
	return h
}

// module is one attached module: its spec, its listener, its connections and
// what it registered.
type module struct {
	h       *Hub
	spec    ModuleSpec
	ln      net.Listener
	methods map[string]struct{}
	events  map[string]struct{}
	stats   *counters
	reqRate *bucket
	log     *modLog

	inFlight atomic.Int64 // admitted requests whose handler has not returned
	unsent   atomic.Int64 // admitted requests whose response is not yet written or queued
	inBytes  atomic.Int64 // bytes of admitted requests whose handler has not returned

	pendingCount atomic.Int64 // invocations sent to the module, not yet answered
	pendingBytes atomic.Int64 // their frames' bytes

	ctx    context.Context // cancelled on detach; handlers derive from it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	detached bool
	conns    map[*conn]struct{}
	api      map[string]struct{} // registered module API methods
	apiConn  *conn               // where API invocations go
	cli      *cliRegistration
}

type cliRegistration struct {
	spec *pb.RegisterCliSpec
	conn *conn // where CLI invocations go
}

// Attach starts serving spec's module on ln, which the caller created for
// that module alone: every connection accepted on ln is that module. Attaching
// a name that is already attached replaces it (its connections are closed).
func (h *Hub) Attach(spec ModuleSpec, ln net.Listener) error {
	if spec.Name == "" {
		return errors.New("attach: module name is empty")
	}
	if ln == nil {
		return fmt.Errorf("attach %s: nil listener", spec.Name)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return fmt.Errorf("attach %s: %w", spec.Name, ErrClosed)
	}
	old := h.modules[spec.Name]
	delete(h.modules, spec.Name)
	h.mu.Unlock()
	if old != nil {
		// The runtime usually re-creates the socket at the same path before
		// re-attaching; closing the old listener must not unlink the new one.
		if ul, ok := old.ln.(*net.UnixListener); ok && ln.Addr() != nil && ul.Addr().String() == ln.Addr().String() {
			ul.SetUnlinkOnClose(false)
		}
		old.shutdown()
	}

	m := &module{
		h:       h,
		spec:    spec,
		ln:      ln,
		methods: make(map[string]struct{}, len(spec.ACL.Methods)),
		events:  make(map[string]struct{}, len(spec.ACL.Events)),
		reqRate: newBucket(h.cfg.RequestsPerSecond),
		conns:   make(map[*conn]struct{}),
	}
	for _, g := range spec.ACL.Methods {
		m.methods[g.Name] = struct{}{}
	}
	for _, g := range spec.ACL.Events {
		m.events[g.Name] = struct{}{}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())

	h.mu.Lock()
	if h.closed || h.modules[spec.Name] != nil {
		closed := h.closed
		h.mu.Unlock()
		m.cancel()
		if closed {
			return fmt.Errorf("attach %s: %w", spec.Name, ErrClosed)
		}
		return fmt.Errorf("attach %s: attached concurrently", spec.Name)
	}
	m.stats = h.countersLocked(spec.Name)
	m.log = m.stats.log
	if ch, ok := h.ready[spec.Name]; ok && isClosed(ch) {
		// A fresh attach (a restart) waits for a fresh handshake.
		h.ready[spec.Name] = make(chan struct{})
	}
	h.modules[spec.Name] = m
	m.wg.Add(1)
	h.mu.Unlock()

	go m.acceptLoop()
	return nil
}

// Detach stops serving the named module: its listener and connections are
// closed and its API and CLI registrations forgotten. Its counters remain.
func (h *Hub) Detach(name string) {
	h.mu.Lock()
	m := h.modules[name]
	delete(h.modules, name)
	if ch, ok := h.ready[name]; ok && isClosed(ch) {
		delete(h.ready, name)
	}
	h.mu.Unlock()
	if m != nil {
		m.shutdown()
	}
}

// Ready returns a channel closed when the named module completes its first
// handshake since it was (re-)attached. It may be called before Attach.
func (h *Hub) Ready(name string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.ready[name]
	if !ok {
		ch = make(chan struct{})
		h.ready[name] = ch
	}
	return ch
}

func (h *Hub) markReady(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.ready[name]
	if !ok {
		ch = make(chan struct{})
		h.ready[name] = ch
	}
	if !isClosed(ch) {
		close(ch)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Stats returns the named module's counters (zero if the hub never saw it).
func (h *Hub) Stats(name string) ModuleStats {
	h.mu.Lock()
	c := h.stats[name]
	h.mu.Unlock()
	if c == nil {
		return ModuleStats{}
	}
	return c.snapshot()
}

func (h *Hub) countersLocked(name string) *counters {
	c := h.stats[name]
	if c == nil {
		c = new(counters)
		c.log = newModLog(h, name, c)
		h.stats[name] = c
	}
	return c
}

// Close detaches every module and stops listening to the backend's events.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.stop)
	mods := make([]*module, 0, len(h.modules))
	for _, m := range h.modules {
		mods = append(mods, m)
	}
	h.modules = make(map[string]*module)
	h.mu.Unlock()
	if h.cancelNode != nil {
		h.cancelNode()
	}
	for _, m := range mods {
		m.shutdown()
	}
	return nil
}

// module returns the attached module called name, or nil.
func (h *Hub) module(name string) *module {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.modules[name]
}

// shutdown closes the listener and every connection, cancels handlers, and
// waits for the module's goroutines.
func (m *module) shutdown() {
	m.mu.Lock()
	m.detached = true
	conns := make([]*conn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	m.api, m.apiConn, m.cli = nil, nil, nil
	m.mu.Unlock()
	m.cancel()
	_ = m.ln.Close()
	for _, c := range conns {
		c.close()
	}
	// Handlers see their context cancelled; a backend call that ignores it
	// must not hold up the runtime's stop for ever.
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(m.h.cfg.CallTimeout + time.Second):
		m.h.log.Warn("hub: module's calls still running after detach", "module", m.spec.Name)
	}
}

func (m *module) acceptLoop() {
	defer m.wg.Done()
	for {
		nc, err := m.ln.Accept()
		if err != nil {
			if m.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.h.log.Warn("hub: accept failed; module no longer served", "module", m.spec.Name, "err", err)
			return
		}
		if uid, err := peerUID(nc); err != nil || (uid != m.spec.PeerUID && uid != m.h.selfUID) {
			// The socket is the module's identity; only its uid (and the
			// hub's own, for the runtime's checks) may speak on it. Counted
			// and logged before the close, so that whoever sees the close
			// also finds the refusal recorded.
			m.stats.peerRefused.Add(1)
			if err != nil {
				m.log.warn("hub: cannot read the peer's credentials; connection refused", slog.String("err", err.Error()))
			} else {
				m.log.warn("hub: connection from another uid refused", slog.Int("uid", uid), slog.Int("want", m.spec.PeerUID))
			}
			_ = nc.Close()
			continue
		}
		m.stats.connections.Add(1)
		c := newConn(m, nc)
		m.mu.Lock()
		switch {
		case m.detached:
			m.mu.Unlock()
			c.closeUnregistered()
			continue
		case len(m.conns) >= m.h.cfg.MaxConnections:
			m.mu.Unlock()
			m.log.warn("hub: too many connections; closing the new one", slog.Int("limit", m.h.cfg.MaxConnections))
			c.closeUnregistered()
			continue
		}
		m.conns[c] = struct{}{}
		m.wg.Add(2)
		m.mu.Unlock()
		go c.serve()
	}
}

// permit is the one place that decides whether a module may call a hub
// method. Default deny: only names in the compiled ACL pass. It runs before
// any params are decoded.
func (m *module) permit(method string) bool {
	_, ok := m.methods[method]
	if o := m.h.cfg.Observer; o != nil {
		o.Method(m.spec.Name, method, ok)
	}
	return ok
}
