package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/internal/testbuild"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime"
)

const hostileManifest = `
name = "%s"
version = "1.0.0"
entry_point = "hostile"
capabilities = ["read_blockchain"]
`

// binaries are the shim and the hostile module, built once (testbuild).
var binaries testbuild.Set

func buildBinaries(t *testing.T) (shim, hostile string) {
	t.Helper()
	binaries = testbuild.Static(t)
	return binaries.Shim, binaries.Hostile
}

// sandbox is a supervisor on a fresh root, with a stand-in hub that accepts
// each module's connections and drains them.
type sandbox struct {
	t       *testing.T
	root    string
	sup     *runtime.Supervisor
	host    policy.Host
	hostile string
	cfg     *nodeconfig.Config
}

// newSandbox makes the sandbox; tune, if given, changes the supervisor's
// options first.
func newSandbox(t *testing.T, restart runtime.RestartPolicy, tune ...func(*runtime.Options)) *sandbox {
	t.Helper()
	requireRoot(t)
	shim, hostile := buildBinaries(t)
	root, err := os.MkdirTemp("", "blvm-rt-")
	if err != nil {
		t.Fatal(err)
	}
	host, err := runtime.DetectHost("/sys/fs/cgroup", root)
	if err != nil {
		t.Fatal(err)
	}
	opts := runtime.Options{
		Root: root, Shim: shim, Host: host, Grace: time.Second, Ready: 10 * time.Second, Restart: restart,
	}
	for _, f := range tune {
		f(&opts)
	}
	sup, err := runtime.NewSupervisor(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &sandbox{t: t, root: root, sup: sup, host: host, hostile: hostile, cfg: nodeconfig.Default()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.sup.Close(ctx); err != nil {
			t.Errorf("close supervisor: %v", err)
		}
		orphans, err := runtime.Layout{Root: root}.Orphans()
		if err != nil || len(orphans) > 0 {
			t.Errorf("orphans after close: %v %v", orphans, err)
		}
		os.RemoveAll(root)
	})
	return s
}

func (s *sandbox) compile(name string) *policy.Policy {
	s.t.Helper()
	p, err := s.compileErr(name)
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

// compileErr compiles the hostile module's manifest under the name given.
func (s *sandbox) compileErr(name string) (*policy.Policy, error) {
	m, err := manifest.ParseBytes("module.toml", []byte(fmt.Sprintf(hostileManifest, name)))
	if err != nil {
		return nil, err
	}
	cat, err := capabilities.Default()
	if err != nil {
		return nil, err
	}
	set, err := cat.Resolve(m, s.cfg)
	if err != nil {
		return nil, err
	}
	return policy.Compile(m, set, s.cfg, s.host)
}

func nodeDefault() *nodeconfig.Config { return nodeconfig.Default() }

// drainHub stands in for the hub: it accepts and reads until closed, and
// counts a start as up at its first byte (the hub: at its Hello).
func drainHub(ln net.Listener, _ int, ready func()) error {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				var first [1]byte
				if n, _ := c.Read(first[:]); n > 0 {
					ready()
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return nil
}

// outcome is what one hostile run produced.
type outcome struct {
	res    hostileResult
	exit   runtime.ExitReason
	stdout string
	stderr string
}

type hostileResult struct {
	Attack string            `json:"attack"`
	Errno  string            `json:"errno"`
	Count  int64             `json:"count"`
	Info   map[string]string `json:"info"`
}

// start loads the hostile module with one attack and returns at once.
func (s *sandbox) start(name, attack, arg string, out, errw io.Writer) error {
	config := fmt.Sprintf("attack = %q\narg = %q\n", attack, arg)
	return s.sup.Start(context.Background(), runtime.Module{
		Policy: s.compile(name), Binary: s.hostile, Config: []byte(config),
		Serve: drainHub, Stdout: out, Stderr: errw,
	})
}

// attack runs the hostile module with one attack to its end.
func (s *sandbox) attack(attack, arg string) outcome { return s.runAs("hostile", attack, arg) }

// runAs runs the hostile module under name with one attack to its end.
func (s *sandbox) runAs(name, attack, arg string) outcome {
	s.t.Helper()
	var out, errw syncbuf.Buffer
	if err := s.start(name, attack, arg, &out, &errw); err != nil {
		s.t.Fatalf("start %s %s: %v", name, attack, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exit, err := s.sup.Wait(ctx, name)
	if err != nil {
		s.t.Fatalf("wait %s: %v", name, err)
	}
	s.sup.Stop(ctx, name)
	o := outcome{exit: exit, stdout: out.String(), stderr: errw.String()}
	sc := bufio.NewScanner(strings.NewReader(o.stdout))
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &o.res) == nil {
			break
		}
	}
	return o
}

func TestRootContainerSmoke(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	o := s.attack("env", "")
	t.Logf("exit %v\nstdout %s\nstderr %s", o.exit, o.stdout, o.stderr)
	if o.res.Errno != "ok" {
		t.Fatalf("env probe did not run: %+v", o)
	}
}
