package hub

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// writeBatch is how many bytes the writer gathers before one write.
const writeBatch = 64 << 10

// readBuffer is the read side's buffer: it batches pipelined requests.
const readBuffer = 32 << 10

// maxPooledBatch is the largest write buffer kept for reuse. A batch is
// writeBatch plus at most one frame; a buffer grown past this by a large
// frame is dropped rather than kept.
const maxPooledBatch = 4 * writeBatch

// The read and write buffers are taken only while a connection reads or
// writes, and given back when it waits: an idle module (most of them, most
// of the time) then holds neither, which is most of what a connection costs
// (P7). The pools hold only free buffers, no state of any connection.
var (
	writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeBatch); return &b }}
	readers   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuffer) }}
)

// errWouldBlock is the raw read's "no input now"; it never leaves conn.
var errWouldBlock = errors.New("hub: no input")

// conn is one connection of a module.
//
// Reading: exactly one goroutine reads at a time. The reader runs the cheap
// checks on each request and answers it itself; the read turn passes to
// another goroutine when more input is waiting, when the handler waits on
// its context, or when the watchdog sees the handler run long. Requests thus
// run concurrently and are answered in any order.
//
// Writing: the writer goroutine batches whatever is queued in out and
// events; a worker whose response finds nothing queued and nobody writing
// writes it directly. Either way wmu serialises writes, and only this
// connection's goroutines ever wait on it or on out, so a module that stops
// reading stalls itself alone. Events never wait: when the events queue is
// full, in count or in bytes, or the hub's total of queued event bytes is
// reached, they are dropped and counted. out is bounded in bytes too; there
// the module's own goroutines wait.
type conn struct {
	m  *module
	h  *Hub
	nc net.Conn

	out       chan []byte    // framed responses and invocations
	outBytes  atomic.Int64   // bytes in out and taken by the writer, not yet written
	outSpace  chan struct{}  // capacity 1: the writer has freed bytes of out
	events    chan *hubEvent // events to deliver, bounded
	evBytes   atomic.Int64   // bytes of events queued, and of partial
	dropped   atomic.Uint64  // events dropped since the last delivery
	done      chan struct{}  // closed when the connection is closing
	once      sync.Once
	seq       uint64                // event sequence, under wmu
	invSeq    atomic.Uint64         // invocation ids
	wmu       sync.Mutex            // held while writing to nc
	br        *bufio.Reader         // read side, used only by the goroutine that holds the read turn; nil while it waits for input (pooled)
	rc        syscall.RawConn       // for the publisher's non-blocking writes and the reader's wait; nil if nc has none
	rawRead   func(fd uintptr) bool // the read turn's: fills br once, or gives it back and waits
	rawFd     int                   // set while rawRead runs: br reads fd without waiting
	readErr   error                 // rawRead's result
	buffers   atomic.Int32          // pooled buffers this connection holds now: 0 when idle
	evPending atomic.Int64          // events queued or partly written, not yet on the socket
	partial   []byte                // under wmu: the unwritten rest of a frame, goes out first; charged to evBytes
	scratch   []byte                // under wmu: the publisher's frame buffer
	rawWrite  func(fd uintptr) bool // under wmu: writes rawBuf once, never waits
	rawBuf    []byte
	rawN      int
	rawErr    error
	cleanOnce sync.Once
	turns     chan struct{} // hands the read turn to an idle worker
	idle      atomic.Int32  // workers waiting for the read turn
	// inlineSince is when the reader started running a request itself
	// (UnixNano), 0 when it is not.
	inlineSince atomic.Int64
	pmu         sync.Mutex // guards pending and subs
	pending     map[uint64]*pendingInvocation
	subs        map[string]struct{}
}

func newConn(m *module, nc net.Conn) *conn {
	c := &conn{
		rawFd:    -1,
		m:        m,
		h:        m.h,
		nc:       nc,
		out:      make(chan []byte, m.h.cfg.MaxInFlight+16),
		outSpace: make(chan struct{}, 1),
		events:   make(chan *hubEvent, m.h.cfg.EventQueue),
		done:     make(chan struct{}),
		turns:    make(chan struct{}),
		pending:  make(map[uint64]*pendingInvocation),
		subs:     make(map[string]struct{}),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	c.rawWrite = func(fd uintptr) bool {
		c.rawN, c.rawErr = syscall.Write(int(fd), c.rawBuf)
		return true // one attempt; the publisher never waits for the socket
	}
	c.rawRead = c.fillOrRelease
	return c
}

// close stops the connection; it is safe to call more than once and from any
// goroutine. The reader notices and cleans up.
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.nc.Close()
	})
}

// closeUnregistered closes a connection that never got goroutines.
func (c *conn) closeUnregistered() {
	c.close()
	c.m.stats.connsClosed.Add(1)
}

// serve runs the connection: handshake, then read and dispatch frames until
// the connection ends.
func (c *conn) serve() {
	go c.writeLoop()
	c.takeReader()
	if !c.handshake(c.br) {
		c.cleanup()
		c.m.wg.Done()
		return
	}
	c.worker()
}

// readLoop reads and dispatches frames while this goroutine holds the read
// turn: exactly one goroutine reads at a time. It returns true when it passed
// the turn on and ran a request, false when the connection has ended and
// been cleaned up.
func (c *conn) readLoop() bool {
	for {
		env, err := c.readEnvelope()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				c.m.stats.badFrames.Add(1)
				c.m.log.warn("hub: frame not complete within the deadline; closing the connection",
					slog.Duration("timeout", c.h.cfg.FrameTimeout))
			case isBadFrame(err):
				c.m.stats.badFrames.Add(1)
				c.m.log.warn("hub: bad frame; closing the connection", str("err", err.Error()))
			}
			c.cleanup()
			return false
		}
		switch b := env.Body.(type) {
		case *pb.Envelope_Request:
			j, ok := c.admit(b.Request)
			if !ok {
				continue
			}
			if c.br.Buffered() > 0 {
				// More is waiting: pass the read turn on now and answer
				// this request here, so both proceed at once.
				c.handOff()
				c.run(j, nil)
				return true
			}
			// Nothing else waiting: answer inline, which costs no goroutine
			// wake-up. If the handler waits on its context, or the watchdog
			// sees it run long, the turn passes on (yieldTurn) so the next
			// request is never held up for long.
			c.inlineSince.Store(time.Now().UnixNano())
			c.h.watch()
			c.run(j, c.yieldTurn)
			if c.inlineSince.Swap(0) == 0 {
				return true // the turn went to another goroutine
			}
		case *pb.Envelope_Log:
			c.handleLog(b.Log)
		case *pb.Envelope_InvocationResult:
			c.handleInvocationResult(b.InvocationResult)
		case *pb.Envelope_RegisterCliSpec:
			c.handleRegisterCli(b.RegisterCliSpec)
		default:
			c.m.stats.badFrames.Add(1)
			c.m.log.warn("hub: unexpected message from module; closing the connection", slog.String("message", messageName(env)))
			c.cleanup()
			return false
		}
	}
}

// readEnvelope reads the next frame. Between frames the connection may idle
// with no deadline; once a frame has begun it must be complete within
// FrameTimeout. A frame already whole in the buffer, the usual case, costs
// no deadline at all.
func (c *conn) readEnvelope() (*pb.Envelope, error) {
	if c.br == nil || c.br.Buffered() == 0 {
		if err := c.awaitInput(); err != nil {
			return nil, err
		}
	}
	if ipc.FrameBuffered(c.br, c.h.cfg.MaxFrame) {
		return ipc.ReadEnvelope(c.br, c.h.cfg.MaxFrame)
	}
	// Only the goroutine holding the read turn sets or clears the read
	// deadline, and it clears it before passing the turn on.
	_ = c.nc.SetReadDeadline(time.Now().Add(c.h.cfg.FrameTimeout))
	env, err := ipc.ReadEnvelope(c.br, c.h.cfg.MaxFrame)
	if err == nil {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	return env, err
}

// awaitInput returns once input is buffered in br, or with the error that
// ends the connection. It tries one read into the buffer held now; when no
// input is waiting it gives the buffer back and waits for the socket to
// become readable holding none, then takes a buffer and reads. That is the
// same two reads an idle wait always cost, and one when input is waiting.
func (c *conn) awaitInput() error {
	if c.rc == nil {
		// No socket to wait on (net.Pipe in this package's tests; accepted
		// connections that are no socket are refused at the peer check):
		// keep the buffer and block in it.
		if c.br == nil {
			c.takeReader()
		}
		_, err := c.br.Peek(1)
		return err
	}
	c.readErr = nil
	if err := c.rc.Read(c.rawRead); err != nil {
		return err // closed, or a deadline: the net package's own errors
	}
	return c.readErr
}

// fillOrRelease is the raw read's callback, run with the socket's read lock
// held and after the poller was armed, so input arriving after a refused
// read wakes the wait. It reports false to wait for input.
func (c *conn) fillOrRelease(fd uintptr) bool {
	if c.br == nil {
		c.takeReader()
	}
	c.rawFd = int(fd)
	_, err := c.br.Peek(1)
	c.rawFd = -1
	if err == errWouldBlock {
		c.releaseReader()
		return false
	}
	c.readErr = err
	if err != nil && c.br.Buffered() == 0 {
		c.releaseReader() // the connection ends here
	}
	return true
}

// takeReader takes a read buffer from the pool for this connection.
func (c *conn) takeReader() {
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(connSource{c})
	c.buffers.Add(1)
}

// releaseReader gives an empty read buffer back.
func (c *conn) releaseReader() {
	c.br.Reset(nil)
	readers.Put(c.br)
	c.br = nil
	c.buffers.Add(-1)
}

// connSource is what br reads from: inside the raw read's callback one
// non-blocking read of the socket, otherwise the connection itself (with
// its deadlines).
type connSource struct{ c *conn }

func (s connSource) Read(p []byte) (int, error) {
	c := s.c
	if c.rawFd < 0 {
		return c.nc.Read(p)
	}
	for {
		n, err := syscall.Read(c.rawFd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, &net.OpError{Op: "read", Net: c.nc.LocalAddr().Network(), Addr: c.nc.LocalAddr(), Err: os.NewSyscallError("read", err)}
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// isBadFrame tells a protocol violation (counted) from the peer or the hub
// simply closing the connection.
func isBadFrame(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return false
	}
	var oe *net.OpError
	return !errors.As(err, &oe)
}

func messageName(env *pb.Envelope) string {
	if env == nil || env.Body == nil {
		return "none"
	}
	return string(env.ProtoReflect().WhichOneof(env.ProtoReflect().Descriptor().Oneofs().ByName("body")).Name())
}

// handshake reads Hello within the deadline and answers Welcome. A missing,
// malformed or mismatched Hello closes the connection.
func (c *conn) handshake(br *bufio.Reader) bool {
	fail := func(msg string, attrs ...slog.Attr) bool {
		c.m.stats.handshakeFailures.Add(1)
		c.m.log.warn("hub: handshake failed; closing the connection: "+msg, attrs...)
		return false
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.h.cfg.HandshakeTimeout))
	env, err := ipc.ReadEnvelope(br, c.h.cfg.MaxFrame)
	if err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return fail("no Hello within the deadline", slog.Duration("timeout", c.h.cfg.HandshakeTimeout))
		case isBadFrame(err):
			c.m.stats.badFrames.Add(1)
			return fail("bad frame", str("err", err.Error()))
		case errors.Is(err, net.ErrClosed):
			return false
		default:
			return fail("connection ended before Hello", str("err", err.Error()))
		}
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	hb, ok := env.Body.(*pb.Envelope_Hello)
	if !ok {
		return fail("first message is not Hello", slog.String("message", messageName(env)))
	}
	hello := hb.Hello
	if hello.ProtocolVersion != ipc.ProtocolVersion {
		return fail("unsupported protocol version", slog.Uint64("got", uint64(hello.ProtocolVersion)), slog.Uint64("want", uint64(ipc.ProtocolVersion)))
	}
	if hello.ModuleName != c.m.spec.Name {
		// The socket says who the module is; a different claim is refused.
		return fail("module name does not match the socket", str("claimed", hello.ModuleName), slog.String("socket", c.m.spec.Name))
	}
	if hello.ModuleVersion != c.m.spec.Version {
		// Only the name is identity; a different version is worth a line.
		c.m.log.warn("hub: module claims a version other than the verified one", str("claimed", hello.ModuleVersion), slog.String("verified", c.m.spec.Version))
	}
	acl := c.m.spec.ACL
	w := &pb.Welcome{
		ProtocolVersion:  ipc.ProtocolVersion,
		NodeVersion:      c.h.cfg.NodeVersion,
		ModuleId:         c.m.spec.ID,
		Capabilities:     append([]string(nil), c.m.spec.Capabilities...),
		PublishNamespace: acl.PublishNamespace,
		MaxFrameBytes:    uint32(c.h.cfg.MaxFrame),
		Network:          c.h.b.Network(),
	}
	for _, g := range acl.Methods {
		w.Methods = append(w.Methods, g.Name)
	}
	for _, g := range acl.Events {
		w.Events = append(w.Events, g.Name)
	}
	frame, err := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Welcome{Welcome: w}}, c.h.cfg.MaxFrame)
	if err != nil {
		return fail("encode Welcome", slog.String("err", err.Error()))
	}
	// Logged before the Welcome leaves, so that a module that has its
	// Welcome finds the line written (the tests that count log bytes).
	c.m.log.line(slog.LevelDebug, "hub: module connected", str("version", hello.ModuleVersion))
	if !c.send(frame) {
		return false
	}
	if c.m.spec.OnReady != nil {
		c.m.spec.OnReady()
	}
	c.h.markReady(c.m.spec.Name)
	return true
}

// cleanup runs once the reader stops: the connection is closed, its
// subscriptions and registrations removed, waiting invocations failed.
func (c *conn) cleanup() {
	c.cleanOnce.Do(c.doCleanup)
}

func (c *conn) doCleanup() {
	c.close()
	c.h.unsubscribeAll(c)
	// No event reaches c any more: return what its queue holds to the
	// hub's total. The writer may be taking some too; whoever receives an
	// event releases it.
	for drained := false; !drained; {
		select {
		case ev := <-c.events:
			if ev != nil {
				c.releaseEvent(int64(len(ev.encoded)))
			}
		default:
			drained = true
		}
	}
	c.wmu.Lock()
	c.releaseEvent(int64(len(c.partial)))
	c.partial = nil
	c.wmu.Unlock()
	c.pmu.Lock()
	pend := c.pending
	c.pending = make(map[uint64]*pendingInvocation)
	c.pmu.Unlock()
	for _, p := range pend {
		p.finish(nil, fmt.Errorf("%w: connection closed", ErrUnavailable))
	}
	m := c.m
	m.mu.Lock()
	delete(m.conns, c)
	if m.apiConn == c {
		m.api, m.apiConn = nil, nil
	}
	if m.cli != nil && m.cli.conn == c {
		m.cli = nil
	}
	m.mu.Unlock()
	m.stats.connsClosed.Add(1)
}

// send queues a framed message for the writer, waiting while the queue is
// full (only this module's goroutines wait). It reports false if the
// connection closed first.
func (c *conn) send(frame []byte) bool {
	return c.enqueue(nil, frame) == nil
}

// errConnClosed: the connection closed while a frame waited for the queue.
var errConnClosed = fmt.Errorf("%w: connection closed", ErrUnavailable)

// enqueue queues frame for the writer, waiting while out holds
// OutQueueBytes or more, or is full, until cancel closes or the connection
// does. A frame always fits an empty queue, so a frame larger than the
// bound still goes out, alone.
func (c *conn) enqueue(cancel <-chan struct{}, frame []byte) error {
	n := int64(len(frame))
	limit := int64(c.h.cfg.OutQueueBytes)
	for {
		cur := c.outBytes.Load()
		if cur == 0 || cur+n <= limit {
			if c.outBytes.CompareAndSwap(cur, cur+n) {
				break
			}
			continue
		}
		select {
		case <-c.outSpace:
		case <-cancel:
			return context.Canceled
		case <-c.done:
			return errConnClosed
		}
	}
	select {
	case c.out <- frame:
	case <-cancel:
		c.releaseOut(n)
		return context.Canceled
	case <-c.done:
		c.releaseOut(n)
		return errConnClosed
	}
	if c.outBytes.Load() < limit {
		// Room is left: pass the wake-up on to the next waiter.
		c.signalOutSpace()
	}
	return nil
}

// releaseOut frees n bytes of out and wakes a waiting sender.
func (c *conn) releaseOut(n int64) {
	if n != 0 {
		c.outBytes.Add(-n)
		c.signalOutSpace()
	}
}

func (c *conn) signalOutSpace() {
	select {
	case c.outSpace <- struct{}{}:
	default:
	}
}

// chargeEvent reserves n bytes of event queue on this connection and on the
// hub; false means no room, and nothing was reserved. An event always fits
// an empty connection queue, so no event is undeliverable by size alone.
func (c *conn) chargeEvent(n int64) bool {
	if cur := c.evBytes.Add(n); cur > int64(c.h.cfg.EventQueueBytes) && cur != n {
		c.evBytes.Add(-n)
		return false
	}
	if c.h.evBytes.Add(n) > int64(c.h.cfg.EventBytesTotal) {
		c.h.evBytes.Add(-n)
		c.evBytes.Add(-n)
		return false
	}
	return true
}

func (c *conn) releaseEvent(n int64) {
	if n != 0 {
		c.evBytes.Add(-n)
		c.h.evBytes.Add(-n)
	}
}

func (c *conn) respond(id uint64, code pb.ErrorCode, msg string, result []byte) {
	frame, err := marshalResponse(id, code, msg, result, c.h.cfg.MaxFrame)
	if err != nil {
		c.m.log.warn("hub: response too large", slog.Uint64("id", id), slog.String("err", err.Error()))
		frame, _ = marshalResponse(id, pb.ErrorCode_INTERNAL, "result exceeds the frame limit", nil, c.h.cfg.MaxFrame)
	}
	// Fast path: nothing queued and nobody writing, so write it here and save
	// the hand-off to the writer. Only this connection's goroutines ever hold
	// wmu, so a module that stops reading blocks only itself.
	if len(c.out) == 0 && c.wmu.TryLock() {
		if c.partial == nil {
			_, err := c.nc.Write(frame)
			c.wmu.Unlock()
			if err != nil {
				c.close()
			}
			return
		}
		c.wmu.Unlock()
	}
	c.send(frame)
}

// marshalResponse frames a Response. It encodes straight after the length
// prefix, saving the copy MarshalEnvelope makes; the framing is the same.
func marshalResponse(id uint64, code pb.ErrorCode, msg string, result []byte, max int) ([]byte, error) {
	env := &pb.Envelope{Body: &pb.Envelope_Response{Response: &pb.Response{
		Id: id, Code: code, Message: msg, Result: result,
	}}}
	size := proto.Size(env)
	if size > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ipc.ErrFrameTooLarge, size, max)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+size), uint32(size))
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, env)
}

// writeLoop is the connection's writer goroutine. It gathers whatever is
// queued into one buffer and writes it with one call, holding wmu from the
// moment it frames the first item, so event sequence numbers follow the
// order of the bytes on the socket.
func (c *conn) writeLoop() {
	defer c.m.wg.Done()
	for {
		var first []byte
		var firstEv *hubEvent
		select {
		case first = <-c.out:
		case firstEv = <-c.events:
		case <-c.done:
			return
		}
		c.wmu.Lock()
		held := c.takeWriteBuf()
		buf := (*held)[:0]
		var nev, taken uint64
		var outTaken, evTaken int64
		if c.partial != nil {
			// The rest of a frame a publisher began writing goes first.
			buf = append(buf, c.partial...)
			evTaken += int64(len(c.partial))
			c.partial = nil
			taken++
		}
		buf = append(buf, first...)
		outTaken += int64(len(first))
		if firstEv != nil {
			buf, nev = c.appendEvent(buf, firstEv, nev)
			evTaken += int64(len(firstEv.encoded))
			taken++
		}
	gather:
		for len(buf) < writeBatch {
			select {
			case f := <-c.out:
				buf = append(buf, f...)
				outTaken += int64(len(f))
			case ev := <-c.events:
				if ev != nil {
					buf, nev = c.appendEvent(buf, ev, nev)
					evTaken += int64(len(ev.encoded))
					taken++
				}
			default:
				break gather
			}
		}
		// What was taken is framed into buf now: the queues' bytes are free
		// (buf itself is bounded by writeBatch plus one frame).
		c.releaseEvent(evTaken)
		_, err := c.nc.Write(buf)
		c.evPending.Add(-int64(taken))
		c.wmu.Unlock()
		*held = buf
		c.releaseWriteBuf(held)
		c.releaseOut(outTaken)
		if err != nil {
			c.close()
			return
		}
		if nev > 0 {
			c.m.stats.eventsDelivered.Add(nev)
		}
	}
}

// takeWriteBuf takes a batch buffer from the pool for one write.
func (c *conn) takeWriteBuf() *[]byte {
	c.buffers.Add(1)
	return writeBufs.Get().(*[]byte)
}

// releaseWriteBuf gives a batch buffer back once its bytes are written.
func (c *conn) releaseWriteBuf(b *[]byte) {
	c.buffers.Add(-1)
	recycleWriteBuf(b)
}

// recycleWriteBuf keeps b for the next batch unless a large frame grew it
// past maxPooledBatch; it reports whether b was kept.
func recycleWriteBuf(b *[]byte) bool {
	if cap(*b) > maxPooledBatch {
		return false
	}
	*b = (*b)[:0]
	writeBufs.Put(b)
	return true
}

// deliver hands ev to this connection without ever blocking the publisher.
// When nothing of this connection's is queued or being written, the
// publisher writes the frame itself with one non-blocking write, which saves
// waking the writer goroutine: on a 100-module fan-out that is most of the
// cost. Whatever the socket does not take at once is left in partial for the
// writer. Otherwise ev is queued, or dropped and counted when the queue is
// full.
func (c *conn) deliver(ev *hubEvent) {
	if c.rc != nil && c.evPending.Load() == 0 && c.wmu.TryLock() {
		if c.evPending.Load() == 0 && c.partial == nil {
			c.writeEventLocked(ev)
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
	}
	// evPending rises before the event is visible in the queue, so a later
	// event never overtakes this one through the direct path.
	c.evPending.Add(1)
	size := int64(len(ev.encoded))
	if c.chargeEvent(size) {
		select {
		case c.events <- ev:
			return
		default:
			c.releaseEvent(size)
		}
	}
	c.evPending.Add(-1)
	c.dropped.Add(1)
	c.m.stats.eventsDropped.Add(1)
}

// writeEventLocked frames ev and tries one non-blocking write. Call with wmu
// held and nothing pending.
func (c *conn) writeEventLocked(ev *hubEvent) {
	frame, n := c.appendEvent(c.scratch[:0], ev, 0)
	c.scratch = frame[:0]
	if n == 0 {
		return // too large: dropped and counted
	}
	c.rawBuf = frame
	err := c.rc.Write(c.rawWrite)
	written, werr := c.rawN, c.rawErr
	c.rawBuf = nil
	if err != nil {
		c.close()
		return
	}
	if written < 0 {
		written = 0
	}
	if werr != nil && werr != syscall.EAGAIN && werr != syscall.EINTR {
		c.close()
		return
	}
	c.m.stats.eventsDelivered.Add(1)
	if written == len(frame) {
		return
	}
	c.partial = append([]byte(nil), frame[written:]...)
	// Always charged: the frame is on its way and cannot be dropped now.
	c.evBytes.Add(int64(len(c.partial)))
	c.h.evBytes.Add(int64(len(c.partial)))
	c.evPending.Add(1)
	// Wake the writer. If the queue is full, the writer is awake anyway.
	select {
	case c.events <- nil:
	default:
	}
}

// appendEvent frames ev for this connection, with its sequence number and the
// count of events dropped since the previous delivery. The fields every
// subscriber shares were encoded once at publish; only these two are
// appended here (protobuf allows fields in any order).
func (c *conn) appendEvent(buf []byte, ev *hubEvent, n uint64) ([]byte, uint64) {
	dropped := c.dropped.Swap(0)
	seq := c.seq + 1
	var tail [2 * (1 + binary.MaxVarintLen64)]byte
	t := protowire.AppendVarint(protowire.AppendTag(tail[:0], 2, protowire.VarintType), seq)
	if dropped > 0 {
		t = protowire.AppendVarint(protowire.AppendTag(t, 6, protowire.VarintType), dropped)
	}
	eventLen := len(ev.encoded) + len(t)
	envLen := 1 + protowire.SizeVarint(uint64(eventLen)) + eventLen
	if envLen > c.h.cfg.MaxFrame {
		c.dropped.Add(dropped + 1)
		c.m.stats.eventsDropped.Add(1)
		c.m.log.warn("hub: event exceeds the frame limit; dropped", slog.String("type", ev.typ), slog.Int("bytes", envLen))
		return buf, n
	}
	c.seq = seq
	buf = binary.BigEndian.AppendUint32(buf, uint32(envLen))
	buf = protowire.AppendTag(buf, 5, protowire.BytesType) // Envelope.event
	buf = protowire.AppendVarint(buf, uint64(eventLen))
	buf = append(buf, ev.encoded...)
	buf = append(buf, t...)
	return buf, n + 1
}
