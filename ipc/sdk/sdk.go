package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// ErrClosed is the cause once Close has been called.
var ErrClosed = errors.New("sdk: module connection closed")

// Defaults for the zero values of Options.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultMaxInFlight      = 64
	DefaultMaxInvocations   = 16
	DefaultEventQueue       = 256
)

// Options configures Connect. The zero value works inside a container.
type Options struct {
	// Name and Version are what the module claims in Hello. The hub knows the
	// module by its socket and refuses a name that differs. Empty means
	// $BLVM_MODULE_NAME and $BLVM_MODULE_VERSION.
	Name, Version string
	// Socket is the hub socket; empty means $BLVM_SOCKET, else /run/blvm/hub.sock.
	Socket string
	// HandshakeTimeout bounds dial plus Hello/Welcome; zero means 5 s.
	HandshakeTimeout time.Duration
	// MaxInFlight bounds this module's requests awaiting a response; a Call
	// beyond it waits (honouring its context) rather than being refused by
	// the hub as RATE_LIMITED. Zero means 64.
	MaxInFlight int
	// MaxInvocations bounds CLI and API invocations handled at once; one
	// beyond it is answered "busy" at once. Zero means 16.
	MaxInvocations int
	// EventQueue is how many received events may wait for the handlers.
	// When it is full further events are dropped and counted like the hub's
	// own drops. Zero means 256.
	EventQueue int
	// Logger receives the module's Log lines and the SDK's own diagnostics
	// (dropped events, handler panics, protocol oddities). Nil means
	// slog.Default(), which writes to stderr: the runtime captures it as
	// the module's log.
	Logger *slog.Logger
	// LogToHub makes Log also send each line to the hub, which writes it to
	// the node's own log (the daemon's journal), under the module's name
	// and charged to its log budget. Without it, Log writes to Logger only:
	// the module's stderr, which the runtime captures as logs/<name>.log,
	// what `blvm-sandbox logs NAME` and `run` show. That is where an
	// operator looks for one module's lines, so it is the default; the
	// node's log is shared by every module and the daemon.
	LogToHub bool
}

// Module is a connection to the hub. Its methods are safe for concurrent use.
type Module struct {
	conn     net.Conn
	welcome  *pb.Welcome
	maxFrame int
	log      *slog.Logger // the SDK's own diagnostics
	local    *slog.Logger // the module's Log lines: always written here
	logToHub bool

	nextID   atomic.Uint64
	inflight chan struct{} // semaphore for requests awaiting a response

	mu      sync.Mutex
	pending map[uint64]chan *pb.Response

	writeq chan []byte // frames for the writer goroutine

	ctx    context.Context // cancelled at shutdown; parent of handler contexts
	cancel context.CancelFunc

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed at shutdown, after closeErr is set

	events   eventDispatch
	invoke   invocations
	loops    sync.WaitGroup // reader and writer: never run module code
	handlers sync.WaitGroup // event dispatcher and invocation handlers: module code
}

// Connect dials the hub, sends Hello and waits for Welcome. The returned
// Module already reads from the hub: calls work at once, and events and
// invocations are served until Close, or until Run returns.
func Connect(ctx context.Context, opts Options) (*Module, error) {
	name := firstNonEmpty(opts.Name, os.Getenv(EnvModuleName))
	version := firstNonEmpty(opts.Version, os.Getenv(EnvModuleVersion))
	socket := firstNonEmpty(opts.Socket, os.Getenv(EnvSocket), DefaultSocket)
	if name == "" {
		return nil, fmt.Errorf("connect to hub: no module name (set Options.Name or $%s)", EnvModuleName)
	}
	timeout := opts.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var d net.Dialer
	conn, err := d.DialContext(hctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("connect to hub %s: %w", socket, err)
	}
	welcome, err := handshake(hctx, conn, name, version)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake with hub %s: %w", socket, err)
	}

	m := newModule(conn, welcome, opts)
	m.loops.Add(2)
	m.handlers.Add(1)
	go m.readLoop()
	go m.writeLoop()
	go m.dispatchLoop()
	return m, nil
}

func newModule(conn net.Conn, w *pb.Welcome, opts Options) *Module {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	inflight := opts.MaxInFlight
	if inflight <= 0 {
		inflight = DefaultMaxInFlight
	}
	queue := opts.EventQueue
	if queue <= 0 {
		queue = DefaultEventQueue
	}
	maxInv := opts.MaxInvocations
	if maxInv <= 0 {
		maxInv = DefaultMaxInvocations
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Module{
		conn:     conn,
		welcome:  w,
		maxFrame: ipc.ClampMaxFrame(int(w.GetMaxFrameBytes())),
		log:      logger.With("component", "blvm-sdk", "module", w.GetModuleId()),
		local:    logger.With("module", w.GetModuleId()),
		logToHub: opts.LogToHub,
		inflight: make(chan struct{}, inflight),
		pending:  make(map[uint64]chan *pb.Response),
		writeq:   make(chan []byte, 64),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	m.events.init(queue)
	m.invoke.init(maxInv)
	return m
}

// handshake sends Hello and reads the hub's answer under ctx's deadline.
func handshake(ctx context.Context, conn net.Conn, name, version string) (*pb.Welcome, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// A cancelled ctx (not only an expired one) must also end a blocked read.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	w, err := exchangeHello(ctx, conn, name, version)
	if !stop() && err == nil {
		// ctx ended as the handshake finished: the deadline may now be in
		// the past, so the connection cannot be handed on.
		err = ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return w, nil
}

func exchangeHello(ctx context.Context, conn net.Conn, name, version string) (*pb.Welcome, error) {
	hello := &pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{
		ProtocolVersion: ipc.ProtocolVersion,
		ModuleName:      name,
		ModuleVersion:   version,
	}}}
	frame, err := ipc.MarshalEnvelope(hello, ipc.DefaultMaxFrame)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(frame); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("send hello: %w", err))
	}
	env, err := ipc.ReadEnvelope(conn, ipc.HardMaxFrame)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("hub closed the connection (is %q the name this socket belongs to?)", name)
		}
		return nil, ctxErr(ctx, fmt.Errorf("read welcome: %w", err))
	}
	switch b := env.Body.(type) {
	case *pb.Envelope_Welcome:
		if v := b.Welcome.GetProtocolVersion(); v != ipc.ProtocolVersion {
			return nil, fmt.Errorf("hub speaks protocol version %d, this SDK %d", v, ipc.ProtocolVersion)
		}
		return b.Welcome, nil
	case *pb.Envelope_Response:
		return nil, &Error{Method: "hello", Code: b.Response.GetCode(), Message: b.Response.GetMessage()}
	default:
		return nil, fmt.Errorf("expected welcome, hub sent %T", env.Body)
	}
}

// ctxErr prefers the context's reason over the I/O error it caused. The
// connection's deadline comes only from ctx, so an I/O timeout is ctx's
// deadline even if ctx's own timer has not fired yet.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

// Welcome is the hub's answer to the handshake: the module id, the granted
// capabilities, methods and events, and the publish namespace.
func (m *Module) Welcome() *pb.Welcome { return m.welcome }

// Done is closed when the connection has ended.
func (m *Module) Done() <-chan struct{} { return m.done }

// Err is why the connection ended, or nil while it is up.
func (m *Module) Err() error {
	select {
	case <-m.done:
		return m.closeErr
	default:
		return nil
	}
}

// Run serves events and invocations until ctx is done (then it closes the
// connection and returns nil) or the connection ends (then it returns why).
// Either way it returns only after the running handlers have returned, so
// handlers must honour their ctx.
func (m *Module) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		m.shutdown(ErrClosed)
	case <-m.done:
	}
	m.loops.Wait()
	m.handlers.Wait()
	if errors.Is(m.closeErr, ErrClosed) {
		return nil
	}
	return fmt.Errorf("hub connection ended: %w", m.closeErr)
}

// Close ends the connection, cancels the contexts handed to handlers and
// fails calls still waiting. It waits for the SDK's own goroutines but not
// for handlers (so a handler may call it); Run waits for those.
func (m *Module) Close() error {
	m.shutdown(ErrClosed)
	m.loops.Wait()
	return nil
}

// shutdown ends the connection once; the first cause wins.
func (m *Module) shutdown(cause error) {
	m.closeOnce.Do(func() {
		m.closeErr = cause
		m.cancel()
		m.conn.Close()
		close(m.done)
	})
}

func (m *Module) readLoop() {
	defer m.loops.Done()
	for {
		env, err := ipc.ReadEnvelope(m.conn, m.maxFrame)
		if err != nil {
			select {
			case <-m.done: // we closed it
			default:
				if errors.Is(err, io.EOF) {
					err = fmt.Errorf("hub closed the connection: %w", err)
				}
				m.shutdown(err)
			}
			return
		}
		switch b := env.Body.(type) {
		case *pb.Envelope_Response:
			m.deliver(b.Response)
		case *pb.Envelope_Event:
			m.events.enqueue(m, b.Event)
		case *pb.Envelope_Invocation:
			m.startInvocation(b.Invocation)
		default:
			m.log.Warn("ignoring unexpected message from hub", "type", fmt.Sprintf("%T", env.Body))
		}
	}
}

func (m *Module) writeLoop() {
	defer m.loops.Done()
	for {
		select {
		case frame := <-m.writeq:
			if _, err := m.conn.Write(frame); err != nil {
				m.shutdown(fmt.Errorf("write to hub: %w", err))
				return
			}
		case <-m.done:
			return
		}
	}
}

// send queues one envelope for the writer. It fails without side effects if
// the frame is too large, ctx ends first, or the connection is gone.
func (m *Module) send(ctx context.Context, env *pb.Envelope) error {
	frame, err := ipc.MarshalEnvelope(env, m.maxFrame)
	if err != nil {
		return err
	}
	select {
	case m.writeq <- frame:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return m.closedErr()
	}
}

func (m *Module) closedErr() error {
	if errors.Is(m.closeErr, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, m.closeErr)
}

func (m *Module) deliver(r *pb.Response) {
	m.mu.Lock()
	ch, ok := m.pending[r.GetId()]
	delete(m.pending, r.GetId())
	m.mu.Unlock()
	if !ok {
		// The caller gave up (context done); its answer arrives late.
		m.log.Debug("response for no waiting request", "id", r.GetId())
		return
	}
	ch <- r // buffered 1, one send per id
}

// roundTrip sends the envelope built for a fresh id and waits for the
// Response with that id.
func (m *Module) roundTrip(ctx context.Context, build func(id uint64) *pb.Envelope) (*pb.Response, error) {
	select {
	case m.inflight <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-m.done:
		return nil, m.closedErr()
	}
	defer func() { <-m.inflight }()

	id := m.nextID.Add(1)
	ch := make(chan *pb.Response, 1)
	m.mu.Lock()
	m.pending[id] = ch
	m.mu.Unlock()
	forget := func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
	}

	if err := m.send(ctx, build(id)); err != nil {
		forget()
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	case <-m.done:
		forget()
		return nil, m.closedErr()
	}
}

// Log writes a structured log line to Options.Logger (by default the
// module's stderr, which is `blvm-sandbox logs NAME`); kv are alternating
// keys and values. With Options.LogToHub it is also sent to the hub for the
// node's log. It never blocks: a line the hub connection cannot take at
// once is not sent, and is still written locally.
func (m *Module) Log(level pb.LogLevel, msg string, kv ...string) {
	args := make([]any, 0, len(kv))
	for _, s := range kv {
		args = append(args, s)
	}
	m.local.Log(context.Background(), slogLevel(level), msg, args...)
	if m.logToHub {
		m.sendLog(level, msg, kv)
	}
}

// sendLog queues a Log frame for the hub if the writer can take it now.
func (m *Module) sendLog(level pb.LogLevel, msg string, kv []string) {
	fields := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		fields[kv[i]] = kv[i+1]
	}
	if len(kv)%2 == 1 {
		fields["!BADKEY"] = kv[len(kv)-1]
	}
	env := &pb.Envelope{Body: &pb.Envelope_Log{Log: &pb.Log{Level: level, Message: msg, Fields: fields}}}
	frame, err := ipc.MarshalEnvelope(env, m.maxFrame)
	if err != nil || m.Err() != nil {
		return
	}
	select {
	case m.writeq <- frame:
	default:
	}
}

// Debug, Info, Warn and Error are Log at that level.
func (m *Module) Debug(msg string, kv ...string) { m.Log(pb.LogLevel_DEBUG, msg, kv...) }
func (m *Module) Info(msg string, kv ...string)  { m.Log(pb.LogLevel_INFO, msg, kv...) }
func (m *Module) Warn(msg string, kv ...string)  { m.Log(pb.LogLevel_WARN, msg, kv...) }
func (m *Module) Error(msg string, kv ...string) { m.Log(pb.LogLevel_ERROR, msg, kv...) }

func slogLevel(l pb.LogLevel) slog.Level {
	switch l {
	case pb.LogLevel_DEBUG:
		return slog.LevelDebug
	case pb.LogLevel_WARN:
		return slog.LevelWarn
	case pb.LogLevel_ERROR:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// unmarshalResult decodes a successful response's result into result.
func unmarshalResult(method string, r *pb.Response, result proto.Message) error {
	if result == nil {
		return nil
	}
	if err := proto.Unmarshal(r.GetResult(), result); err != nil {
		return fmt.Errorf("%s: decode result: %w", method, err)
	}
	return nil
}
