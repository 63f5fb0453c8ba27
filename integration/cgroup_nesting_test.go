package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/runtime"
)

// testCgroup is a cgroup made for one test in every hierarchy, below the
// test's own cgroup (so the test never leaves the cgroups it was given).
type testCgroup map[string]string // mountpoint -> directory

func newTestCgroup(t *testing.T, name string) testCgroup {
	t.Helper()
	hs, err := runtime.Hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	cg := testCgroup{}
	for _, h := range hs {
		dir := filepath.Join(h.Dir(), name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("make test cgroup: %v", err)
		}
		cg[h.Mount] = dir
		// A v1 cpuset starts empty and takes no process until given its
		// parent's cpus and memory nodes.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h.Dir(), f)); err == nil && h.Version == 1 {
				os.WriteFile(filepath.Join(dir, f), b, 0)
			}
		}
	}
	t.Cleanup(func() {
		for _, dir := range cg {
			// Leaves first: a supervisor leaf (v2) may sit inside.
			os.Remove(filepath.Join(dir, runtime.SupervisorCgroup))
			if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
				t.Errorf("test cgroup left behind: %v", err)
			}
		}
	})
	return cg
}

// startIn runs the daemon with its process placed in cg from its first
// instruction: a shell joins every hierarchy, then execs the daemon.
func (d *daemon) startIn(cg testCgroup) {
	d.t.Helper()
	var join []string
	for _, dir := range cg {
		join = append(join, fmt.Sprintf("echo $$ > %q/cgroup.procs", dir))
	}
	script := strings.Join(join, " && ") + ` && exec "$@"`
	d.cmd = exec.Command("/bin/sh", "-c", script, "sh", d.bin, "up", "--config", filepath.Join(d.dir, "node.toml"),
		"--admin-socket", d.client.Socket, "--block-interval", "300ms", "--shutdown-timeout", "30s")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.waitFor("every module running", func(mods []admin.ModuleInfo) bool {
		for _, m := range append(exampleModules, "crasher") {
			if state(mods, m).State != "running" || state(mods, m).Pid == 0 {
				return false
			}
		}
		return true
	})
}

// procCgroup is pid's cgroup in the hierarchy whose controller list
// contains ctl ("" for v2), from /proc/<pid>/cgroup.
func procCgroup(t *testing.T, pid int, ctl string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (ctl == "" && parts[1] == "" || ctl != "" && strings.Contains(","+parts[1]+",", ","+ctl+",")) {
			return parts[2]
		}
	}
	t.Fatalf("pid %d: no %q hierarchy in /proc/%d/cgroup:\n%s", pid, ctl, pid, b)
	return ""
}

// The daemon's modules live below the daemon's own cgroup, in the memory
// and pids hierarchies (v1) or the unified one (v2); a stopped module's
// cgroup is removed; after the daemon dies by SIGKILL, a daemon started in
// another cgroup finds the orphans where the dead one put them.
func TestRootDaemonCgroupsNestBelowOwn(t *testing.T) {
	d := newDaemon(t)
	// The crasher holds instead, so that a module outlives the daemon's
	// SIGKILL (the SDK's examples exit when the hub goes).
	f, err := os.OpenFile(filepath.Join(d.dir, "node.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n[modules.crasher]\nattack = \"sleep\"\narg = \"1h\"\n")
	f.Close()
	name := "blvm-it-" + randHex(4)
	first := newTestCgroup(t, name+"-a")
	d.startIn(first)
	ctx := context.Background()
	parent := runtime.Layout{Root: d.root}.CgroupParent()

	v2 := false
	var st syscall.Statfs_t
	if syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 {
		v2 = true
	}
	ctls := []string{"memory", "pids"}
	if v2 {
		ctls = []string{""}
	}
	// wantBelow checks from the host that pid sits in cg/<parent>/<module>
	// and that the directory lists it.
	wantBelow := func(cg testCgroup, module string, pid int) {
		t.Helper()
		for _, ctl := range ctls {
			mnt := "/sys/fs/cgroup/" + ctl
			if v2 {
				mnt = "/sys/fs/cgroup"
			}
			dir, ok := cg[filepath.Clean(mnt)]
			if !ok {
				t.Fatalf("no test cgroup in %s: %v", mnt, cg)
			}
			want := filepath.Join(dir, parent, module)
			got := filepath.Join(mnt, procCgroup(t, pid, ctl))
			if got != want {
				t.Errorf("%s: module %s (pid %d) is in %s, want %s", mnt, module, pid, got, want)
			}
			procs, err := os.ReadFile(filepath.Join(want, "cgroup.procs"))
			if err != nil || !strings.Contains(" "+strings.Join(strings.Fields(string(procs)), " ")+" ", " "+strconv.Itoa(pid)+" ") {
				t.Errorf("%s/cgroup.procs does not list pid %d: %q %v", want, pid, procs, err)
			}
		}
	}
	mods, err := d.client.Modules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldPid := state(mods, "block-logger").Pid
	wantBelow(first, "block-logger", oldPid)
	// The figures come from the nested cgroup.
	if m := state(mods, "block-logger"); m.MemoryBytes == 0 {
		t.Errorf("block-logger: memory %d bytes; its stats are not read from its cgroup", m.MemoryBytes)
	}

	t.Run("a stopped module's cgroup is removed", func(t *testing.T) {
		if _, err := d.client.Stop(ctx, "block-logger"); err != nil {
			t.Fatal(err)
		}
		for _, dir := range first {
			leaf := filepath.Join(dir, parent, "block-logger")
			if _, err := os.Stat(leaf); !os.IsNotExist(err) {
				t.Errorf("%s after stop: %v, want it gone", leaf, err)
			}
		}
		if _, err := d.client.Start(ctx, "block-logger"); err != nil {
			t.Fatal(err)
		}
		mods := d.waitFor("block-logger running again", func(mods []admin.ModuleInfo) bool {
			return state(mods, "block-logger").State == "running" && state(mods, "block-logger").Pid > 0
		})
		oldPid = state(mods, "block-logger").Pid
		wantBelow(first, "block-logger", oldPid)
	})

	t.Run("orphans found after a SIGKILL, from another cgroup", func(t *testing.T) {
		mods := d.waitFor("crasher holding", func(mods []admin.ModuleInfo) bool {
			return state(mods, "crasher").State == "running" && state(mods, "crasher").Pid > 0
		})
		oldPid := state(mods, "crasher").Pid
		wantBelow(first, "crasher", oldPid)
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if !alive(oldPid) {
			t.Fatalf("module pid %d died with the daemon; nothing to recover", oldPid)
		}
		// Without libcontainer's state only the cgroup sweep can find
		// the orphan: it must look where the dead daemon put it.
		if err := os.RemoveAll(runtime.Layout{Root: d.root}.ContainersDir()); err != nil {
			t.Fatal(err)
		}
		second := newTestCgroup(t, name+"-b")
		d.startIn(second)
		deadline := time.Now().Add(5 * time.Second)
		for alive(oldPid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(oldPid) {
			t.Errorf("orphan module pid %d survived the new daemon's recovery", oldPid)
		}
		for mnt, dir := range first {
			if _, err := os.Stat(filepath.Join(dir, parent)); !os.IsNotExist(err) {
				t.Errorf("%s: the dead daemon's module cgroups are still there (%v)", mnt, err)
			}
		}
		mods, err = d.client.Modules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantBelow(second, "block-logger", state(mods, "block-logger").Pid)
		d.stop()
		for mnt, dir := range second {
			if _, err := os.Stat(filepath.Join(dir, parent)); !os.IsNotExist(err) {
				t.Errorf("%s: module cgroups left after a clean stop (%v)", mnt, err)
			}
		}
	})
}
