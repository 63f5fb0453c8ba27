package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// hostileText holds one of each thing that would draw on a terminal: CR
// and erase line over a FAIL, an OSC title, concealed text, a C1 CSI (raw
// and UTF-8), an OSC 52 clipboard write, a bidi override, DEL and a byte
// that is not UTF-8.
const hostileText = "FAIL\r\x1b[2K\x1b]0;pwned\x07ok \x1b[8mhidden\x1b[0m \u009b2J \x9b \x1b]52;c;cm0gLXJm\x07 \u202eelif\x7f\xff\n"

// controls reports every thing in b a terminal would act on, apart from
// the newline and tab when layout is allowed.
func controls(b []byte, layout bool) []string {
	var found []string
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			found = append(found, fmt.Sprintf("byte %#x at %d", b[i], i))
		case layout && (r == '\n' || r == '\t'):
		case r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			found = append(found, fmt.Sprintf("%U at %d", r, i))
		}
		i += size
	}
	return found
}

// pty opens a pseudo-terminal whose output is passed as written (no
// newline translation) and returns the terminal and a function that
// closes it and returns everything written to it.
func pty(t *testing.T) (*os.File, func() []byte) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	term, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	tio, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(int(term.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, master) // ends with EIO once the terminal side is closed
		got <- b.Bytes()
	}()
	return term, func() []byte {
		term.Close()
		select {
		case b := <-got:
			master.Close()
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("the terminal never drained")
			return nil
		}
	}
}

// hostileManager is an opManager whose modules write hostile text
// everywhere they can: CLI specs, CLI results, logs, errors and events.
type hostileManager struct{ *opManager }

func (hostileManager) CliSpecs() map[string]*pb.RegisterCliSpec {
	return map[string]*pb.RegisterCliSpec{"stratum-v2": {Name: "stratum-v2", About: "pool\x1b]0;pwned\x07 ops\r\x1b[2K", Commands: []*pb.CliCommand{
		{Name: "status\x1b[8m", About: "miners\u009b2J", Usage: "status\r\x1b[2Kverified \u202e"},
	}}}
}

func (hostileManager) Subscribe(ctx context.Context) <-chan admin.Event {
	ch := make(chan admin.Event, 1)
	ch <- admin.Event{Time: time.Now(), Kind: "crash\x1b[2K", Module: "stratum-v2\r", State: "failed\u009b", Detail: hostileText}
	close(ch)
	return ch
}

func hostileModules(t *testing.T) hostileManager {
	m := exampleModules()
	m.mods[2].Error = "threshold: " + hostileText
	m.mods[1].Version = "0.3.1\x1b[8m"
	m.log = filepath.Join(t.TempDir(), "stratum-v2.log")
	if err := os.WriteFile(m.log, []byte("block 101\n"+hostileText+"\tend\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.cli = func(module, command string, args []string) (*pb.CliResult, error) {
		return &pb.CliResult{Stdout: []byte("miners: 3\n" + hostileText), Stderr: []byte("warn " + hostileText)}, nil
	}
	return hostileManager{m}
}

// TestCliEscapesOnATerminal: cli prints the module's output escaped when
// stdout (and stderr) is a terminal, unchanged into a pipe and with --raw,
// and always escapes the CLI spec it lists.
func TestCliEscapesOnATerminal(t *testing.T) {
	sock := daemon(t, hostileModules(t))
	args := []string{"--admin-socket", sock, "cli", "stratum-v2", "status"}

	term, drain := pty(t)
	code := run(args, term, term)
	got := drain()
	if code != 0 {
		t.Fatalf("cli on a terminal: exit %d: %q", code, got)
	}
	if c := controls(got, true); len(c) != 0 {
		t.Errorf("cli on a terminal let through %v:\n%q", c, got)
	}
	for _, want := range []string{"miners: 3\n", `FAIL\r\x1b[2K\x1b]0;pwned\x07ok`, `\u009b2J \x9b`, `\u202eelif\x7f\xff`, "warn FAIL"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("cli on a terminal lacks %q:\n%q", want, got)
		}
	}

	// Into a pipe the output is data: passed unchanged.
	out, errOut, code := cli(t, args...)
	if code != 0 || out != "miners: 3\n"+hostileText || errOut != "warn "+hostileText {
		t.Errorf("cli into a pipe = exit %d, %q, %q; want the module's bytes", code, out, errOut)
	}
	// --raw opts out on a terminal.
	term, drain = pty(t)
	code = run([]string{"--admin-socket", sock, "cli", "--raw", "stratum-v2", "status"}, term, term)
	if got := drain(); code != 0 || !bytes.Contains(got, []byte(hostileText)) {
		t.Errorf("cli --raw on a terminal = exit %d, %q; want the raw bytes", code, got)
	}

	// The listing is always escaped.
	out, _, code = cli(t, "--admin-socket", sock, "cli", "stratum-v2")
	if c := controls([]byte(out), true); code != 0 || len(c) != 0 {
		t.Errorf("cli NAME = exit %d, let through %v:\n%q", code, c, out)
	}
	if !strings.Contains(out, `pool\x1b]0;pwned\x07 ops\r\x1b[2K`) || !strings.Contains(out, `status\r\x1b[2Kverified \u202e`) {
		t.Errorf("cli NAME does not show the spec escaped:\n%s", out)
	}
}

// TestLogsEscapeEvenIntoAPipe: logs escapes the module's bytes whether or
// not stdout is a terminal; --raw prints them as captured.
func TestLogsEscapeEvenIntoAPipe(t *testing.T) {
	sock := daemon(t, hostileModules(t))
	out, errOut, code := cli(t, "--admin-socket", sock, "logs", "stratum-v2")
	if code != 0 {
		t.Fatalf("logs: exit %d: %s", code, errOut)
	}
	if c := controls([]byte(out), true); len(c) != 0 {
		t.Errorf("logs let through %v:\n%q", c, out)
	}
	if !strings.HasPrefix(out, "block 101\nFAIL\\r\\x1b[2K") || !strings.HasSuffix(out, "\\x7f\\xff\n\tend\n") {
		t.Errorf("logs = %q; want the lines kept, each control escaped", out)
	}
	term, drain := pty(t)
	code = run([]string{"--admin-socket", sock, "logs", "stratum-v2"}, term, term)
	if got := drain(); code != 0 || string(got) != out {
		t.Errorf("logs on a terminal = exit %d, %q; want %q", code, got, out)
	}
	raw, _, code := cli(t, "--admin-socket", sock, "logs", "--raw", "stratum-v2")
	if code != 0 || raw != "block 101\n"+hostileText+"\tend\n" {
		t.Errorf("logs --raw = exit %d, %q; want the captured bytes", code, raw)
	}
}

// TestPsAndEventsEscape: what the daemon reports about a module (its
// version, its error, an event's detail) is escaped in tables and JSON.
func TestPsAndEventsEscape(t *testing.T) {
	sock := daemon(t, hostileModules(t))
	for _, args := range [][]string{{"ps"}, {"ps", "--json"}, {"events"}, {"events", "--json"}} {
		out, errOut, _ := cli(t, append([]string{"--admin-socket", sock}, args...)...)
		if !strings.Contains(out, "FAIL") {
			t.Errorf("%v printed no module text: %q %q", args, out, errOut)
		}
		if c := controls([]byte(out), true); len(c) != 0 {
			t.Errorf("%v let through %v:\n%q", args, c, out)
		}
		if c := controls([]byte(errOut), true); len(c) != 0 {
			t.Errorf("%v stderr let through %v:\n%q", args, c, errOut)
		}
		// Tables: one line per row, the module's newline included.
		if args[len(args)-1] == "ps" && strings.Count(out, "\n") != 5 {
			t.Errorf("ps printed %d lines, want 5:\n%s", strings.Count(out, "\n"), out)
		}
	}
}

// TestHostileMaintainerNameIsRefused: a maintainer name sits outside the
// signed view, so rewriting it keeps every signature valid. One built to
// draw a fake all-ok report is refused at its line by verify, and explain
// shows it escaped, saying the load would be refused.
func TestHostileMaintainerNameIsRefused(t *testing.T) {
	dir, nodeConfig, root := signedModule(t)
	path := filepath.Join(dir, "module.toml")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	forged := `name = "alice\r\u001b[2K\u001b[1A\u001b[2Kok  threshold  2 of 3\nverified probe 1.0.0\u001b[8m"`
	i := bytes.Index(src, []byte(`name = "alice"`))
	if i < 0 {
		t.Fatalf("no maintainer alice in\n%s", src)
	}
	line := bytes.Count(src[:i], []byte("\n")) + 1
	src = bytes.Replace(src, []byte(`name = "alice"`), []byte(forged), 1)
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := cli(t, "verify", "--node-config", nodeConfig, "--root", root, dir)
	if code != exitRefused {
		t.Errorf("verify = exit %d, want 1 (refused)\n%s%s", code, out, errOut)
	}
	want := fmt.Sprintf("module.toml:%d: signatures.maintainers[0].name: ", line)
	if !strings.Contains(out+errOut, want) || !strings.Contains(out+errOut, "not a valid maintainer name") {
		t.Errorf("verify does not name %s:\n%s%s", want, out, errOut)
	}
	if strings.Contains(out, "verified probe") && !strings.Contains(out, `\nverified probe`) {
		t.Errorf("verify printed a verified line:\n%s", out)
	}
	for _, s := range []string{out, errOut} {
		if c := controls([]byte(s), true); len(c) != 0 {
			t.Errorf("verify let through %v:\n%q", c, s)
		}
	}

	out, errOut, code = cli(t, "explain", "--node-config", nodeConfig, "--arch", "amd64", "--landlock-abi", "6", "--cgroup-version", "2", dir)
	if c := controls([]byte(out+errOut), true); len(c) != 0 {
		t.Errorf("explain let through %v:\n%q", c, out+errOut)
	}
	if code != 0 || !strings.Contains(out, "the load would be refused") || !strings.Contains(out, want) {
		t.Errorf("explain = exit %d; want the policy and the refusal at %s:\n%s%s", code, want, out, errOut)
	}
}
