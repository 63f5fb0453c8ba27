package hub

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// testModule is a module of h that is not attached: its connections are
// driven by the test alone.
func testModule(h *Hub, name string) *module {
	h.mu.Lock()
	st := h.countersLocked(name)
	h.mu.Unlock()
	m := &module{h: h, spec: ModuleSpec{Name: name}, stats: st, log: st.log, conns: map[*conn]struct{}{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// pipeConn is a connection of m over net.Pipe: no socket, so the
// publisher's direct write path is off and queues fill deterministically.
func pipeConn(t *testing.T, m *module) (*conn, net.Conn) {
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	c := newConn(m, server)
	m.conns[c] = struct{}{}
	return c, client
}

func quietHub(cfg Config) *Hub {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return New(nopBackend{}, cfg)
}

// TestEventQueuesBoundedInBytes: a connection that does not read holds at
// most EventQueueBytes of events, all connections together at most
// EventBytesTotal; the rest are dropped and counted, reported in
// Event.dropped, and a closing connection gives its bytes back.
func TestEventQueuesBoundedInBytes(t *testing.T) {
	const perConn, total, payload = 1 << 20, 3 << 19, 64 << 10
	h := quietHub(Config{EventQueue: 1024, EventQueueBytes: perConn, EventBytesTotal: total})
	defer h.Close()
	m := testModule(h, "sub")
	c1, _ := pipeConn(t, m)
	c2, client2 := pipeConn(t, m)
	ev, _ := newHubEvent("x.Big", "p", make([]byte, payload))
	size := int64(len(ev.encoded))

	for i := 0; i < 100; i++ {
		c1.deliver(ev)
	}
	q1 := int64(len(c1.events))
	if got := c1.evBytes.Load(); got != q1*size || got > perConn || got+size <= perConn {
		t.Fatalf("c1 holds %d bytes in %d events; want the most that fit %d", got, q1, perConn)
	}
	if d := m.stats.eventsDropped.Load(); d != uint64(100-q1) || c1.dropped.Load() != d {
		t.Fatalf("dropped %d (conn %d), want %d", d, c1.dropped.Load(), 100-q1)
	}

	// The second connection gets only what the hub's total leaves.
	for i := 0; i < 100; i++ {
		c2.deliver(ev)
	}
	q2 := int64(len(c2.events))
	if h.evBytes.Load() > total || h.evBytes.Load()+size <= total || q2 >= q1 {
		t.Fatalf("hub holds %d bytes (%d + %d events); want the most that fit %d", h.evBytes.Load(), q1, q2, total)
	}

	// c1 closes: its bytes return to the hub, and c2 has room again.
	c1.cleanup()
	if h.evBytes.Load() != q2*size || c1.evBytes.Load() != 0 {
		t.Fatalf("after close, hub holds %d, want %d", h.evBytes.Load(), q2*size)
	}
	c2.deliver(ev)
	if int64(len(c2.events)) != q2+1 {
		t.Fatal("no room after another connection gave its bytes back")
	}

	// c2's reader learns how many it lost.
	m.wg.Add(1)
	go c2.writeLoop()
	br := bufio.NewReader(client2)
	var first *pb.Event
	for n := int64(0); n < q2+1; n++ {
		client2.SetReadDeadline(time.Now().Add(5 * time.Second))
		env, err := ipc.ReadEnvelope(br, ipc.HardMaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = env.GetEvent()
		}
	}
	if first.GetDropped() != uint64(100-q2) {
		t.Fatalf("first event reports %d dropped, want %d", first.GetDropped(), 100-q2)
	}
	eventually(t, "writer releases the bytes", func() bool { return c2.evBytes.Load() == 0 && h.evBytes.Load() == 0 })
	c2.close()
	m.wg.Wait()
}

// TestOutQueueBoundedInBytes: responses and invocations queued for a
// connection that does not read stop at OutQueueBytes; the module's own
// goroutine waits (backpressure), and a frame larger than the bound still
// goes out alone.
func TestOutQueueBoundedInBytes(t *testing.T) {
	const limit, frame = 100 << 10, 40 << 10
	h := quietHub(Config{OutQueueBytes: limit, MaxInFlight: 64})
	defer h.Close()
	m := testModule(h, "slow")
	c, _ := pipeConn(t, m)

	sent := make(chan bool, 3)
	go func() {
		for i := 0; i < 3; i++ {
			sent <- c.send(make([]byte, frame))
		}
	}()
	<-sent
	<-sent
	select {
	case <-sent:
		t.Fatalf("a third %d-byte frame was queued over the %d-byte bound", frame, limit)
	case <-time.After(100 * time.Millisecond):
	}
	if len(c.out) != 2 || c.outBytes.Load() != 2*frame {
		t.Fatalf("queue holds %d frames, %d bytes", len(c.out), c.outBytes.Load())
	}
	// The writer takes one: the waiting sender proceeds.
	<-c.out
	c.releaseOut(frame)
	select {
	case ok := <-sent:
		if !ok {
			t.Fatal("send failed")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("sender still waiting after the queue drained")
	}

	// Drained, a frame over the bound is still sent, alone.
	for len(c.out) > 0 {
		<-c.out
	}
	c.releaseOut(c.outBytes.Load())
	if !c.send(make([]byte, 3*limit)) {
		t.Fatal("an oversize frame was refused on an empty queue")
	}

	// A sender waiting when the connection closes gives up.
	done := make(chan bool)
	go func() { done <- c.send(make([]byte, frame)) }()
	time.Sleep(20 * time.Millisecond)
	c.close()
	if <-done {
		t.Fatal("send reported success on a closed connection")
	}
}

// TestPeerUIDChecked: a connection whose peer uid is neither the module's
// nor the hub's is closed before a byte is read, counted and logged; the
// module's uid is served; a connection without credentials is refused.
func TestPeerUIDChecked(t *testing.T) {
	dir, err := os.MkdirTemp("", "hubp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	logs := &syncbuf.Buffer{}
	h := New(nopBackend{}, Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer h.Close()
	me := os.Geteuid()

	attach := func(peer, self int) string {
		h.selfUID = self
		path := filepath.Join(dir, "m.sock")
		os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Attach(ModuleSpec{Name: "m", Version: "1", PeerUID: peer}, ln); err != nil {
			t.Fatal(err)
		}
		return path
	}
	hello, _ := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{
		ProtocolVersion: ipc.ProtocolVersion, ModuleName: "m", ModuleVersion: "1"}}}, 0)
	greet := func(path string) error {
		nc, err := net.Dial("unix", path)
		if err != nil {
			return err
		}
		defer nc.Close()
		nc.Write(hello)
		nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		env, err := ipc.ReadEnvelope(bufio.NewReader(nc), 0)
		if err != nil {
			return err
		}
		if env.GetWelcome() == nil {
			return errors.New("no welcome")
		}
		return nil
	}

	// Neither the module's uid nor the hub's: refused.
	if err := greet(attach(me+1000, me+2000)); err == nil {
		t.Fatal("a foreign uid was served")
	}
	s := h.Stats("m")
	if s.PeerRefused != 1 || s.Connections != 0 || s.HandshakeFailures != 0 {
		t.Fatalf("stats %+v", s)
	}
	if !strings.Contains(logs.String(), "connection from another uid refused") || !strings.Contains(logs.String(), "module=m") {
		t.Fatalf("not logged: %s", logs.String())
	}
	// The module's own uid, and the hub's own, are served.
	if err := greet(attach(me, me+2000)); err != nil {
		t.Fatalf("module uid: %v", err)
	}
	if err := greet(attach(me+1000, me)); err != nil {
		t.Fatalf("hub uid: %v", err)
	}
	if s := h.Stats("m"); s.PeerRefused != 1 || s.Connections != 2 {
		t.Fatalf("stats %+v", s)
	}

	// No socket under the connection: no credentials, refused.
	ln := &pipeListener{conns: make(chan net.Conn, 1)}
	if err := h.Attach(ModuleSpec{Name: "piped", Version: "1", PeerUID: me}, ln); err != nil {
		t.Fatal(err)
	}
	server, client := net.Pipe()
	defer client.Close()
	ln.conns <- server
	client.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("pipe connection not closed: %v", err)
	}
	if s := h.Stats("piped"); s.PeerRefused != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestPeerUIDNeedsTheSocket: the peer's uid comes from the socket itself; a
// connection wrapped so that it is no socket has none, and is refused
// rather than guessed at.
func TestPeerUIDNeedsTheSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "hubw")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("unix", ln.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	uid, err := peerUID(nc)
	if err != nil || uid != os.Geteuid() {
		t.Fatalf("peer uid %d, %v; want %d", uid, err, os.Geteuid())
	}
	if _, err := peerUID(opaque{nc}); !errors.Is(err, errNoCredentials) {
		t.Fatalf("wrapped connection: %v, want %v", err, errNoCredentials)
	}
}

type opaque struct{ net.Conn }

type pipeListener struct{ conns chan net.Conn }

func (l *pipeListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *pipeListener) Close() error {
	defer func() { recover() }()
	close(l.conns)
	return nil
}
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
