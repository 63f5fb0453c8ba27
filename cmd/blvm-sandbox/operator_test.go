package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// operatorCLI runs the CLI in-process with the operator commands, whether
// or not main's root has them wired yet.
func operatorCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCommand(&out, &errb)
	for _, c := range root.Commands() {
		if c.Name() == "ps" {
			return cli(t, args...)
		}
	}
	addOperatorCommands(root, &out, &errb)
	root.SetArgs(args)
	err := root.Execute()
	// As run does.
	code := exitOK
	var me moduleExit
	var ee *exitError
	switch {
	case err == nil:
	case errors.As(err, &me):
		code = me.code
	case errors.As(err, &ee):
		fmt.Fprintln(&errb, err)
		code = ee.code
	default:
		fmt.Fprintln(&errb, err)
		code = exitBadInput
	}
	return out.String(), errb.String(), code
}

// opManager is a Manager over a fixed table.
type opManager struct {
	mu   sync.Mutex
	mods []admin.ModuleInfo
	log  string
	cli  func(module, command string, args []string) (*pb.CliResult, error)
}

func (m *opManager) Modules() []admin.ModuleInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]admin.ModuleInfo(nil), m.mods...)
}

func (m *opManager) find(name string) (int, error) {
	for i, mi := range m.mods {
		if mi.Name == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: %s", admin.ErrUnknownModule, name)
}

func (m *opManager) setState(name, state string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, err := m.find(name)
	if err == nil {
		m.mods[i].State = state
		if state != admin.StateRunning {
			m.mods[i].Pid = 0
		}
	}
	return err
}

func (m *opManager) Load(_ context.Context, name string) error {
	return m.setState(name, admin.StateRunning)
}

func (m *opManager) Start(_ context.Context, name string) error {
	return m.setState(name, admin.StateRunning)
}

func (m *opManager) Restart(_ context.Context, name string) error {
	return m.setState(name, admin.StateRunning)
}

func (m *opManager) Stop(_ context.Context, name string) error {
	return m.setState(name, admin.StateStopped)
}

func (m *opManager) Unload(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, err := m.find(name)
	if err == nil {
		m.mods = append(m.mods[:i], m.mods[i+1:]...)
	}
	return err
}

func (m *opManager) LogPath(name string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.find(name)
	return m.log, err
}

func (m *opManager) CliSpecs() map[string]*pb.RegisterCliSpec {
	return map[string]*pb.RegisterCliSpec{"stratum-v2": {Name: "stratum-v2", About: "pool operations", Commands: []*pb.CliCommand{
		{Name: "status", About: "miners and shares", Usage: "status [--verbose]"},
	}}}
}

func (m *opManager) RunCli(_ context.Context, module, command string, args []string) (*pb.CliResult, error) {
	m.mu.Lock()
	_, err := m.find(module)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return m.cli(module, command, args)
}

func (m *opManager) Subscribe(ctx context.Context) <-chan admin.Event {
	ch := make(chan admin.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// daemon serves m on a fresh admin socket until the test ends.
func daemon(t *testing.T, m admin.Manager) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	srv := admin.NewServer(m, admin.ServerOptions{Socket: sock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

func exampleModules() *opManager {
	return &opManager{mods: []admin.ModuleInfo{
		{
			Name: "stratum-v2", Version: "1.2.0", State: admin.StateRunning, Pid: 4242,
			StartedAt: time.Now().Add(-(3*time.Hour + 12*time.Minute + 30*time.Second)), Restarts: 2, LastExit: "exit 1",
			MemoryBytes: 12 << 20, MemoryLimit: 256 << 20, CPUNanos: 1_500_000_000, Pids: 3, PidsLimit: 64,
			DiskBytes: 5 << 20, DiskBytesLimit: 900 << 20, DiskInodes: 14, DiskInodesLimit: 262144,
		},
		{Name: "merge-mining", Version: "0.3.1", State: admin.StateStopped, Dependencies: []string{"stratum-v2"}},
		{Name: "governance-voter", Version: "2.0.0", State: admin.StateRefused, Error: "threshold: 1 of 2 signatures count"},
	}}
}

func TestPsTable(t *testing.T) {
	sock := daemon(t, exampleModules())
	out, errOut, code := operatorCLI(t, "--admin-socket", sock, "ps")
	if code != 0 {
		t.Fatalf("ps: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := [][]string{
		{"NAME", "VERSION", "STATE", "UPTIME", "RESTARTS", "MEM", "CPU", "PIDS", "DISK", "INODES", "LAST-EXIT"},
		{"stratum-v2", "1.2.0", "running", "3h12m", "2", "12MiB/256MiB", "1.50s", "3/64", "5MiB/900MiB", "14/262144", "exit", "1"},
		{"merge-mining", "0.3.1", "stopped", "-", "0", "-", "-", "-", "-", "-", "-"},
		{"governance-voter", "2.0.0", "refused", "-", "0", "-", "-", "-", "-", "-", "-"},
		{"governance-voter", "refused:", "threshold:", "1", "of", "2", "signatures", "count"},
	}
	if len(lines) != len(want) {
		t.Fatalf("ps printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); !reflect.DeepEqual(got, w) {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], w)
		}
	}
	// Aligned: each column starts at the same offset on every row.
	for _, col := range []struct{ header, row1 string }{{"STATE", "running"}, {"MEM", "12MiB"}, {"LAST-EXIT", "exit 1"}} {
		if h, r := strings.Index(lines[0], col.header), strings.Index(lines[1], col.row1); h != r {
			t.Errorf("column %s starts at %d in the header and %d in the row:\n%s", col.header, h, r, out)
		}
	}
}

func TestPsJSON(t *testing.T) {
	m := exampleModules()
	m.mods[0].Exit = &admin.Exit{Code: -1, Signal: 9, OOMKilled: true}
	m.mods[0].LastExit = "killed by SIGKILL (out of memory: the cgroup's memory limit was hit)"
	m.mods[1].Exit = &admin.Exit{Code: 3}
	m.mods[1].MemoryLimit = 64 << 20 // configured, kept while stopped
	m.mods[1].MemoryBytes = 5        // stale: a stopped module has no cgroup
	sock := daemon(t, m)
	out, errOut, code := operatorCLI(t, "--admin-socket", sock, "ps", "--json")
	if code != 0 {
		t.Fatalf("ps --json: exit %d: %s", code, errOut)
	}
	var raw struct {
		SchemaVersion int              `json:"schema_version"`
		Modules       []map[string]any `json:"modules"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("ps --json is not the versioned object: %v\n%s", err, out)
	}
	if raw.SchemaVersion != 1 || len(raw.Modules) != 3 {
		t.Fatalf("schema_version %d with %d modules, want 1 and 3:\n%s", raw.SchemaVersion, len(raw.Modules), out)
	}
	// Every field in every state: the key sets are equal, nested ones too.
	keys := func(v map[string]any) []string {
		var ks []string
		for k, x := range v {
			ks = append(ks, k)
			if sub, ok := x.(map[string]any); ok {
				for sk := range sub {
					ks = append(ks, k+"."+sk)
				}
			}
		}
		slices.Sort(ks)
		return ks
	}
	for _, mod := range raw.Modules[1:] {
		if got, want := keys(mod), keys(raw.Modules[0]); !reflect.DeepEqual(got, want) {
			t.Errorf("%v has keys %v, the running module %v", mod["name"], got, want)
		}
	}
	for _, k := range keys(raw.Modules[0]) {
		if strings.Contains(k, "memory") || strings.Contains(k, "disk_bytes") || strings.Contains(k, "disk_limit") {
			if !strings.HasSuffix(k, "_bytes") {
				t.Errorf("size field %s is not named _bytes", k)
			}
		}
	}
	var got psOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	run, stopped, refusedMod := got.Modules[0], got.Modules[1], got.Modules[2]
	if run.MemoryBytes != 12<<20 || run.MemoryLimitBytes != 256<<20 || run.Pid != 4242 || run.StartedAt == nil || run.DiskLimitBytes != 900<<20 {
		t.Errorf("running module: %+v", run)
	}
	if want := (psExit{Reason: "oom-killed", Code: -1, Signal: 9, SignalName: "SIGKILL", Message: m.mods[0].LastExit}); run.LastExit != want {
		t.Errorf("last_exit = %+v, want %+v", run.LastExit, want)
	}
	if want := (psExit{Reason: "exited", Code: 3, Signal: 0}); stopped.LastExit != want {
		t.Errorf("stopped last_exit = %+v, want %+v", stopped.LastExit, want)
	}
	if stopped.StartedAt != nil || stopped.MemoryBytes != 0 || stopped.MemoryLimitBytes != 64<<20 || !reflect.DeepEqual(stopped.Dependencies, []string{"stratum-v2"}) {
		t.Errorf("stopped module: %+v", stopped)
	}
	if refusedMod.LastExit.Reason != "none" || refusedMod.LastExit.Code != -1 || refusedMod.Error == "" || refusedMod.Dependencies == nil {
		t.Errorf("refused module: %+v", refusedMod)
	}
	if !strings.Contains(out, `"started_at": null`) || !strings.Contains(out, `"dependencies": []`) {
		t.Errorf("absent values are not null and []:\n%s", out)
	}

	empty := daemon(t, &opManager{})
	out, _, code = operatorCLI(t, "--admin-socket", empty, "ps", "--json")
	if code != 0 || strings.Join(strings.Fields(out), "") != `{"schema_version":1,"modules":[]}` {
		t.Errorf("ps --json with no modules = %q (exit %d)", out, code)
	}
	out, _, code = operatorCLI(t, "--admin-socket", sock, "ps", "-q")
	if code != 0 || out != "stratum-v2\nmerge-mining\ngovernance-voter\n" {
		t.Errorf("ps -q = %q (exit %d)", out, code)
	}
}

func TestCliPassesTheModulesOutputAndExitCode(t *testing.T) {
	m := exampleModules()
	var gotArgs []string
	m.cli = func(module, command string, args []string) (*pb.CliResult, error) {
		gotArgs = args
		switch command {
		case "status":
			return &pb.CliResult{Stdout: []byte("miners: 3\n"), Stderr: []byte("stale share\n"), ExitCode: 3}, nil
		case "ok":
			return &pb.CliResult{Stdout: []byte("fine\n")}, nil
		case "wide":
			return &pb.CliResult{ExitCode: 256}, nil
		}
		return nil, fmt.Errorf("run %s %s: %w command (the module offers [ok status])", module, command, admin.ErrInvalid)
	}
	sock := daemon(t, m)

	out, errOut, code := operatorCLI(t, "--admin-socket", sock, "cli", "stratum-v2", "status", "--verbose", "-n", "2")
	if code != 3 || out != "miners: 3\n" || errOut != "stale share\n" {
		t.Errorf("cli status = exit %d, stdout %q, stderr %q; want 3, the module's output", code, out, errOut)
	}
	if !reflect.DeepEqual(gotArgs, []string{"--verbose", "-n", "2"}) {
		t.Errorf("the module got args %q", gotArgs)
	}
	out, errOut, code = operatorCLI(t, "--admin-socket", sock, "cli", "stratum-v2", "ok")
	if code != 0 || out != "fine\n" || errOut != "" {
		t.Errorf("cli ok = exit %d, %q, %q", code, out, errOut)
	}
	if _, _, code = operatorCLI(t, "--admin-socket", sock, "cli", "stratum-v2", "wide"); code != 1 {
		t.Errorf("module exit code 256 = exit %d, want 1 (256 would read as success)", code)
	}
	_, errOut, code = operatorCLI(t, "--admin-socket", sock, "cli", "stratum-v2", "explode")
	if code != exitBadInput || !strings.Contains(errOut, "offers [ok status]") {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	_, errOut, code = operatorCLI(t, "--admin-socket", sock, "cli", "nosuch", "status")
	if code != exitBadInput || !strings.Contains(errOut, "nosuch") || !strings.Contains(errOut, "unknown module") {
		t.Errorf("unknown module: exit %d, %q", code, errOut)
	}

	// NAME alone lists the module's commands.
	out, _, code = operatorCLI(t, "--admin-socket", sock, "cli", "stratum-v2")
	if code != 0 || !strings.Contains(out, "status [--verbose]") || !strings.Contains(out, "miners and shares") {
		t.Errorf("cli NAME = exit %d:\n%s", code, out)
	}
	_, errOut, code = operatorCLI(t, "--admin-socket", sock, "cli", "merge-mining")
	if code != exitBadInput || !strings.Contains(errOut, "registered no CLI") {
		t.Errorf("cli of a module without one: exit %d, %q", code, errOut)
	}
}

func TestActionsAndLogs(t *testing.T) {
	m := exampleModules()
	m.log = filepath.Join(t.TempDir(), "stratum-v2.log")
	if err := os.WriteFile(m.log, []byte("block 101\nblock 102\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := daemon(t, m)
	for _, tt := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"stop", "stratum-v2"}, "stratum-v2: stopped\n", 0},
		{[]string{"start", "merge-mining"}, "merge-mining: running\n", 0},
		{[]string{"restart", "merge-mining"}, "merge-mining: running\n", 0},
		{[]string{"unload", "merge-mining"}, "merge-mining: unloaded\n", 0},
		{[]string{"load", "governance-voter"}, "governance-voter: running\n", 0},
		{[]string{"stop", "nosuch"}, "", exitBadInput},
		{[]string{"stop", "Bad_Name"}, "", exitBadInput},
		{[]string{"stop"}, "", exitBadInput},
		{[]string{"logs", "stratum-v2"}, "block 101\nblock 102\n", 0},
		{[]string{"logs", "nosuch"}, "", exitBadInput},
	} {
		out, errOut, code := operatorCLI(t, append([]string{"--admin-socket", sock}, tt.args...)...)
		if code != tt.code || out != tt.out {
			t.Errorf("%v = exit %d, %q (stderr %q); want exit %d, %q", tt.args, code, out, errOut, tt.code, tt.out)
		}
		if tt.code == exitBadInput && len(tt.args) == 2 && !strings.Contains(errOut, tt.args[1]) {
			t.Errorf("%v: the error does not name %s: %q", tt.args, tt.args[1], errOut)
		}
	}
}

func TestDaemonNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	for _, args := range [][]string{{"ps"}, {"stop", "stratum-v2"}, {"logs", "-f", "stratum-v2"}, {"cli", "stratum-v2", "status"}} {
		out, errOut, code := operatorCLI(t, append([]string{"--admin-socket", sock}, args...)...)
		want := "cannot reach the daemon at " + sock + ": is `blvm-sandbox up` running?\n"
		if code != exitRefused || errOut != want || out != "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 1, %q", args, code, errOut, want)
		}
	}
}

func TestAdminSocketFromEnvironment(t *testing.T) {
	sock := daemon(t, exampleModules())
	t.Setenv("BLVM_ADMIN_SOCKET", sock)
	out, errOut, code := operatorCLI(t, "ps")
	if code != 0 || !strings.Contains(out, "stratum-v2") {
		t.Errorf("ps with BLVM_ADMIN_SOCKET: exit %d, %q, %q", code, out, errOut)
	}
}

func TestHumanUnits(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{{0, "0B"}, {512, "512B"}, {1024, "1KiB"}, {1536, "1.5KiB"}, {12 << 20, "12MiB"}, {3<<30 + 400<<20, "3.4GiB"}} {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{{-time.Second, "0s"}, {45 * time.Second, "45s"}, {12*time.Minute + 3*time.Second, "12m03s"}, {3*time.Hour + 12*time.Minute, "3h12m"}, {52 * time.Hour, "2d04h"}} {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := cpuTime(420_000_000); got != "0.42s" {
		t.Errorf("cpuTime = %q", got)
	}
	if got := cpuTime(uint64(75 * time.Second)); got != "1m15s" {
		t.Errorf("cpuTime = %q", got)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"10m", now.Add(-10 * time.Minute), true},
		{"0s", now, true},
		{"2026-12-01T10:00:00Z", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), true},
		{"2026-12-01T10:00:00.5+01:00", time.Date(2026, 12, 1, 9, 0, 0, 5e8, time.UTC), true},
		{"2026-12-01", time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local), true},
		{"2026-12-01 10:30:00", time.Date(2026, 12, 1, 10, 30, 0, 0, time.Local), true},
		{"-5m", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"", time.Time{}, false},
	} {
		got, err := parseSince(c.in, now)
		if (err == nil) != c.ok || (c.ok && !got.Equal(c.want)) {
			t.Errorf("parseSince(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestSafeCompletion(t *testing.T) {
	for in, want := range map[string]bool{
		"stratum-v2": true, "get_info": true, "v1.2:x": true,
		"": false, "a b": false, "x;rm -rf": false, "\x1b[2J": false, "$(id)": false, "é": false,
		strings.Repeat("a", 65): false,
	} {
		if got := safeCompletion(in); got != want {
			t.Errorf("safeCompletion(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestEventsLineCarriesTheDate(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 123e6, time.UTC)
	got := at.Local().Format(eventTimeLayout)
	back, err := time.Parse(eventTimeLayout, got)
	if err != nil || !back.Equal(at) || !strings.HasPrefix(got, at.Local().Format("2006-01-02")) {
		t.Errorf("event time %q does not round-trip to %v: %v", got, at, err)
	}
}
