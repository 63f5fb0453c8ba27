package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

func twoModules() *fakeManager {
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return newFakeManager(
		ModuleInfo{
			Name: "stratum-v2", Version: "1.2.0", State: StateRunning, StartedAt: started, Restarts: 2, LastExit: "exit 1",
			Pid: 4242, MemoryBytes: 12 << 20, MemoryLimit: 256 << 20, CPUNanos: 1_500_000_000, Pids: 3, PidsLimit: 64, OOMKills: 1,
			HubRequests: 100, HubDenied: 7, HubRateLimited: 5, HubInvalid: 4, EventsDelivered: 50, EventsDropped: 3, BadFrames: 2,
			PeerRefused: 6, LogSuppressed: 9, DiskBytes: 4096, DiskBytesLimit: 1 << 30, DiskInodes: 12, DiskInodesLimit: 262144,
		},
		ModuleInfo{Name: "merge-mining", Version: "0.3.1", State: StateStopped, Dependencies: []string{"stratum-v2"}},
	)
}

// raw sends a request the Client would refuse to send.
func raw(t *testing.T, sock, method, path, body string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSocketIsPrivateAndRemoved(t *testing.T) {
	_, sock := serve(t, twoModules())
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode = %04o, want 0700", di.Mode().Perm())
	}
	// The temporary bind directory is gone.
	ents, _ := os.ReadDir(filepath.Dir(sock))
	if len(ents) != 1 {
		t.Errorf("socket dir holds %d entries, want only the socket", len(ents))
	}
	// serve's cleanup checks the socket is removed on shutdown.
}

func TestListenRefusals(t *testing.T) {
	dir := shortDir(t)

	// A stale socket from a daemon that died is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s := NewServer(twoModules(), ServerOptions{Socket: stale, Logger: quietLogger()})
	if err := s.Listen(); err != nil {
		t.Fatalf("stale socket: %v", err)
	}

	// A socket a live daemon answers on is not taken over.
	other := NewServer(twoModules(), ServerOptions{Socket: stale, Logger: quietLogger()})
	if err := other.Listen(); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Errorf("live socket: err = %v, want another daemon", err)
	}
	s.ln.remove()

	// A regular file is not removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	if err := NewServer(twoModules(), ServerOptions{Socket: file, Logger: quietLogger()}).Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: err = %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("regular file was touched")
	}

	// A directory others can write is refused.
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if err := NewServer(twoModules(), ServerOptions{Socket: filepath.Join(open, "a.sock"), Logger: quietLogger()}).Listen(); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable dir: err = %v", err)
	}
}

func TestPeerUIDIsOurs(t *testing.T) {
	dir := shortDir(t)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "p.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", filepath.Join(dir, "p.sock"))
		if err == nil {
			defer c.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uid, err := peerUID(c)
	if err != nil || uid != uint32(os.Geteuid()) {
		t.Errorf("peerUID = %d, %v; want %d", uid, err, os.Geteuid())
	}
}

func TestModules(t *testing.T) {
	m := twoModules()
	c, _ := serve(t, m)
	got, err := c.Modules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m.Modules()) {
		t.Errorf("Modules() =\n%+v\nwant\n%+v", got, m.Modules())
	}

	empty, _ := serve(t, newFakeManager())
	got, err = empty.Modules(context.Background())
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("no modules: %v, %v; want an empty list", got, err)
	}
}

func TestActions(t *testing.T) {
	m := twoModules()
	c, sock := serve(t, m)
	ctx := context.Background()
	tests := []struct {
		do        func(context.Context, string) (*ModuleInfo, error)
		name      string
		wantState string // "" for no longer listed
		wantErr   error
	}{
		{c.Stop, "stratum-v2", StateStopped, nil},
		{c.Stop, "nosuch", "", ErrUnknownModule},
		{c.Start, "stratum-v2", StateRunning, nil},
		{c.Start, "stratum-v2", "", ErrConflict}, // already running
		{c.Restart, "stratum-v2", StateRunning, nil},
		{c.Load, "merge-mining", StateRunning, nil},
		{c.Load, "merge-mining", "", ErrConflict},
		{c.Unload, "merge-mining", "", nil},
		{c.Unload, "merge-mining", "", ErrUnknownModule},
		{c.Load, "Bad_Name", "", ErrInvalid},
	}
	for i, tt := range tests {
		mi, err := tt.do(ctx, tt.name)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%d: %s: err = %v, want %v", i, tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d: %s: %v", i, tt.name, err)
			continue
		}
		switch {
		case tt.wantState == "" && mi != nil:
			t.Errorf("%d: %s: got %+v, want no row", i, tt.name, mi)
		case tt.wantState != "" && (mi == nil || mi.State != tt.wantState || mi.Name != tt.name):
			t.Errorf("%d: %s: got %+v, want state %s", i, tt.name, mi, tt.wantState)
		}
	}
	want := []string{"stop stratum-v2", "start stratum-v2", "start stratum-v2", "restart stratum-v2", "load merge-mining", "load merge-mining", "unload merge-mining"}
	if got := m.callLog(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if mods := m.Modules(); len(mods) != 1 || mods[0].Restarts != 3 {
		t.Errorf("after the actions: %+v", mods)
	}

	// What the Client refuses to send, the server refuses too.
	for _, tt := range []struct {
		method, path, body string
		code               int
		inBody             string
	}{
		{"POST", "/v1/modules/Bad_Name/stop", "", 400, `invalid module name \"Bad_Name\"`},
		{"POST", "/v1/modules/a%2Fb/stop", "", 400, "invalid module name"},
		{"POST", "/v1/modules/nosuch/stop", "", 404, `unknown module \"nosuch\"`},
		{"POST", "/v1/modules/stratum-v2/explode", "", 404, ""},
		{"GET", "/v1/modules/stratum-v2/stop", "", 405, ""},
		{"DELETE", "/v1/modules", "", 405, ""},
		{"GET", "/v1/modules/..%2Fetc/logs", "", 400, "invalid module name"},
		{"POST", "/v1/modules/stratum-v2/cli", `{"command":""}`, 400, "command is required"},
		{"POST", "/v1/modules/stratum-v2/cli", `{"command":"x","shell":true}`, 400, "unknown field"},
		{"POST", "/v1/modules/stratum-v2/cli", strings.Repeat("x", maxBody+1), 400, "body"},
	} {
		code, body := raw(t, sock, tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.inBody) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tt.method, tt.path, code, body, tt.code, tt.inBody)
		}
		if code == 400 || (code == 404 && tt.inBody != "") {
			if strings.Count(strings.TrimSpace(body), "\n") != 0 || !strings.HasPrefix(body, `{"error":`) {
				t.Errorf("%s %s: error body %q is not one line of JSON", tt.method, tt.path, body)
			}
		}
	}
}

func TestStatusOf(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("stop x: %w", ErrUnknownModule), 404},
		{fmt.Errorf("cli x: %w", ErrInvalid), 400},
		{fmt.Errorf("start x: %w: dependency y is not loaded", ErrConflict), 409},
		{fmt.Errorf("load x: %w", context.Canceled), 503},
		{errors.New("cgroup: EBUSY"), 500},
	} {
		if got := statusOf(tt.err); got != tt.want {
			t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestLogs(t *testing.T) {
	m := twoModules()
	dir := shortDir(t)
	path := filepath.Join(dir, "stratum-v2.log")
	m.logs["stratum-v2"] = path
	m.logs["merge-mining"] = filepath.Join(dir, "merge-mining.log") // never written
	c, _ := serve(t, m)
	ctx := context.Background()

	if err := os.WriteFile(path, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Logs(ctx, "stratum-v2", false, &out); err != nil || out.String() != "one\n" {
		t.Errorf("Logs = %q, %v", out.String(), err)
	}
	out.Reset()
	if err := c.Logs(ctx, "merge-mining", false, &out); err != nil || out.Len() != 0 {
		t.Errorf("Logs of a log not yet written = %q, %v; want empty", out.String(), err)
	}
	if err := c.Logs(ctx, "nosuch", false, &out); !errors.Is(err, ErrUnknownModule) {
		t.Errorf("Logs(nosuch) err = %v", err)
	}

	fctx, cancel := context.WithCancel(ctx)
	var follow syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- c.Logs(fctx, "stratum-v2", true, &follow) }()
	wait := func(want string) {
		t.Helper()
		eventually(t, fmt.Sprintf("followed log %q", want), func() bool { return follow.String() == want })
	}
	appendLog := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	wait("one\n")
	appendLog("two\n")
	wait("one\ntwo\n")
	// Rotation as runtime's logFile does it: a last write, rename to .1,
	// a new file.
	appendLog("three\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the follower sees the log missing
	appendLog("four\n")
	wait("one\ntwo\nthree\nfour\n")
	// Truncation in place: read again from the start.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	appendLog("five\n")
	wait("one\ntwo\nthree\nfour\nfive\n")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow ended with %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with its context")
	}
}

func TestCliSpecsAndRunCli(t *testing.T) {
	m := twoModules()
	m.specs["stratum-v2"] = &pb.RegisterCliSpec{Name: "stratum-v2", About: "pool ops", Commands: []*pb.CliCommand{
		{Name: "status", About: "pool status", Usage: "status"},
		{Name: "kick", About: "drop a miner", Usage: "kick MINER"},
	}}
	var gotArgs []string
	m.run = func(module, command string, args []string) (*pb.CliResult, error) {
		if command != "status" {
			return nil, fmt.Errorf("run %s %s: %w: unknown command (the module offers [kick status])", module, command, ErrInvalid)
		}
		gotArgs = args
		return &pb.CliResult{Stdout: []byte("miners: 3\n\xff"), Stderr: []byte("warn\n"), ExitCode: 3}, nil
	}
	c, _ := serve(t, m)
	ctx := context.Background()

	specs, err := c.CliSpecs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || !proto.Equal(specs["stratum-v2"], m.specs["stratum-v2"]) {
		t.Errorf("CliSpecs = %v", specs)
	}

	res, err := c.RunCli(ctx, "stratum-v2", "status", []string{"--verbose", "a b"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "miners: 3\n\xff" || string(res.Stderr) != "warn\n" || res.ExitCode != 3 {
		t.Errorf("RunCli = %q %q %d", res.Stdout, res.Stderr, res.ExitCode)
	}
	if !reflect.DeepEqual(gotArgs, []string{"--verbose", "a b"}) {
		t.Errorf("args = %q", gotArgs)
	}
	if _, err := c.RunCli(ctx, "stratum-v2", "explode", nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "offers [kick status]") {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := c.RunCli(ctx, "nosuch", "status", nil); !errors.Is(err, ErrUnknownModule) {
		t.Errorf("unknown module: %v", err)
	}
}

func TestEvents(t *testing.T) {
	m := twoModules()
	c, _ := serve(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(ctx, func(ev Event) error { got <- ev; return nil })
	}()
	eventually(t, "a subscriber", func() bool { return m.subscribers() == 1 })
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	want := []Event{
		{Time: at, Module: "stratum-v2", Kind: EventLoaded, State: StateRunning},
		{Time: at, Module: "stratum-v2", Kind: EventState, State: StateRestarting, Detail: "exit 1"},
		{Time: at, Module: "merge-mining", Kind: EventUnloaded},
	}
	for _, ev := range want {
		m.publish(ev)
	}
	for i, w := range want {
		select {
		case ev := <-got:
			if !reflect.DeepEqual(ev, w) {
				t.Errorf("event %d = %+v, want %+v", i, ev, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d never arrived", i)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Events after cancel = %v, want nil", err)
	}
	// The request's end reaches the manager: the subscription is dropped.
	eventually(t, "the subscription to end", func() bool { return m.subscribers() == 0 })

	// fn's error ends the stream and is returned.
	stop := errors.New("enough")
	go func() {
		for m.subscribers() == 0 {
			time.Sleep(time.Millisecond)
		}
		m.publish(want[0])
	}()
	if err := c.Events(context.Background(), func(Event) error { return stop }); err != stop {
		t.Errorf("Events = %v, want fn's error", err)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	m := twoModules()
	sock := filepath.Join(shortDir(t), "admin.sock")
	s := NewServer(m, ServerOptions{Socket: sock, Logger: quietLogger()})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	c := &Client{Socket: sock}
	streamed := make(chan error, 1)
	go func() { streamed <- c.Events(context.Background(), func(Event) error { return nil }) }()
	eventually(t, "a subscriber", func() bool { return m.subscribers() == 1 })
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an open event stream held the shutdown up")
	}
	if err := <-streamed; err == nil || !strings.Contains(err.Error(), "closed the stream") {
		t.Errorf("Events after shutdown = %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	c := &Client{Socket: filepath.Join(shortDir(t), "none.sock")}
	_, err := c.Modules(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v, want ErrUnreachable", err)
	}
}

func TestLogsRefusesASymlink(t *testing.T) {
	m := twoModules()
	dir := shortDir(t)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("not a log\n"), 0o600)
	link := filepath.Join(dir, "stratum-v2.log")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	m.logs["stratum-v2"] = link
	c, _ := serve(t, m)
	for _, follow := range []bool{false, true} {
		var out bytes.Buffer
		err := c.Logs(context.Background(), "stratum-v2", follow, &out)
		var api *APIError
		if !errors.As(err, &api) || api.StatusCode != 500 || out.Len() != 0 {
			t.Errorf("logs (follow %v) through a symlink: %v, %q; want a 500 and nothing printed", follow, err, out.String())
		}
	}
}

// slowStop is a manager whose Stop waits to be released and reports
// whether its context was cancelled meanwhile.
type slowStop struct {
	*fakeManager
	entered, release chan struct{}
	ctxErr           chan error
}

func (s *slowStop) Stop(ctx context.Context, name string) error {
	close(s.entered)
	<-s.release
	s.ctxErr <- ctx.Err()
	return nil
}

func TestActionOutlivesTheRequest(t *testing.T) {
	m := &slowStop{fakeManager: twoModules(), entered: make(chan struct{}), release: make(chan struct{}), ctxErr: make(chan error, 1)}
	c, _ := serve(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Stop(ctx, "stratum-v2"); done <- err }()
	<-m.entered
	cancel() // the operator's Ctrl-C
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Stop after cancel = %v", err)
	}
	time.Sleep(20 * time.Millisecond) // let the server notice the client left
	close(m.release)
	if err := <-m.ctxErr; err != nil {
		t.Errorf("the manager's Stop saw %v; an action must not end with its request", err)
	}
}
