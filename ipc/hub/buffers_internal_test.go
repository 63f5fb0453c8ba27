package hub

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// TestWriteBufPoolBounded: the pool keeps a batch buffer up to
// maxPooledBatch and drops one a large frame grew past it, so what it hands
// out is never more than a batch plus one frame of today's bound.
func TestWriteBufPoolBounded(t *testing.T) {
	small := make([]byte, 10, writeBatch)
	if !recycleWriteBuf(&small) {
		t.Fatal("a writeBatch buffer was not kept")
	}
	if len(small) != 0 {
		t.Fatalf("a kept buffer has %d stale bytes", len(small))
	}
	edge := make([]byte, 0, maxPooledBatch)
	if !recycleWriteBuf(&edge) {
		t.Fatal("a buffer of maxPooledBatch was not kept")
	}
	big := make([]byte, 0, maxPooledBatch+1)
	if recycleWriteBuf(&big) {
		t.Fatalf("a %d-byte buffer was kept; the bound is %d", cap(big), maxPooledBatch)
	}
	for range 4 {
		b := writeBufs.Get().(*[]byte)
		if cap(*b) < writeBatch || cap(*b) > maxPooledBatch || len(*b) != 0 {
			t.Fatalf("the pool handed out len %d cap %d", len(*b), cap(*b))
		}
	}
}

// TestIdleConnectionsHoldNoBuffers: connections that have read a request,
// answered it and written a batch through the writer, then idle, hold no
// read or write buffer: the counter is 0, and the live heap per connection
// is far below the 96 KiB the buffers alone were.
func TestIdleConnectionsHoldNoBuffers(t *testing.T) {
	const n = 40
	dir, err := os.MkdirTemp("", "hubbuf")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	h := quietHub(Config{})
	defer h.Close()
	for i := range n {
		name := fmt.Sprintf("m%02d", i)
		ln, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Attach(ModuleSpec{Name: name, Version: "1"}, ln); err != nil {
			t.Fatal(err)
		}
	}
	heap0 := liveHeap()
	clients := make([]net.Conn, n)
	for i := range n {
		name := fmt.Sprintf("m%02d", i)
		nc, err := net.Dial("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		clients[i] = nc
		sendEnv(t, nc, &pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{ProtocolVersion: ipc.ProtocolVersion, ModuleName: name, ModuleVersion: "1"}}})
		if env := readEnv(t, nc); env.GetWelcome() == nil {
			t.Fatalf("%s: want Welcome, got %v", name, env)
		}
		sendEnv(t, nc, &pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: 1, Method: "x.NotAllowed"}}})
		if r := readEnv(t, nc).GetResponse(); r == nil || r.Code != pb.ErrorCode_INVALID {
			t.Fatalf("%s: want an unknown-method answer, got %v", name, r)
		}
		// A frame through the writer goroutine's batch.
		c := onlyConn(t, h, name)
		frame, _ := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Response{Response: &pb.Response{Id: 2}}}, 0)
		if !c.send(frame) {
			t.Fatalf("%s: send failed", name)
		}
		if r := readEnv(t, nc).GetResponse(); r == nil || r.Id != 2 {
			t.Fatalf("%s: want the queued frame, got %v", name, r)
		}
	}
	for i := range n {
		c := onlyConn(t, h, fmt.Sprintf("m%02d", i))
		eventually(t, "an idle connection to give its buffers back", func() bool { return c.buffers.Load() == 0 })
	}
	perConn := (liveHeap() - heap0) / n
	t.Logf("live heap per idle connection: %d bytes", perConn)
	if perConn > 32<<10 {
		t.Fatalf("an idle connection holds %d bytes of heap; the buffers are %d", perConn, readBuffer+writeBatch)
	}
	// The idle connections still serve.
	for i, nc := range clients {
		sendEnv(t, nc, &pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: 3, Method: "x.NotAllowed"}}})
		if r := readEnv(t, nc).GetResponse(); r == nil || r.Id != 3 {
			t.Fatalf("m%02d after idling: got %v", i, r)
		}
	}
}

func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // the second empties sync.Pool's victim cache
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func onlyConn(t *testing.T, h *Hub, name string) *conn {
	t.Helper()
	h.mu.Lock()
	m := h.modules[name]
	h.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.conns) != 1 {
		t.Fatalf("%s has %d connections", name, len(m.conns))
	}
	for c := range m.conns {
		return c
	}
	return nil
}

func sendEnv(t *testing.T, nc net.Conn, env *pb.Envelope) {
	t.Helper()
	frame, err := ipc.MarshalEnvelope(env, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
}

// readEnv reads unbuffered: a client buffer would count in the heap figure.
func readEnv(t *testing.T, nc net.Conn) *pb.Envelope {
	t.Helper()
	env, err := ipc.ReadEnvelope(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return env
}
