package hubtest

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/policy"
)

// Client speaks the module protocol frame by frame, the way a module written
// in another language would. It is not the SDK.
type Client struct {
	Conn    net.Conn
	Welcome *pb.Welcome
	// Backlog holds what Call read while waiting for its response.
	Backlog []*pb.Envelope

	br  *bufio.Reader
	wmu sync.Mutex
}

// Dial connects to the hub socket at path without a handshake.
func Dial(path string) (*Client, error) {
	nc, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return &Client{Conn: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

// Connect dials and completes the handshake as name.
func Connect(path, name, version string) (*Client, error) {
	c, err := Dial(path)
	if err != nil {
		return nil, err
	}
	if _, err := c.Hello(name, version); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Hello sends Hello and reads Welcome.
func (c *Client) Hello(name, version string) (*pb.Welcome, error) {
	if err := c.Send(&pb.Envelope{Body: &pb.Envelope_Hello{Hello: &pb.Hello{
		ProtocolVersion: ipc.ProtocolVersion, ModuleName: name, ModuleVersion: version}}}); err != nil {
		return nil, err
	}
	env, err := c.Read()
	if err != nil {
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	w := env.GetWelcome()
	if w == nil {
		return nil, fmt.Errorf("want Welcome, got %v", env)
	}
	c.Welcome = w
	return w, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }

// Send frames and writes env.
func (c *Client) Send(env *pb.Envelope) error {
	frame, err := ipc.MarshalEnvelope(env, ipc.HardMaxFrame)
	if err != nil {
		return err
	}
	return c.SendRaw(frame)
}

// SendRaw writes bytes as they are.
func (c *Client) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(b)
	return err
}

// Read reads one envelope (waiting at most 5 s).
func (c *Client) Read() (*pb.Envelope, error) {
	return c.ReadTimeout(5 * time.Second)
}

// ReadTimeout reads one envelope, waiting at most d.
func (c *Client) ReadTimeout(d time.Duration) (*pb.Envelope, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	return ipc.ReadEnvelope(c.br, ipc.HardMaxFrame)
}

// Request sends a request without waiting.
func (c *Client) Request(id uint64, method string, params proto.Message) error {
	var raw []byte
	if params != nil {
		var err error
		if raw, err = proto.Marshal(params); err != nil {
			return err
		}
	}
	return c.Send(&pb.Envelope{Body: &pb.Envelope_Request{Request: &pb.Request{Id: id, Method: method, Params: raw}}})
}

// Call sends a request and reads until its response; anything else read on
// the way is kept in Backlog.
func (c *Client) Call(id uint64, method string, params proto.Message) (*pb.Response, error) {
	if err := c.Request(id, method, params); err != nil {
		return nil, err
	}
	return c.Await(id)
}

// Await returns the response with id, from the backlog or read.
func (c *Client) Await(id uint64) (*pb.Response, error) {
	for i, env := range c.Backlog {
		if r := env.GetResponse(); r != nil && r.Id == id {
			c.Backlog = append(c.Backlog[:i], c.Backlog[i+1:]...)
			return r, nil
		}
	}
	for {
		env, err := c.Read()
		if err != nil {
			return nil, err
		}
		if r := env.GetResponse(); r != nil && r.Id == id {
			return r, nil
		}
		c.Backlog = append(c.Backlog, env)
	}
}

// Base are the methods every module gets (policy's sandbox base).
var Base = []string{"hub.Handshake", "hub.Log", "hub.Ping"}

// ACL builds the hub ACL that policy would compile for a module holding caps
// (names from the real catalog, including provided ones such as
// read_stratum), publishing in namespace.
func ACL(namespace string, caps ...string) (policy.HubACL, error) {
	cat, err := capabilities.Default()
	if err != nil {
		return policy.HubACL{}, err
	}
	acl := policy.HubACL{PublishNamespace: namespace}
	add := func(list *[]policy.HubGrant, name, src string) {
		for _, g := range *list {
			if g.Name == name {
				return
			}
		}
		*list = append(*list, policy.HubGrant{Name: name, Sources: []policy.Provenance{{Source: src}}})
	}
	for _, m := range Base {
		add(&acl.Methods, m, "sandbox")
	}
	for _, name := range caps {
		capa := cat.Capabilities[name]
		if capa == nil {
			return policy.HubACL{}, fmt.Errorf("unknown capability %q", name)
		}
		for _, m := range capa.HubMethods {
			add(&acl.Methods, m, name)
		}
		if capa.Provider != "" {
			add(&acl.Methods, capabilities.ModuleCallMethod(capa.Provider), name)
		}
		for _, e := range capa.Events {
			add(&acl.Events, e, name)
		}
	}
	return acl, nil
}
