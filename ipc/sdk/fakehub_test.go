package sdk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// fakeHub is the hub's side of the socket, scripted by each test: it
// accepts connections on a real Unix socket and hands them to the test
// after the handshake (or before it, for handshake tests).
type fakeHub struct {
	t     *testing.T
	path  string
	ln    net.Listener
	conns chan *hubConn
}

type hubConn struct {
	t     *testing.T
	conn  net.Conn
	hello *pb.Hello
	wmu   sync.Mutex
}

// testWelcome is what the fake hub answers unless a test says otherwise.
func testWelcome() *pb.Welcome {
	return &pb.Welcome{
		ProtocolVersion:  ipc.ProtocolVersion,
		NodeVersion:      "test-node 0.1",
		ModuleId:         "demo#1",
		Capabilities:     []string{"read_blockchain"},
		PublishNamespace: "demo",
		MaxFrameBytes:    64 << 10,
		Network:          "regtest",
	}
}

// newFakeHub listens on a fresh socket. With greet set, each connection is
// greeted (Hello read, Welcome sent) before the test sees it.
func newFakeHub(t *testing.T, greet bool) *fakeHub {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "hub.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHub{t: t, path: path, ln: ln, conns: make(chan *hubConn, 4)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hc := &hubConn{t: t, conn: c}
			if greet {
				env, err := hc.recv()
				if err != nil {
					c.Close()
					continue
				}
				hc.hello = env.GetHello()
				hc.send(&pb.Envelope{Body: &pb.Envelope_Welcome{Welcome: testWelcome()}})
			}
			h.conns <- hc
		}
	}()
	return h
}

func (h *fakeHub) accept() *hubConn {
	h.t.Helper()
	select {
	case c := <-h.conns:
		h.t.Cleanup(func() { c.conn.Close() })
		return c
	case <-time.After(5 * time.Second):
		h.t.Fatal("no connection reached the fake hub")
		return nil
	}
}

// connect starts a module against the hub and returns both ends.
func (h *fakeHub) connect(opts Options) (*Module, *hubConn) {
	h.t.Helper()
	opts.Socket = h.path
	if opts.Name == "" {
		opts.Name = "demo"
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := Connect(ctx, opts)
	if err != nil {
		h.t.Fatalf("Connect: %v", err)
	}
	h.t.Cleanup(func() { m.Close() })
	return m, h.accept()
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (c *hubConn) send(env *pb.Envelope) {
	c.t.Helper()
	frame, err := ipc.MarshalEnvelope(env, ipc.HardMaxFrame)
	if err != nil {
		c.t.Error(err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.Write(frame)
}

func (c *hubConn) recv() (*pb.Envelope, error) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return ipc.ReadEnvelope(c.conn, ipc.HardMaxFrame)
}

// mustRecv reads the next frame, failing the test if none comes.
func (c *hubConn) mustRecv() *pb.Envelope {
	c.t.Helper()
	env, err := c.recv()
	if err != nil {
		c.t.Fatalf("hub read: %v", err)
	}
	return env
}

func (c *hubConn) request() *pb.Request {
	c.t.Helper()
	env := c.mustRecv()
	r := env.GetRequest()
	if r == nil {
		c.t.Fatalf("hub expected a Request, got %T", env.Body)
	}
	return r
}

func (c *hubConn) respond(id uint64, code pb.ErrorCode, msg string, result proto.Message) {
	c.t.Helper()
	var raw []byte
	if result != nil {
		var err error
		if raw, err = proto.Marshal(result); err != nil {
			c.t.Fatal(err)
		}
	}
	c.send(&pb.Envelope{Body: &pb.Envelope_Response{Response: &pb.Response{Id: id, Code: code, Message: msg, Result: raw}}})
}

func unmarshal(t *testing.T, raw []byte, m proto.Message) {
	t.Helper()
	if err := proto.Unmarshal(raw, m); err != nil {
		t.Fatal(err)
	}
}

// waitErr waits for one result from ch, failing after a while.
func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
		return errors.New("unreachable")
	}
}

func marshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }
