package bench

// P3 and P4 of issue 5: the hub's round trip against a raw Unix-socket echo
// of the same sizes and framing, pipelined throughput for one module, and
// fan-out of one node event to 100 subscribed modules.

import (
	"bufio"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/hub/hubtest"
	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/policy"
)

// benchHub is a hub over the in-memory backend with sockets in a short temp
// dir (sun_path holds 108 bytes).
type benchHub struct {
	h   *hub.Hub
	b   *hubtest.Backend
	dir string
}

func newBenchHub(b *testing.B, cfg hub.Config) *benchHub {
	b.Helper()
	dir, err := os.MkdirTemp("", "hubb")
	if err != nil {
		b.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	be := hubtest.NewBackend(10)
	h := hub.New(be, cfg)
	b.Cleanup(func() { h.Close(); os.RemoveAll(dir) })
	return &benchHub{h: h, b: be, dir: dir}
}

func (bh *benchHub) connect(b *testing.B, name string, caps ...string) *hubtest.Client {
	b.Helper()
	acl, err := hubtest.ACL(name, caps...)
	if err != nil {
		b.Fatal(err)
	}
	return bh.connectACL(b, name, caps, acl)
}

func (bh *benchHub) connectACL(b *testing.B, name string, caps []string, acl policy.HubACL) *hubtest.Client {
	b.Helper()
	path := filepath.Join(bh.dir, name+".sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	if err := bh.h.Attach(hub.ModuleSpec{ID: "id-" + name, Name: name, Version: "1.0.0", Capabilities: caps, ACL: acl}, ln); err != nil {
		b.Fatal(err)
	}
	c, err := hubtest.Connect(path, name, "1.0.0")
	if err != nil {
		b.Fatal(err)
	}
	_ = c.Conn.SetReadDeadline(time.Time{})
	b.Cleanup(func() { c.Close() })
	return c
}

func requestFrame(b *testing.B, id uint64, method string) []byte {
	f, err := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: id, Method: method}}}, 0)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// tipFrames returns the request frame for chain.GetChainTip and the size of
// the hub's response payload, checking the answer once.
func tipFrames(b *testing.B, c *hubtest.Client) (req []byte, respSize int) {
	req = requestFrame(b, 1, "chain.GetChainTip")
	if err := c.SendRaw(req); err != nil {
		b.Fatal(err)
	}
	env, err := c.Read()
	if err != nil || env.GetResponse().GetCode() != pb.ErrorCode_OK {
		b.Fatalf("chain.GetChainTip: %v %v", env, err)
	}
	_ = c.Conn.SetReadDeadline(time.Time{})
	return req, proto.Size(env)
}

// BenchmarkHubRoundTrip: one authorized chain.GetChainTip at a time through
// the hub over a real Unix socket: ACL, rate and in-flight checks, decode,
// backend call, encode, writer goroutine.
func BenchmarkHubRoundTrip(b *testing.B) {
	bh := newBenchHub(b, hub.Config{RequestsPerSecond: 1e12})
	c := bh.connect(b, "rt", "read_blockchain")
	req, _ := tipFrames(b, c)
	br := bufio.NewReaderSize(c.Conn, 64<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := ipc.ReadFrame(br, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPeerUnixEcho: the same request and response sizes and framing over
// a raw Unix socket, answered by a goroutine that does nothing else.
func BenchmarkPeerUnixEcho(b *testing.B) {
	bh := newBenchHub(b, hub.Config{RequestsPerSecond: 1e12})
	c := bh.connect(b, "size", "read_blockchain")
	req, respSize := tipFrames(b, c)
	resp := ipc.AppendFrame(nil, make([]byte, respSize))

	path := filepath.Join(bh.dir, "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		br := bufio.NewReaderSize(sc, 64<<10)
		for {
			if _, err := ipc.ReadFrame(br, 0); err != nil {
				return
			}
			if _, err := sc.Write(resp); err != nil {
				return
			}
		}
	}()
	cc, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	br := bufio.NewReaderSize(cc, 64<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cc.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := ipc.ReadFrame(br, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHubPipelined: one module keeps up to 256 chain.GetChainTip
// requests in flight; reports requests per second.
func BenchmarkHubPipelined(b *testing.B) {
	const window = 256
	bh := newBenchHub(b, hub.Config{RequestsPerSecond: 1e12, MaxInFlight: window})
	c := bh.connect(b, "pipe", "read_blockchain")
	req, _ := tipFrames(b, c)
	sem := make(chan struct{}, window)
	errs := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		w := bufio.NewWriterSize(c.Conn, 64<<10)
		for i := 0; i < b.N; i++ {
			select {
			case sem <- struct{}{}:
			default:
				if err := w.Flush(); err != nil {
					errs <- err
					return
				}
				sem <- struct{}{}
			}
			w.Write(req)
		}
		errs <- w.Flush()
	}()
	br := bufio.NewReaderSize(c.Conn, 256<<10)
	for i := 0; i < b.N; i++ {
		buf, err := ipc.ReadFrame(br, 0)
		if err != nil {
			b.Fatal(err)
		}
		// A refused request would be a short Response; an OK one carries a BlockRef.
		if len(buf) < 40 {
			b.Fatalf("response %d: %x", i, buf)
		}
		<-sem
	}
	elapsed := time.Since(start)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	if s := bh.h.Stats("pipe"); s.RateLimited != 0 {
		b.Fatalf("rate limited: %+v", s)
	}
}

// BenchmarkHubFanout100: one node.BlockConnected to 100 subscribed modules;
// each op is the time until the last module has read it. Reports p50 and p99.
func BenchmarkHubFanout100(b *testing.B) {
	const modules = 100
	bh := newBenchHub(b, hub.Config{})
	var got atomic.Int64
	all := make(chan struct{}, 1)
	var wg sync.WaitGroup
	acl, err := hubtest.ACL("", "subscribe_events")
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < modules; i++ {
		name := "f" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		acl.PublishNamespace = name
		c := bh.connectACL(b, name, []string{"subscribe_events"}, acl)
		if _, err := c.Call(1, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected"}}); err != nil {
			b.Fatal(err)
		}
		_ = c.Conn.SetReadDeadline(time.Time{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Frames are skipped, not kept: the modules are other processes
			// in real life, and their garbage should not pause the hub here.
			br := bufio.NewReaderSize(c.Conn, 64<<10)
			var hdr [4]byte
			for {
				if _, err := io.ReadFull(br, hdr[:]); err != nil {
					return
				}
				if _, err := br.Discard(int(binary.BigEndian.Uint32(hdr[:]))); err != nil {
					return
				}
				if got.Add(1) == modules {
					all <- struct{}{}
				}
			}
		}()
	}
	tip, height := bh.b.Tip()
	hdr := wire.BlockHeader{Version: 4}
	ev := hub.NodeEvent{Kind: hub.BlockConnected, Hash: tip, Height: height, Header: &hdr}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got.Store(0)
		t0 := time.Now()
		bh.b.Emit(ev)
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			b.Fatalf("only %d of %d modules got the event", got.Load(), modules)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	us := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(us(0.50), "p50_us")
	b.ReportMetric(us(0.99), "p99_us")
	if s := bh.h.Stats("faa"); s.EventsDropped != 0 {
		b.Fatalf("dropped: %+v", s)
	}
	bh.h.Close()
	wg.Wait()
}
