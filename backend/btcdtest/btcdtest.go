// Package btcdtest runs a real btcd for tests: built once with the Go
// toolchain from the module proxy into a cache directory, started in regtest
// on 127.0.0.1 with a random port and a temporary data directory, as a child
// in its own process group that the kernel kills if the test process dies
// (Pdeathsig), and stopped in the test's cleanup.
package btcdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/rpcclient"
	"golang.org/x/sys/unix"
)

// Version is the btcd the tests run.
const Version = "v0.26.2"

// Binary builds btcd (once per cache) and returns its path. The cache is
// $BLVM_BTCD_CACHE, else the user cache dir; a lock file serialises
// concurrent builds from parallel test binaries.
func Binary(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("BLVM_BTCD_CACHE")
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("btcdtest: cache dir: %v", err)
		}
		dir = filepath.Join(c, "blvm-sandbox", "btcd-"+Version)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("btcdtest: %v", err)
	}
	bin := filepath.Join(dir, "btcd")
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("btcdtest: %v", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatalf("btcdtest: lock %s: %v", lock.Name(), err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/btcsuite/btcd@"+Version)
	// Outside any module, so that go.mod of the project does not apply.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("btcdtest: go install github.com/btcsuite/btcd@%s: %v\n%s", Version, err, out)
	}
	return bin
}

// Node is a running regtest btcd.
type Node struct {
	t       testing.TB
	bin     string
	Dir     string
	RPCAddr string
	User    string
	Pass    string
	CertPEM []byte
	// MiningKey owns every coinbase; MiningAddr is its P2PKH address.
	MiningKey  *btcec.PrivateKey
	MiningAddr address.Address
	net        string
	cmd        *exec.Cmd
	exited     chan struct{}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("btcdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Options choose the chain. btcd deletes its regtest database at every
// start, so a test that restarts the node runs it on simnet, which keeps it.
type Options struct {
	Simnet bool
}

// Network is the chain name btcd reports for these options.
func (o Options) Network() string {
	if o.Simnet {
		return "simnet"
	}
	return "regtest"
}

// Start runs a fresh btcd and registers its stop in t.Cleanup.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	params := &chaincfg.RegressionNetParams
	if opts.Simnet {
		params = &chaincfg.SimNetParams
	}
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := address.NewAddressPubKeyHash(address.Hash160(key.PubKey().SerializeCompressed()), params)
	if err != nil {
		t.Fatal(err)
	}
	pass := make([]byte, 16)
	rand.Read(pass)
	n := &Node{
		t: t, bin: Binary(t), Dir: t.TempDir(),
		RPCAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		User:    "blvm", Pass: hex.EncodeToString(pass),
		MiningKey: key, MiningAddr: addr, net: "--" + opts.Network(),
	}
	t.Cleanup(n.Stop)
	n.Restart()
	return n
}

// Restart stops btcd if it runs and starts it again on the same data
// directory and port.
func (n *Node) Restart() {
	n.t.Helper()
	n.Stop()
	logf, err := os.OpenFile(filepath.Join(n.Dir, "btcd.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(n.bin,
		n.net, "--datadir="+filepath.Join(n.Dir, "data"), "--logdir="+filepath.Join(n.Dir, "logs"),
		"--configfile="+filepath.Join(n.Dir, "btcd.conf"),
		"--rpclisten="+n.RPCAddr, "--rpcuser="+n.User, "--rpcpass="+n.Pass,
		"--rpccert="+filepath.Join(n.Dir, "rpc.cert"), "--rpckey="+filepath.Join(n.Dir, "rpc.key"),
		"--nolisten", "--txindex", "--miningaddr="+n.MiningAddr.EncodeAddress(), "--debuglevel=info",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group (a stop kills it whole); Pdeathsig kills btcd if the
	// test binary dies without running its cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := os.WriteFile(filepath.Join(n.Dir, "btcd.conf"), nil, 0o600); err != nil {
		n.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("btcdtest: start btcd: %v", err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(cmd, n.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if cert, err := os.ReadFile(filepath.Join(n.Dir, "rpc.cert")); err == nil && len(cert) > 0 {
			if c, err := n.dial(cert); err == nil {
				_, err = c.GetBlockCount()
				c.Shutdown()
				if err == nil {
					n.CertPEM = cert
					return
				}
			}
		}
		select {
		case <-n.exited:
			out, _ := os.ReadFile(filepath.Join(n.Dir, "btcd.out"))
			n.t.Fatalf("btcdtest: btcd exited at start:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("btcdtest: btcd at %s did not answer in 60 s", n.RPCAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills btcd's process group and waits for it; a no-op if it is not
// running. It fails the test if the process outlives the kill.
func (n *Node) Stop() {
	if n.cmd == nil {
		return
	}
	pid := n.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGINT)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-n.exited
	}
	n.cmd = nil
	if err := syscall.Kill(pid, 0); err == nil {
		n.t.Errorf("btcdtest: btcd pid %d still runs after stop", pid)
	}
}

// Pid is btcd's pid, 0 when stopped.
func (n *Node) Pid() int {
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *Node) dial(cert []byte) (*rpcclient.Client, error) {
	return rpcclient.New(&rpcclient.ConnConfig{
		Host: n.RPCAddr, User: n.User, Pass: n.Pass, Certificates: cert,
		HTTPPostMode: true,
	}, nil)
}

// Client is a plain HTTP-POST RPC client for driving the node (generate,
// invalidateblock, sendrawtransaction), closed in cleanup.
func (n *Node) Client() *rpcclient.Client {
	n.t.Helper()
	c, err := n.dial(n.CertPEM)
	if err != nil {
		n.t.Fatalf("btcdtest: rpc client: %v", err)
	}
	n.t.Cleanup(c.Shutdown)
	return c
}

// String names the node for messages.
func (n *Node) String() string { return fmt.Sprintf("btcd %s at %s", Version, n.RPCAddr) }
