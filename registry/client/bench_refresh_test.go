package client

import (
	"net"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/blvm/blvm-sandbox/registry/repo"
	"github.com/blvm/blvm-sandbox/registry/server"
)

// countingListener counts the bytes on the wire both ways (HTTP headers
// included), as the server's socket sees them.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkRefreshNothingChanged: a refresh against a warm cache when the
// registry published nothing: requests, 304s, body bytes and bytes on the
// wire (both directions, headers included) per refresh.
func BenchmarkRefreshNothingChanged(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "reg")
	if _, err := repo.Init(dir, 1, 1); err != nil {
		b.Fatal(err)
	}
	var wire atomic.Int64
	srv := httptest.NewUnstartedServer(server.Handler(dir, nil))
	srv.Listener = countingListener{srv.Listener, &wire}
	srv.Start()
	defer srv.Close()
	opt := Options{URL: srv.URL, RootFile: filepath.Join(dir, "root.json"), CacheDir: filepath.Join(b.TempDir(), "cache")}
	if _, err := Open(opt); err != nil { // warm the cache
		b.Fatal(err)
	}
	wire.Store(0)
	var reqs, notMod, body int64
	for b.Loop() {
		c, err := Open(opt)
		if err != nil {
			b.Fatal(err)
		}
		reqs += c.Requests()
		notMod += c.NotModified()
		body += c.Bytes()
	}
	n := float64(b.N)
	b.ReportMetric(float64(reqs)/n, "requests/op")
	b.ReportMetric(float64(notMod)/n, "304s/op")
	b.ReportMetric(float64(body)/n, "body-bytes/op")
	b.ReportMetric(float64(wire.Load())/n, "wire-bytes/op")
}
