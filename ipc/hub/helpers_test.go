package hub_test

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/internal/syncbuf"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/hub/hubtest"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// env is a hub over a fake backend, with sockets in a short temp dir
// (sun_path holds 108 bytes; t.TempDir() can be longer).
type env struct {
	t    *testing.T
	h    *hub.Hub
	b    *hubtest.Backend
	dir  string
	logs *syncbuf.Buffer
	// onReady counts each module's OnReady calls (its completed handshakes).
	onReady sync.Map // name -> *atomic.Int64
}

// readyCalls is how many times the hub called name's OnReady.
func (e *env) readyCalls(name string) int64 {
	n, _ := e.onReady.LoadOrStore(name, new(atomic.Int64))
	return n.(*atomic.Int64).Load()
}

func newEnv(t *testing.T, cfg hub.Config) *env {
	t.Helper()
	b := hubtest.NewBackend(10)
	e := newEnvWith(t, cfg, b)
	e.b = b
	return e
}

// newEnvWith is newEnv over another backend.
func newEnvWith(t *testing.T, cfg hub.Config, b hub.Backend) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "hub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logs := &syncbuf.Buffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.NodeVersion == "" {
		cfg.NodeVersion = "blvm-test 0.1"
	}
	h := hub.New(b, cfg)
	t.Cleanup(func() { h.Close() })
	return &env{t: t, h: h, dir: dir, logs: logs}
}

// attach serves a module called name holding caps and returns its socket.
func (e *env) attach(name string, caps ...string) string {
	e.t.Helper()
	acl, err := hubtest.ACL(name, caps...)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, name+".sock")
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		e.t.Fatal(err)
	}
	calls, _ := e.onReady.LoadOrStore(name, new(atomic.Int64))
	spec := hub.ModuleSpec{ID: "id-" + name, Name: name, Version: "1.0.0", Capabilities: caps, ACL: acl,
		OnReady: func() { calls.(*atomic.Int64).Add(1) }}
	if err := e.h.Attach(spec, ln); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// module attaches name and connects to it with a completed handshake.
func (e *env) module(name string, caps ...string) *hubtest.Client {
	e.t.Helper()
	c, err := hubtest.Connect(e.attach(name, caps...), name, "1.0.0")
	if err != nil {
		e.t.Fatalf("connect %s: %v", name, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) dial(name string) *hubtest.Client {
	e.t.Helper()
	c, err := hubtest.Dial(filepath.Join(e.dir, name+".sock"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond for up to 5 s.
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

// expectClosed reads until the hub closes the connection.
func expectClosed(t *testing.T, c *hubtest.Client) {
	t.Helper()
	for {
		env, err := c.ReadTimeout(3 * time.Second)
		if err == nil {
			continue // whatever was queued before the close
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open: %v", err)
		}
		_ = env
		return
	}
}

// ping checks that the connection still answers.
func ping(t *testing.T, c *hubtest.Client, id uint64) {
	t.Helper()
	r, err := c.Call(id, "hub.Ping", nil)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if r.Code != pb.ErrorCode_OK {
		t.Fatalf("ping: %v %s", r.Code, r.Message)
	}
}

func mustCall(t *testing.T, c *hubtest.Client, id uint64, method string, params proto.Message, want pb.ErrorCode) *pb.Response {
	t.Helper()
	r, err := c.Call(id, method, params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if r.Code != want {
		t.Fatalf("%s: got %v (%q), want %v", method, r.Code, r.Message, want)
	}
	return r
}

// nextEvent reads until an Event arrives, looking in the backlog first.
func nextEvent(t *testing.T, c *hubtest.Client, d time.Duration) *pb.Event {
	t.Helper()
	for i, env := range c.Backlog {
		if ev := env.GetEvent(); ev != nil {
			c.Backlog = append(c.Backlog[:i], c.Backlog[i+1:]...)
			return ev
		}
	}
	for {
		env, err := c.ReadTimeout(d)
		if err != nil {
			t.Fatalf("waiting for an event: %v", err)
		}
		if ev := env.GetEvent(); ev != nil {
			return ev
		}
		c.Backlog = append(c.Backlog, env)
	}
}

// noEvent checks nothing arrives: a ping round trip flushes the writer, and
// events published before it would be queued before its response... not
// strictly, so wait a little as well.
func noEvent(t *testing.T, c *hubtest.Client, id uint64) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	ping(t, c, id)
	for _, env := range c.Backlog {
		if ev := env.GetEvent(); ev != nil {
			t.Fatalf("unexpected event %s", ev.Type)
		}
	}
}
