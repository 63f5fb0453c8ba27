package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 12 from outside: the real CLI on a module signed 2-of-3 with the
// CLI's own keys. Every file a module ships is signed or refused; verify
// reports what is on disk; files read as root are opened like the binary.

// runCLITimeout is runCLI with a deadline: a FIFO that hangs a command must
// fail the test, not wedge it.
func runCLITimeout(t *testing.T, timeout time.Duration, bin string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %v (stdout %q, stderr %q)", filepath.Base(bin), strings.Join(args, " "), timeout, out.String(), errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliRun{out.String(), errb.String(), code}
}

// checkMark returns "ok" or "FAIL" for the verify report line of check.
func checkMark(report, check string) string {
	for _, l := range strings.Split(report, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[1] == check {
			return f[0]
		}
	}
	return ""
}

func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// The attack on governance-voter, on the hostile module: change the
// shipped config after signing. verify, run and install refuse it, naming
// config.toml and both hashes; operator values would not have hidden it.
func TestRootIntegrityTamperedConfig(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, root := signedHostile(t, bin, "exit", "0")
	cfgPath := filepath.Join(dir, "config.toml")
	signed, _ := os.ReadFile(cfgPath)
	if src, _ := os.ReadFile(filepath.Join(dir, "module.toml")); !bytes.Contains(src, []byte("[config]\nhash = \""+sha256Of(signed)+"\"")) {
		t.Fatalf("sign did not pin config.toml:\n%s", src)
	}
	r := runCLITimeout(t, time.Minute, bin, "verify", "--node-config", nodeConfig, dir)
	if r.code != 0 || checkMark(r.stdout, "config") != "ok" {
		t.Fatalf("verify before tampering: %+v", r)
	}

	evil := bytes.Replace(signed, []byte(`arg = "0"`), []byte(`arg = "9"`), 1)
	os.WriteFile(cfgPath, evil, 0o644)
	want := fmt.Sprintf("%s is %s (%d bytes); [config] pins %s (%d bytes)", cfgPath, sha256Of(evil), len(evil), sha256Of(signed), len(signed))
	r = runCLITimeout(t, time.Minute, bin, "verify", "--node-config", nodeConfig, dir)
	if r.code != 1 || checkMark(r.stdout, "config") != "FAIL" || !strings.Contains(r.stdout, want) || !strings.Contains(r.stderr, want) {
		t.Fatalf("verify with a tampered config: exit %d, want 1 naming\n  %s\nstdout:\n%s\nstderr: %s", r.code, want, r.stdout, r.stderr)
	}
	for _, cmd := range [][]string{{"run", "--node-config", nodeConfig, dir}, {"install", "--node-config", nodeConfig, dir}} {
		r = runCLITimeout(t, time.Minute, bin, cmd...)
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s with a tampered config: %+v", cmd[0], r)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "modules", "hostile")); !os.IsNotExist(err) {
		t.Errorf("a refused install left the module installed: %v", err)
	}

	// An unpinned config.toml (shipped beside a manifest that pins none) is
	// refused too, not merged and not silently dropped.
	os.WriteFile(cfgPath, signed, 0o644)
	src, _ := os.ReadFile(filepath.Join(dir, "module.toml"))
	i, j := bytes.Index(src, []byte("[config]")), bytes.Index(src, []byte("[signatures]"))
	os.WriteFile(filepath.Join(dir, "module.toml"), append(src[:i:i], src[j:]...), 0o644)
	for _, k := range []string{"alice", "carol"} {
		// Re-sign without config.toml, then put it back: the shape of a
		// release that gained a file after it was signed.
		os.Remove(cfgPath)
		if r := runCLITimeout(t, time.Minute, bin, "sign", "--key", filepath.Join(filepath.Dir(dir), k+".key"), dir); r.code != 0 {
			t.Fatalf("re-sign as %s: %+v", k, r)
		}
		os.WriteFile(cfgPath, signed, 0o644)
	}
	r = runCLITimeout(t, time.Minute, bin, "verify", "--node-config", nodeConfig, dir)
	if r.code != 1 || !strings.Contains(r.stderr, cfgPath+" is not pinned by [config]") {
		t.Fatalf("verify with an unpinned config.toml: %+v", r)
	}
}

// verify DIR re-hashes the module dir's binary even when the store holds
// its entry; a load keeps reusing the sealed entry and runs the verified
// bytes.
func TestRootIntegrityVerifyReadsTheDisk(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostile(t, bin, "exit", "0")
	r := runCLITimeout(t, time.Minute, bin, "verify", "--node-config", nodeConfig, dir)
	if r.code != 0 || !strings.Contains(r.stdout, "verified hostile 1.0.0") {
		t.Fatalf("first verify: %+v", r)
	}
	good, _ := os.ReadFile(filepath.Join(dir, "hostile"))
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 0xff // same size: only the hash can tell
	os.WriteFile(filepath.Join(dir, "hostile"), bad, 0o755)

	want := "hash: binary " + sha256Of(bad) + " does not match manifest " + sha256Of(good)
	r = runCLITimeout(t, time.Minute, bin, "verify", "--node-config", nodeConfig, dir)
	if r.code != 1 || checkMark(r.stdout, "hash") != "FAIL" || !strings.Contains(r.stderr, want) || strings.Contains(r.stdout, "already sealed") {
		t.Fatalf("verify after a flipped byte: exit %d, want 1 naming %q\nstdout:\n%s\nstderr: %s", r.code, want, r.stdout, r.stderr)
	}
	// The loader reuses the sealed entry: what runs is the verified binary
	// (it exits 0 as configured), never the flipped file.
	r = runCLITimeout(t, time.Minute, bin, "run", "--node-config", nodeConfig, dir)
	t.Logf("run after the flip: exit %d, stderr %q", r.code, r.stderr)
	if r.code != 0 {
		t.Fatalf("run after a flipped byte, with the entry sealed: %+v; want the sealed bytes run", r)
	}
}

// Each thing that is not a small regular file, planted as module.toml or
// config.toml, is refused at once by every command that reads it, with one
// line on stderr naming the file and the reason. A FIFO must not hang any
// of them.
func TestRootIntegritySpecialFiles(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	plants := []struct {
		name   string
		plant  func(t *testing.T, path string)
		reason string
	}{
		{"symlink", func(t *testing.T, path string) { must(t, os.Symlink("/etc/shadow", path)) }, "is a symlink"},
		{"fifo", func(t *testing.T, path string) { must(t, syscall.Mkfifo(path, 0o644)) }, "is a FIFO, not a regular file"},
		{"device", func(t *testing.T, path string) { must(t, syscall.Mknod(path, syscall.S_IFCHR|0o644, 1<<8|5)) }, "is a character device, not a regular file"}, // /dev/zero
		{"oversize", func(t *testing.T, path string) {
			must(t, os.WriteFile(path, bytes.Repeat([]byte("#"), 1<<20+1), 0o644))
		}, "is 1048577 bytes, over the limit of 1048576 bytes"},
		{"directory", func(t *testing.T, path string) { must(t, os.Mkdir(path, 0o755)) }, "is a directory, not a regular file"},
	}
	for _, file := range []string{"module.toml", "config.toml"} {
		for _, p := range plants {
			t.Run(file+"/"+p.name, func(t *testing.T) {
				dir, nodeConfig, _ := signedHostile(t, bin, "exit", "0")
				path := filepath.Join(dir, file)
				must(t, os.Remove(path))
				p.plant(t, path)
				cmds := [][]string{
					{"verify", "--node-config", nodeConfig, dir},
					{"run", "--node-config", nodeConfig, dir},
					{"install", "--node-config", nodeConfig, dir},
				}
				if file == "module.toml" {
					cmds = append(cmds, []string{"explain", dir}, []string{"sign", "--key", filepath.Join(filepath.Dir(dir), "alice.key"), dir})
				} else {
					cmds = append(cmds, []string{"sign", "--key", filepath.Join(filepath.Dir(dir), "alice.key"), dir})
				}
				for _, cmd := range cmds {
					start := time.Now()
					r := runCLITimeout(t, 20*time.Second, bin, cmd...)
					took := time.Since(start)
					t.Logf("%s: exit %d in %v: %s", cmd[0], r.code, took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
					errLine := strings.TrimSuffix(r.stderr, "\n")
					if r.code == 0 || !strings.Contains(errLine, path+": "+p.reason) || strings.Contains(errLine, "\n") {
						t.Errorf("%s: exit %d, stderr %q; want non-zero and one line naming %q", cmd[0], r.code, r.stderr, path+": "+p.reason)
					}
					if took > 5*time.Second {
						t.Errorf("%s took %v", cmd[0], took)
					}
				}
			})
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
