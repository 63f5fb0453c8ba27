package hub

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// nopBackend answers nothing; the test below needs none of it.
type nopBackend struct{ Backend }

func (nopBackend) Network() string                  { return "regtest" }
func (nopBackend) Subscribe(func(NodeEvent)) func() { return func() {} }

// TestPartialWritesKeepFramesWhole forces the publisher's non-blocking
// writes to be cut short (a tiny socket buffer) while responses are written
// directly and by the writer: every frame must arrive whole and in order.
func TestPartialWritesKeepFramesWhole(t *testing.T) {
	dir, err := os.MkdirTemp("", "hubc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server.(*net.UnixConn).SetWriteBuffer(4096)

	h := New(nopBackend{}, Config{EventQueue: 16, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer h.Close()
	m := testModule(h, "m")
	c := newConn(m, server)
	m.wg.Add(1)
	go c.writeLoop()
	defer func() { c.close(); m.wg.Wait() }()

	const events, responses = 1000, 300
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < events; i++ {
			ev, _ := newHubEvent("x.Y", "p", []byte(strings.Repeat("e", 20000)))
			c.deliver(ev)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < responses; i++ {
			c.respond(uint64(i+1), pb.ErrorCode_OK, "", []byte(strings.Repeat("r", 700)))
			time.Sleep(50 * time.Microsecond)
		}
	}()

	br := bufio.NewReader(client)
	var seq uint64
	got, sawMarker := 0, false
	marker := func() {
		ev, _ := newHubEvent("x.Y", "p", []byte("end"))
		c.deliver(ev)
	}
	for got < responses || !sawMarker {
		if got == responses {
			// Everything is sent; a short event marks the end.
			wg.Wait()
			marker()
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		env, err := ipc.ReadEnvelope(br, ipc.HardMaxFrame)
		if err != nil {
			t.Fatalf("after %d events, %d responses: %v", seq, got, err)
		}
		if ev := env.GetEvent(); ev != nil {
			if ev.Sequence != seq+1 || (len(ev.Payload) != 20000 && string(ev.Payload) != "end") {
				t.Fatalf("event %d after %d, %d bytes", ev.Sequence, seq, len(ev.Payload))
			}
			seq = ev.Sequence
			sawMarker = sawMarker || string(ev.Payload) == "end"
			if seq%100 == 0 {
				time.Sleep(time.Millisecond) // a slow reader keeps the socket full
			}
			continue
		}
		if r := env.GetResponse(); r == nil || len(r.Result) != 700 {
			t.Fatalf("frame %v", env)
		}
		got++
	}
	if m.stats.eventsDropped.Load() == 0 {
		t.Fatal("the queue never filled; the test did not test")
	}
}
