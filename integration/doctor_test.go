package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/runtime"
)

type doctorOut struct {
	Verdict string          `json:"verdict"`
	Checks  []runtime.Check `json:"checks"`
}

func runDoctor(t *testing.T, bin string, args ...string) (doctorOut, cliRun) {
	t.Helper()
	r := runCLI(t, bin, append([]string{"doctor", "--json"}, args...)...)
	var out doctorOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("doctor --json: %v\nstdout %q\nstderr %q", err, r.stdout, r.stderr)
	}
	return out, r
}

func check(t *testing.T, out doctorOut, name string) runtime.Check {
	t.Helper()
	for _, c := range out.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("doctor has no %q row: %+v", name, out.Checks)
	return runtime.Check{}
}

// doctor's rows agree with what the host says through other means, a
// failing row makes it exit 1, and --pid reads another process's cgroup.
func TestRootDoctor(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	out, r := runDoctor(t, bin, "--shim", binaries.Shim)
	for _, c := range out.Checks {
		if c.Verdict == runtime.VerdictFail {
			t.Errorf("row %q fails on this host: %+v", c.Name, c)
		}
	}
	if r.code != 0 || out.Verdict == "fail" {
		t.Fatalf("doctor on this host: exit %d, verdict %s\n%s", r.code, out.Verdict, r.stderr)
	}

	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	wantV := "v1"
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		wantV = "v2"
	}
	if v := check(t, out, "cgroup version").Value; !strings.HasPrefix(v, wantV) {
		t.Errorf("cgroup version %q, statfs says %s", v, wantV)
	}
	abi, _ := llsys.LandlockGetABIVersion()
	if v := check(t, out, "landlock").Value; v != "ABI "+strconv.Itoa(abi) {
		t.Errorf("landlock %q, the kernel says ABI %d", v, abi)
	}
	if v := check(t, out, "landlock shim").Value; v != binaries.Shim {
		t.Errorf("shim %q, want %s", v, binaries.Shim)
	}
	for _, name := range []string{"privileges", "cgroup controllers", "cgroup delegation", "user namespaces", "seccomp", "storage quota"} {
		if c := check(t, out, name); c.Value == "" {
			t.Errorf("row %q has no value", name)
		}
	}

	t.Run("a failing row exits 1", func(t *testing.T) {
		out, r := runDoctor(t, bin, "--shim", filepath.Join(t.TempDir(), "no-shim"))
		if r.code != 1 || out.Verdict != "fail" || check(t, out, "landlock shim").Verdict != runtime.VerdictFail {
			t.Fatalf("missing shim: exit %d verdict %s row %+v", r.code, out.Verdict, check(t, out, "landlock shim"))
		}
		// As nobody: not root.
		cmd := exec.Command(bin, "doctor", "--json", "--shim", binaries.Shim)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		b, err := cmd.Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("doctor as nobody: %v, want exit 1\n%s", err, b)
		}
		var nobody doctorOut
		if err := json.Unmarshal(b, &nobody); err != nil {
			t.Fatal(err)
		}
		if c := check(t, nobody, "privileges"); c.Verdict != runtime.VerdictFail || c.Value != "uid 65534" {
			t.Errorf("privileges as nobody: %+v", c)
		}
	})

	t.Run("--pid reads that process's cgroup", func(t *testing.T) {
		cg := newTestCgroup(t, "blvm-doctor-"+randHex(4))
		var join []string
		for _, dir := range cg {
			join = append(join, "echo $$ > "+dir+"/cgroup.procs")
		}
		sleeper := exec.Command("/bin/sh", "-c", strings.Join(join, " && ")+" && exec sleep 60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
		mine, _ := os.ReadFile("/proc/self/cgroup")
		for deadline := 0; deadline < 200; deadline++ {
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/cgroup"); strings.Contains(string(b), "blvm-doctor-") {
				break
			}
			unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
		}
		out, _ := runDoctor(t, bin, "--shim", binaries.Shim, "--pid", strconv.Itoa(sleeper.Process.Pid))
		c := check(t, out, "cgroup delegation")
		if !strings.Contains(c.Value, "blvm-doctor-") {
			t.Errorf("delegation for pid %d: %+v, want its test cgroup (ours: %s)", sleeper.Process.Pid, c, mine)
		}
	})
}
