package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/testbuild"
	"github.com/blvm/blvm-sandbox/runtime"
)

// The run command's contract, checked from outside: the real binary, a
// module signed 2-of-3 by keys made with the CLI, the exit code passed
// through, and nothing left behind.

// buildCLI builds blvm-sandbox beside the shim, where it looks for it.
func buildCLI(t *testing.T) string {
	t.Helper()
	buildBinaries(t)
	return testbuild.Build(t, "blvm-sandbox", "cmd/blvm-sandbox", true)
}

type cliRun struct {
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, bin string, args ...string) cliRun {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliRun{out.String(), errb.String(), code}
}

// signedHostile writes the hostile module with one attack into a module
// dir, signs it 2-of-3 with fresh keys, and writes a node config pinning
// all three keys under a fresh runtime root.
func signedHostile(t *testing.T, bin, attack, arg string) (dir, nodeConfig, root string) {
	t.Helper()
	return signedHostileWith(t, bin, attack, arg, []string{"read_blockchain"})
}

// signedHostileWith is signedHostile declaring caps.
func signedHostileWith(t *testing.T, bin, attack, arg string, caps []string) (dir, nodeConfig, root string) {
	t.Helper()
	base, err := os.MkdirTemp("", "blvm-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o711) // the modules' uids search their way to the runtime root
	dir, root = filepath.Join(base, "hostile"), filepath.Join(base, "root")
	os.MkdirAll(dir, 0o755)
	hostileBin, _ := os.ReadFile(binaries.Hostile)
	os.WriteFile(filepath.Join(dir, "hostile"), hostileBin, 0o755)
	os.WriteFile(filepath.Join(dir, "module.toml"), []byte(`name = "hostile"
version = "1.0.0"
entry_point = "hostile"
capabilities = `+capList(caps)+`

[config_schema]
attack = "the attack to make"
arg = "its argument"
`), 0o644)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf("attack = %q\narg = %q\n", attack, arg)), 0o644)
	var pins []string
	for _, name := range []string{"alice", "bob", "carol"} {
		r := runCLI(t, bin, "keys", "generate", "--out", filepath.Join(base, name+".key"))
		if r.code != 0 {
			t.Fatalf("keys generate: %+v", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		pins = append(pins, fmt.Sprintf("  { name = %q, public_key = %q },", name, lines[len(lines)-1]))
	}
	for _, name := range []string{"alice", "carol"} {
		r := runCLI(t, bin, "sign", "--key", filepath.Join(base, name+".key"), "--binary", filepath.Join(dir, "hostile"), "--threshold", "2-of-3", dir)
		if r.code != 0 {
			t.Fatalf("sign: %+v", r)
		}
	}
	nodeConfig = filepath.Join(base, "node.toml")
	os.WriteFile(nodeConfig, []byte("[paths]\nroot = \""+root+"\"\n\n[trust]\nthreshold = \"2-of-3\"\nmaintainers = [\n"+strings.Join(pins, "\n")+"\n]\n"), 0o644)
	return dir, nodeConfig, root
}

func capList(caps []string) string {
	q := make([]string, len(caps))
	for i, c := range caps {
		q[i] = fmt.Sprintf("%q", c)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func TestRootRunCommand(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	for _, c := range []struct {
		attack, arg string
		args        []string
		code        int
		stdout      string // substring
		stderr      string // substring
	}{
		{attack: "exit", arg: "7", code: 7},
		{attack: "env", code: 0, stdout: `"BLVM_MODULE_NAME":"hostile"`},
		{attack: "mem-bomb", code: 137, stderr: "out of memory"},
		{attack: "ignore-term", arg: "60s", args: []string{"--timeout", "500ms"}, code: 137, stderr: "context deadline exceeded"},
	} {
		t.Run(c.attack, func(t *testing.T) {
			dir, nodeConfig, root := signedHostile(t, bin, c.attack, c.arg)
			r := runCLI(t, bin, append(append([]string{"run", "--node-config", nodeConfig}, c.args...), dir)...)
			if r.code != c.code || !strings.Contains(r.stdout, c.stdout) || !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("run %s: exit %d, want %d\nstdout %q (want %q)\nstderr %q (want %q)", c.attack, r.code, c.code, r.stdout, c.stdout, r.stderr, c.stderr)
			}
			if left, err := (runtime.Layout{Root: root}).Orphans(); err != nil || len(left) != 0 {
				t.Errorf("left behind: %v %v", left, err)
			}
		})
	}
}

// A module whose binary changed after signing never runs.
func TestRootRunRefusesTamperedBinary(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostile(t, bin, "exit", "0")
	// Same size, one byte different: only the hash can tell.
	f, _ := os.OpenFile(filepath.Join(dir, "hostile"), os.O_WRONLY, 0)
	st, _ := f.Stat()
	f.WriteAt([]byte{0xff}, st.Size()-1)
	f.Close()
	r := runCLI(t, bin, "run", "--node-config", nodeConfig, dir)
	if r.code != 1 || !strings.Contains(r.stderr, "hash") {
		t.Fatalf("tampered binary: exit %d, stderr %q; want 1 naming the hash", r.code, r.stderr)
	}
}

// install verifies, then copies the verified bytes into the modules dir;
// a tampered module is refused and nothing lands there.
func TestRootInstall(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, root := signedHostile(t, bin, "exit", "0")
	modules := filepath.Join(root, "modules")
	r := runCLI(t, bin, "install", "--node-config", nodeConfig, dir)
	if r.code != 0 || !strings.Contains(r.stdout, "installed hostile 1.0.0") {
		t.Fatalf("install: %+v", r)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "hostile"))
	got, err := os.ReadFile(filepath.Join(modules, "hostile", "hostile"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed binary differs: %v", err)
	}
	for _, f := range []string{"module.toml", "config.toml"} {
		if _, err := os.Stat(filepath.Join(modules, "hostile", f)); err != nil {
			t.Errorf("%s not installed: %v", f, err)
		}
	}
	// Tamper, reinstall: refused, and the installed copy is untouched.
	f, _ := os.OpenFile(filepath.Join(dir, "hostile"), os.O_WRONLY, 0)
	st, _ := f.Stat()
	f.WriteAt([]byte{0xff}, st.Size()-1)
	f.Close()
	// With the sealed entry in the store, the tampered file is never read:
	// what gets installed are the bytes that were verified.
	r = runCLI(t, bin, "install", "--node-config", nodeConfig, dir)
	got, _ = os.ReadFile(filepath.Join(modules, "hostile", "hostile"))
	if r.code != 0 || !bytes.Equal(got, want) {
		t.Fatalf("install with a sealed entry: %+v; installed the verified bytes: %v", r, bytes.Equal(got, want))
	}
	os.RemoveAll(filepath.Join(root, "store")) // now the module's own file must be hashed
	r = runCLI(t, bin, "install", "--node-config", nodeConfig, dir)
	if r.code != 1 || !strings.Contains(r.stderr, "hash") {
		t.Fatalf("tampered install: %+v", r)
	}
	got, _ = os.ReadFile(filepath.Join(modules, "hostile", "hostile"))
	if !bytes.Equal(got, want) {
		t.Fatal("a refused install changed the installed module")
	}
}
