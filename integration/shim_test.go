package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// shimChildEnv makes the test binary, started through the shim, report what
// Landlock lets it do.
const shimChildEnv = "BLVM_SHIM_PROBE"

func init() {
	// Runs before TestMain: the probe must not start the test framework.
	switch os.Getenv(shimChildEnv) {
	case "fs":
		check := func(name string, err error) { os.Stdout.WriteString(name + "=" + errno(err) + "\n") }
		_, err := os.ReadFile("/etc/hostname")
		check("read-inside", err)
		_, err = os.ReadFile("/root/.profile")
		check("read-outside", err)
		err = os.WriteFile("/var/tmp/blvm-shim-probe", []byte("x"), 0o600)
		check("write-outside", err)
		err = syscall.Exec("/usr/bin/true", []string{"true"}, nil)
		check("exec-other", err)
		os.Exit(0)
	case "x32":
		syscall.RawSyscall(unix.SYS_GETPID|0x40000000, 0, 0, 0)
		os.Stdout.WriteString("survived\n")
		os.Exit(0)
	}
}

func errno(err error) string {
	var e syscall.Errno
	if err == nil {
		return "ok"
	}
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}

// buildShim builds the static shim into a temporary directory.
func buildShim(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "blvm-landlock-shim")
	cmd := exec.Command("go", "build", "-o", out, "github.com/blvm/blvm-sandbox/cmd/blvm-landlock-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build shim: %v\n%s", err, b)
	}
	return out
}

func shimCmd(shim, self, mode string) *exec.Cmd {
	// The test binary links libc dynamically, so the loader's directories
	// are readable and executable too; everything else stays outside.
	cmd := exec.Command(shim, "--min-abi", "6",
		"--allow", "execute,read_file:"+self,
		"--allow", "execute,read_file,read_dir:/lib",
		"--allow", "execute,read_file,read_dir:/lib64",
		"--allow", "execute,read_file,read_dir:/usr/lib",
		"--allow", "read_file,read_dir:/etc",
		"--scope", "abstract_unix_socket", "--scope", "signal",
		"--", self)
	cmd.Env = append(os.Environ(), shimChildEnv+"="+mode)
	return cmd
}

func TestRootShimLandlock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (reads /root to prove it is outside the rules)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, err := shimCmd(buildShim(t), self, "fs").CombinedOutput()
	if err != nil {
		t.Fatalf("shim: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"read-inside=ok",
		"read-outside=" + syscall.EACCES.Error(),
		"write-outside=" + syscall.EACCES.Error(),
		"exec-other=" + syscall.EACCES.Error(),
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("want %q in probe output:\n%s", want, got)
		}
	}
}

// TestRootShimKillsX32 proves the shim's stacked filter kills the whole
// (multi-threaded) process on an x32 syscall.
func TestRootShimKillsX32(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, err := runWithTimeout(shimCmd(buildShim(t), self, "x32"), 5*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("x32 getpid: err %v, output %q: want death by SIGSYS", err, out)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("x32 getpid: %v, want killed by SIGSYS (a timeout means only a thread died)", err)
	}
}

func TestShimRefusesHighABI(t *testing.T) {
	shim := buildShim(t)
	err := exec.Command(shim, "--min-abi", "11", "--", "/bin/true").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 126 {
		t.Fatalf("shim with --min-abi above the kernel: %v, want exit 126", err)
	}
}
