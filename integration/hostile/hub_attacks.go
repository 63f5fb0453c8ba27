package main

// Attacks on the API hub itself: memory, log and identity. They speak the
// protocol frame by frame on connections of their own, next to the one
// main opened to greet.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

func init() {
	attacks["hub-event-flood"] = hubEventFlood
	attacks["hub-log-flood"] = hubLogFlood
	// Run outside any container by the peer-credential test, as a uid of
	// its choosing: connect, greet, and say whether the hub answered.
	if path := os.Getenv("BLVM_HOSTILE_PEER_PROBE"); path != "" {
		c, err := hubDial(path, os.Getenv("BLVM_MODULE_NAME"), "1.0.0")
		if err != nil {
			fmt.Printf("refused: %v\n", err)
			os.Exit(0)
		}
		c.Close()
		fmt.Println("welcome")
		os.Exit(0)
	}
}

// hubConn is one raw protocol connection.
type hubConn struct {
	net.Conn
	br  *bufio.Reader
	wmu sync.Mutex
}

// hubDial connects and greets as name; it fails unless Welcome comes back.
func hubDial(path, name, version string) (*hubConn, error) {
	c, err := hubConnect(path)
	if err != nil {
		return nil, err
	}
	if err := c.hello(name, version); err != nil {
		c.Close()
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	env, err := ipc.ReadEnvelope(c.br, ipc.HardMaxFrame)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	if env.GetWelcome() == nil {
		c.Close()
		return nil, fmt.Errorf("want welcome, got %v", env)
	}
	return c, nil
}

func hubConnect(path string) (*hubConn, error) {
	nc, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	return &hubConn{Conn: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

func (c *hubConn) hello(name, version string) error {
	return c.send(&pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{
		ProtocolVersion: ipc.ProtocolVersion, ModuleName: name, ModuleVersion: version}}})
}

func (c *hubConn) send(env *pb.Envelope) error {
	frame, err := ipc.MarshalEnvelope(env, ipc.HardMaxFrame)
	if err != nil {
		return err
	}
	return c.raw(frame)
}

func (c *hubConn) raw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Write(b)
	return err
}

func (c *hubConn) request(id uint64, method string, params proto.Message) error {
	var raw []byte
	if params != nil {
		raw, _ = proto.Marshal(params)
	}
	return c.send(&pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: id, Method: method, Params: raw}}})
}

// drain reads and counts responses by code until the connection ends.
func (c *hubConn) drain(codes *sync.Map) {
	for {
		env, err := ipc.ReadEnvelope(c.br, ipc.HardMaxFrame)
		if err != nil {
			return
		}
		if r := env.GetResponse(); r != nil {
			n, _ := codes.LoadOrStore(r.Code.String(), new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	}
}

func duration(arg string) time.Duration {
	d, err := time.ParseDuration(arg)
	if err != nil || d <= 0 {
		d = 3 * time.Second
	}
	return d
}

// hubEventFlood subscribes on one connection and never reads it again,
// then publishes as fast as the hub takes them, on another: 1 MiB payloads
// (the frame limit's worth) and payloads at the published-payload limit.
// The hub must hold a bounded number of bytes for the sleeping subscriber.
func hubEventFlood(r *result, arg string) {
	path, name := os.Getenv("BLVM_SOCKET"), os.Getenv("BLVM_MODULE_NAME")
	sub, err := hubDial(path, name, os.Getenv("BLVM_MODULE_VERSION"))
	if err != nil {
		r.Errno = "subscriber: " + err.Error()
		return
	}
	defer sub.Close()
	typ := name + ".Flood"
	if err := sub.request(1, "events.Subscribe", &pb.EventTypes{Types: []string{typ}}); err != nil {
		r.Errno = "subscribe: " + err.Error()
		return
	}
	// The subscriber reads its one response and then sleeps for good.
	sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	env, err := ipc.ReadEnvelope(sub.br, ipc.HardMaxFrame)
	if err != nil || env.GetResponse().GetCode() != pb.ErrorCode_OK {
		r.Errno = fmt.Sprintf("subscribe: %v %v", env, err)
		return
	}

	pub, err := hubDial(path, name, os.Getenv("BLVM_MODULE_VERSION"))
	if err != nil {
		r.Errno = "publisher: " + err.Error()
		return
	}
	defer pub.Close()
	var codes sync.Map
	go pub.drain(&codes)
	huge := &pb.PublishParams{Type: typ, Payload: make([]byte, 1<<20-2048)}
	big := &pb.PublishParams{Type: typ, Payload: make([]byte, 64<<10)}
	end := time.Now().Add(duration(arg))
	for id := uint64(1); time.Now().Before(end); id++ {
		p := big
		if id%8 == 0 {
			p = huge
		}
		if err := pub.request(id, "events.Publish", p); err != nil {
			// The hub pushes back by not reading: that is allowed.
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			r.Errno = "publish: " + err.Error()
			return
		}
		r.Count++
	}
	time.Sleep(200 * time.Millisecond)
	codes.Range(func(k, v any) bool {
		r.Info[k.(string)] = strconv.FormatInt(v.(*atomic.Int64).Load(), 10)
		return true
	})
	r.Errno = "ok"
}

// hubLogFlood makes the hub log because of it, in a loop, every way it
// can: a modules.Call to a 500,000-byte "provider", denied methods, refused
// handshakes with long names, version mismatches with long versions, extra
// connections, bad frames and protocol violations. The node's log must
// grow no faster than the module's log budget.
func hubLogFlood(r *result, arg string) {
	path, name := os.Getenv("BLVM_SOCKET"), os.Getenv("BLVM_MODULE_NAME")
	mc, err := hubDial(path, name, os.Getenv("BLVM_MODULE_VERSION"))
	if err != nil {
		r.Errno = "connect: " + err.Error()
		return
	}
	defer mc.Close()
	var codes sync.Map
	go mc.drain(&codes)
	long := strings.Repeat("\x1b[2J", 125_000) // 500,000 bytes
	hugeCall := "modules.Call:" + long
	end := time.Now().Add(duration(arg))
	id := uint64(0)
	rounds := 0
	for time.Now().Before(end) {
		rounds++
		for _, m := range []string{hugeCall, "modules.Call:stratum-v2", "governance.CastVote", "chain.GetBlock" + long[:4096]} {
			id++
			mc.request(id, m, &pb.ModuleCallParams{Method: long[:20000]})
		}
		// Short-lived connections, each misbehaving once. The module
		// already holds two; the fourth and fifth are one too many.
		var open []*hubConn
		for _, bad := range []func(*hubConn){
			func(c *hubConn) { c.hello(name+"-not"+long[:1000], "1.0.0") },
			func(c *hubConn) { c.hello(name, long[:10000]) },
			func(c *hubConn) { c.hello(name, "1.0.0"); c.raw([]byte{0, 0, 0, 3, 0xff, 0xff, 0xff}) },
			func(c *hubConn) {
				c.hello(name, "1.0.0")
				c.send(&pb.Envelope{Body: &pb.Envelope_Welcome{Welcome: &pb.Welcome{NodeVersion: long[:1000]}}})
			},
			func(c *hubConn) { c.raw(binary.BigEndian.AppendUint32(nil, 0xffffffff)) },
		} {
			c, err := hubConnect(path)
			if err != nil {
				continue
			}
			bad(c)
			open = append(open, c)
			if len(open) == 3 {
				for _, c := range open {
					c.Close()
				}
				open = open[:0]
			}
		}
		for _, c := range open {
			c.Close()
		}
	}
	time.Sleep(200 * time.Millisecond)
	codes.Range(func(k, v any) bool {
		r.Info[k.(string)] = strconv.FormatInt(v.(*atomic.Int64).Load(), 10)
		return true
	})
	r.Count = int64(rounds)
	r.Errno = "ok"
}
