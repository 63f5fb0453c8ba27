package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/runtime"
)

// v2ChildEnv makes the re-executed test binary a supervisor that takes its
// host for cgroup v2, so that it claims its place in the unified hierarchy
// (the real one of a v2 host, or the empty one beside v1 on a hybrid
// host), then waits to be killed.
const v2ChildEnv = "BLVM_IT_V2_CHILD"

func init() {
	root := os.Getenv(v2ChildEnv)
	if root == "" {
		return
	}
	host, _ := runtime.DetectHost("/sys/fs/cgroup", root)
	host.CgroupVersion = 2
	if _, err := runtime.NewSupervisor(runtime.Options{Root: root, Shim: os.Getenv("BLVM_IT_SHIM"), Host: host}); err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

// Under cgroup v2 the supervisor moves itself into <own>/supervisor and
// puts its modules' parent at <own>/blvm-sandbox-<hash>; when other
// processes share its cgroup it cannot empty it, stays, and falls back to
// the hierarchy's root.
func TestRootCgroupV2Claim(t *testing.T) {
	requireRoot(t)
	shim, _ := buildBinaries(t)
	hs, err := runtime.Hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(hs, func(h runtime.Hierarchy) bool { return h.Version == 2 })
	if i < 0 {
		t.Skip("no cgroup2 mount here")
	}
	unified := hs[i].Mount
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := func(t *testing.T, cg testCgroup) (*exec.Cmd, string) {
		t.Helper()
		root, err := os.MkdirTemp("", "blvm-v2-")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(root, 0o711)
		t.Cleanup(func() { os.RemoveAll(root) })
		var join []string
		for _, dir := range cg {
			join = append(join, fmt.Sprintf("echo $$ > %q/cgroup.procs", dir))
		}
		cmd := exec.Command("/bin/sh", "-c", strings.Join(join, " && ")+` && exec "$@"`, "sh", exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), v2ChildEnv+"="+root, "BLVM_IT_SHIM="+shim)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line, _ := bufio.NewReader(out).ReadString('\n')
		if !strings.Contains(line, "ready") {
			t.Fatalf("child supervisor: %q", line)
		}
		return cmd, root
	}
	unifiedParent := func(t *testing.T, root string) string {
		dirs, err := runtime.Layout{Root: root}.ModuleCgroups("m")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			if strings.HasPrefix(d, unified+"/") {
				return filepath.Dir(d)
			}
		}
		t.Fatalf("no unified parent recorded: %v", dirs)
		return ""
	}

	t.Run("alone: moves into supervisor", func(t *testing.T) {
		cg := newTestCgroup(t, "blvm-v2-"+randHex(4))
		cmd, root := start(t, cg)
		own := strings.TrimPrefix(cg[unified], unified)
		if got := procCgroup(t, cmd.Process.Pid, ""); got != own+"/"+runtime.SupervisorCgroup {
			t.Errorf("supervisor's unified cgroup %s, want %s/%s", got, own, runtime.SupervisorCgroup)
		}
		want := filepath.Join(cg[unified], runtime.Layout{Root: root}.CgroupParent())
		if got := unifiedParent(t, root); got != want {
			t.Errorf("modules' parent %s, want %s", got, want)
		}
	})

	t.Run("shared: stays and falls back to the root", func(t *testing.T) {
		cg := newTestCgroup(t, "blvm-v2-"+randHex(4))
		sleeper := exec.Command("/bin/sh", "-c", fmt.Sprintf("echo $$ > %q/cgroup.procs && exec sleep 60", cg[unified]))
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
		for try := 0; try < 200 && !slices.Contains(strings.Fields(readFile(t, cg[unified]+"/cgroup.procs")), fmt.Sprint(sleeper.Process.Pid)); try++ {
			time.Sleep(5 * time.Millisecond)
		}
		cmd, root := start(t, cg)
		own := strings.TrimPrefix(cg[unified], unified)
		if got := procCgroup(t, cmd.Process.Pid, ""); got != own {
			t.Errorf("supervisor's unified cgroup %s, want it to stay in %s", got, own)
		}
		want := filepath.Join(unified, runtime.Layout{Root: root}.CgroupParent())
		if got := unifiedParent(t, root); got != want {
			t.Errorf("modules' parent %s, want the root's %s", got, want)
		}
	})
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
