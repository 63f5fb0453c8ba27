package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
)

// The CLI an operator expects (issue 13, item 6), from outside: the real
// binary, and a real daemon where one is needed.

func TestRootCLIVersion(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	r := runCLI(t, bin, "version", "--json")
	if r.code != 0 {
		t.Fatalf("version --json: %+v", r)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("version --json is not JSON: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"version", "commit", "commit_time", "modified", "go_version", "libseccomp", "seccomp_api", "landlock_abi"} {
		if _, ok := v[k]; !ok {
			t.Errorf("version --json lacks %q: %s", k, r.stdout)
		}
	}
	// The host's and the toolchain's facts, read here independently.
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil {
		abi = 0
	}
	if got := v["landlock_abi"]; got != float64(abi) {
		t.Errorf("landlock_abi = %v, the host says %d", got, abi)
	}
	if got := v["go_version"]; got != goruntime.Version() {
		t.Errorf("go_version = %v, built with %s", got, goruntime.Version())
	}
	if out, err := exec.Command("pkg-config", "--modversion", "libseccomp").Output(); err == nil {
		if want := strings.TrimSpace(string(out)); v["libseccomp"] != want {
			t.Errorf("libseccomp = %v, pkg-config says %s", v["libseccomp"], want)
		}
	}
	// The commit is the binary's own VCS stamp, as `go version -m` reads it.
	stamp := ""
	if out, err := exec.Command("go", "version", "-m", bin).Output(); err == nil {
		if m := regexp.MustCompile(`(?m)^\s+build\s+vcs\.revision=(\S+)$`).FindSubmatch(out); m != nil {
			stamp = string(m[1])
		}
	}
	if c, _ := v["commit"].(string); c != stamp {
		t.Errorf("commit %q, the binary's stamp says %q", c, stamp)
	}
	r = runCLI(t, bin, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "blvm-sandbox ") || !strings.Contains(r.stdout, "landlock ABI "+strconv.Itoa(abi)) || !strings.Contains(r.stdout, goruntime.Version()) {
		t.Errorf("--version: %+v", r)
	}
}

// install: 0 installed, 1 refused, 2 bad input (README's exit codes).
func TestRootCLIInstallExitCodes(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostile(t, bin, "exit", "0")
	empty := t.TempDir()
	for _, c := range []struct {
		name string
		dir  string
		code int
	}{
		{"missing dir", filepath.Join(empty, "nope"), 2},
		{"dir without module.toml", empty, 2},
		{"a file, not a dir", filepath.Join(dir, "hostile"), 2},
		{"good", dir, 0},
	} {
		r := runCLI(t, bin, "install", "--node-config", nodeConfig, c.dir)
		if r.code != c.code {
			t.Errorf("install %s: exit %d, want %d: %s", c.name, r.code, c.code, r.stderr)
		}
	}
	// A changed signature field is a refusal, not bad input.
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("attack = \"exit\"\narg = \"9\"\n"), 0o644)
	if r := runCLI(t, bin, "install", "--node-config", nodeConfig, dir); r.code != 1 {
		t.Errorf("install of a changed config: exit %d, want 1: %s", r.code, r.stderr)
	}
}

// A module whose container cannot start (runc's init cannot fork under a
// pids limit of 1) never ran: run exits 125, as its help says.
func TestRootCLIRunNeverStarted(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostile(t, bin, "exit", "0")
	cfg, _ := os.ReadFile(nodeConfig)
	os.WriteFile(nodeConfig, append(cfg, "\n[limits]\npids = 1\n"...), 0o644)
	r := runCLI(t, bin, "run", "--node-config", nodeConfig, "--timeout", "20s", dir)
	if r.code != 125 {
		t.Fatalf("run of a module that cannot start: exit %d, want 125\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
}

// psJSON is `ps --json` as a script reads it.
type psJSON struct {
	SchemaVersion int              `json:"schema_version"`
	Modules       []map[string]any `json:"modules"`
}

func (d *daemon) cli(args ...string) cliRun {
	d.t.Helper()
	return runCLI(d.t, d.bin, append([]string{"--admin-socket", d.client.Socket}, args...)...)
}

func (d *daemon) pid(name string) int {
	d.t.Helper()
	mods, err := d.client.Modules(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return state(mods, name).Pid
}

func keySet(m map[string]any) []string {
	var ks []string
	for k, v := range m {
		ks = append(ks, k)
		if sub, ok := v.(map[string]any); ok {
			for sk := range sub {
				ks = append(ks, k+"."+sk)
			}
		}
	}
	slices.Sort(ks)
	return ks
}

func TestRootCLIDaemon(t *testing.T) {
	d := newDaemon(t)
	d.start()
	// The crasher exits 1 at once until the supervisor gives up on it.
	d.waitFor("the crasher failed", func(mods []admin.ModuleInfo) bool { return state(mods, "crasher").State == admin.StateFailed })

	// Events watched from before the actions below.
	var events syncbuf.Buffer
	ev := exec.Command(d.bin, "--admin-socket", d.client.Socket, "events")
	ev.Stdout = &events
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ev.Process.Kill(); ev.Wait() }()
	time.Sleep(200 * time.Millisecond)

	t.Run("ps -q", func(t *testing.T) {
		r := d.cli("ps", "-q")
		want := append(slices.Clone(exampleModules), "crasher")
		slices.Sort(want)
		got := strings.Fields(r.stdout)
		slices.Sort(got)
		if r.code != 0 || !slices.Equal(got, want) {
			t.Errorf("ps -q: %q (exit %d), want %v", r.stdout, r.code, want)
		}
	})

	t.Run("ps --json", func(t *testing.T) {
		r := d.cli("ps", "--json")
		var ps psJSON
		if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil || r.code != 0 {
			t.Fatalf("ps --json: %v (exit %d)\n%s", err, r.code, r.stdout)
		}
		if ps.SchemaVersion != 1 {
			t.Errorf("schema_version = %d, want 1", ps.SchemaVersion)
		}
		byName := map[string]map[string]any{}
		for _, m := range ps.Modules {
			byName[m["name"].(string)] = m
		}
		run, crash := byName["block-logger"], byName["crasher"]
		if run == nil || crash == nil {
			t.Fatalf("ps --json lacks block-logger or crasher:\n%s", r.stdout)
		}
		// Every field in every state: a running and a failed module carry
		// the same keys.
		if a, b := keySet(run), keySet(crash); !slices.Equal(a, b) {
			t.Errorf("keys differ by state:\nrunning %v\nfailed  %v", a, b)
		}
		if run["memory_bytes"].(float64) <= 0 || run["memory_limit_bytes"].(float64) <= 0 || run["pid"].(float64) <= 0 || run["started_at"] == nil {
			t.Errorf("running module's figures: %v", run)
		}
		le := crash["last_exit"].(map[string]any)
		if le["reason"] != "exited" || le["code"] != float64(1) || le["signal"] != float64(0) {
			t.Errorf("crasher's last_exit = %v, want reason exited, code 1, signal 0", le)
		}
		if crash["state"] != "failed" || crash["started_at"] != nil || crash["pid"] != float64(0) {
			t.Errorf("failed module: %v", crash)
		}
	})

	t.Run("stop start restart several", func(t *testing.T) {
		names := []string{"block-logger", "governance-voter"}
		before := map[string]int{}
		for _, n := range names {
			before[n] = d.pid(n)
		}
		if r := d.cli(append([]string{"restart"}, names...)...); r.code != 0 || strings.Count(r.stdout, "running") != 2 {
			t.Fatalf("restart %v: %+v", names, r)
		}
		for _, n := range names {
			if p := d.pid(n); p == 0 || p == before[n] {
				t.Errorf("%s: pid %d after restart, was %d", n, p, before[n])
			}
		}
		if r := d.cli(append([]string{"stop"}, names...)...); r.code != 0 {
			t.Fatalf("stop %v: %+v", names, r)
		}
		mods, _ := d.client.Modules(context.Background())
		for _, n := range names {
			if s := state(mods, n).State; s != admin.StateStopped {
				t.Errorf("%s is %s after stop, want stopped", n, s)
			}
		}
		// An unknown name in the middle: the others are still started,
		// the exit code says bad input.
		r := d.cli("start", names[0], "no-such-module", names[1])
		if r.code != 2 || !strings.Contains(r.stderr, "no-such-module") {
			t.Errorf("start with an unknown name: %+v, want exit 2 naming it", r)
		}
		d.waitFor("both started again", func(mods []admin.ModuleInfo) bool {
			return state(mods, names[0]).State == admin.StateRunning && state(mods, names[1]).State == admin.StateRunning
		})
	})

	t.Run("logs", func(t *testing.T) {
		// block-logger logs a line per block; wait for a few.
		deadline := time.Now().Add(20 * time.Second)
		var all []string
		for time.Now().Before(deadline) {
			r := d.cli("logs", "--timestamps", "block-logger")
			if r.code != 0 {
				t.Fatalf("logs --timestamps: %+v", r)
			}
			all = strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if len(all) >= 4 {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if len(all) < 4 {
			t.Fatalf("block-logger logged %d lines", len(all))
		}
		var stamps []time.Time
		for _, l := range all {
			ts, _, ok := strings.Cut(l, " ")
			at, err := time.Parse(time.RFC3339Nano, ts)
			if !ok || err != nil || time.Since(at) > 10*time.Minute || time.Until(at) > time.Second {
				t.Fatalf("logs --timestamps line without a current stamp: %q", l)
			}
			stamps = append(stamps, at)
		}
		plain := d.cli("logs", "block-logger").stdout
		if strings.Contains(plain, stamps[0].UTC().Format("2006-01-02T15:04:05")) {
			t.Errorf("logs without --timestamps shows the stamps:\n%s", plain)
		}
		r := d.cli("logs", "--tail", "2", "--timestamps", "block-logger")
		tail := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if r.code != 0 || len(tail) != 2 {
			t.Fatalf("logs --tail 2: %d lines (exit %d):\n%s", len(tail), r.code, r.stdout)
		}
		// The tail ends where the whole log ended (or later: it grows).
		if !slices.Contains(all, tail[0]) && !tailAfter(tail[0], stamps[len(stamps)-1]) {
			t.Errorf("logs --tail 2 starts with %q, not among the last lines", tail[0])
		}
		since := stamps[len(stamps)-2]
		r = d.cli("logs", "--timestamps", "--since", since.Format(time.RFC3339Nano), "block-logger")
		for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
			ts, _, _ := strings.Cut(l, " ")
			if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || at.Before(since) {
				t.Errorf("logs --since %s printed %q", since.Format(time.RFC3339Nano), l)
			}
		}
		if r.code != 0 || !strings.Contains(r.stdout, all[len(all)-1]) {
			t.Errorf("logs --since lacks the last line %q:\n%s", all[len(all)-1], r.stdout)
		}
		if r := d.cli("logs", "--since", "yesterday-ish", "block-logger"); r.code != 2 {
			t.Errorf("logs --since garbage: exit %d, want 2", r.code)
		}
	})

	t.Run("completion", func(t *testing.T) {
		r := d.cli("__complete", "stop", "block-logger", "")
		if r.code != 0 || !strings.Contains(r.stdout, "stratum-v2") || strings.Contains(r.stdout, "block-logger\t") {
			t.Errorf("completing stop's names: %+v", r)
		}
		r = d.cli("__complete", "logs", "gov")
		if !strings.Contains(r.stdout, "governance-voter") || strings.Contains(r.stdout, "stratum-v2") {
			t.Errorf("completing logs gov: %q", r.stdout)
		}
		r = d.cli("__complete", "st")
		for _, want := range []string{"start", "stop"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("completing commands: %q lacks %s", r.stdout, want)
			}
		}
		r = d.cli("__complete", "explain", "--format", "")
		for _, want := range []string{"json", "oci", "bpf"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("completing --format: %q lacks %s", r.stdout, want)
			}
		}
		// No daemon: nothing offered, nothing said, exit 0.
		r = runCLI(t, d.bin, "--admin-socket", filepath.Join(t.TempDir(), "none.sock"), "__complete", "stop", "")
		if r.code != 0 || strings.Contains(r.stdout, "stratum") || strings.Contains(r.stdout, "daemon") {
			t.Errorf("completion without a daemon: %+v", r)
		}
		if r := runCLI(t, d.bin, "completion", "bash"); r.code != 0 || !strings.Contains(r.stdout, "__start_blvm-sandbox") {
			t.Errorf("completion bash: exit %d", r.code)
		}
	})

	t.Run("events carry a date", func(t *testing.T) {
		for _, verb := range []string{"stop", "start"} {
			if r := d.cli(verb, "merge-mining"); r.code != 0 {
				t.Fatalf("%s merge-mining: %+v", verb, r)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(events.String(), "merge-mining") < 2 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		sc := bufio.NewScanner(strings.NewReader(events.String()))
		n := 0
		for sc.Scan() {
			n++
			f := strings.Fields(sc.Text())
			at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", f[0])
			if err != nil || time.Since(at) > 10*time.Minute {
				t.Errorf("event line without a current date: %q (%v)", sc.Text(), err)
			}
		}
		if n == 0 {
			t.Error("no events seen for the stops and starts")
		}
	})
}

// tailAfter reports whether a stamped line is stamped at or after t.
func tailAfter(line string, t time.Time) bool {
	ts, _, _ := strings.Cut(line, " ")
	at, err := time.Parse(time.RFC3339Nano, ts)
	return err == nil && !at.Before(t)
}
