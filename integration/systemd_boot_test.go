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

// privateSystemd is systemd booted as pid 1 of private pid, mount, ipc,
// uts and net namespaces, in a test cgroup, with a private /run and
// /var/lib. It runs the installed unit exactly as written, plus a drop-in
// for what a machine without journald or a notifying daemon lacks.
type privateSystemd struct {
	t    *testing.T
	base string // host side of the namespace's /mnt (the install) and /run
	cg   testCgroup
	cmd  *exec.Cmd
	pid1 int // systemd, as the host sees it
}

// bootScript runs inside the namespaces, before systemd.
const bootScript = `set -e
mount --make-rprivate /
# Only a proc of this pid namespace, as on a host: a fully visible proc
# elsewhere (under the old /proc, or a build host's extra views of it)
# would let containers mount proc where a host would refuse.
for m in $(awk '$9 == "proc" && $5 != "/proc" { print $5 }' /proc/self/mountinfo); do umount -l "$m"; done
umount -l /proc
mount -t proc proc /proc
mount --bind "$BASE/run" /run
mkdir -p /run/systemd/system /run/uids
cp -r "$BASE/units/." /run/systemd/system/
# The uid registry is host-wide: keep the real one behind the private /var/lib.
mkdir -p /var/lib/blvm-sandbox-uids
mount --bind /var/lib/blvm-sandbox-uids /run/uids
mount -t tmpfs tmpfs /var/lib
mkdir -p /var/lib/blvm-sandbox-uids
mount --bind /run/uids /var/lib/blvm-sandbox-uids
umount -l /run/uids
mount --bind "$BASE/dest/mnt" /mnt
exec env container=blvm-test /lib/systemd/systemd --system --unit=blvm-test.target --log-target=console --log-level=warning
`

func bootSystemd(t *testing.T, base string, cg testCgroup) *privateSystemd {
	t.Helper()
	join := []string{}
	for _, dir := range cg {
		join = append(join, fmt.Sprintf("echo $$ > %q/cgroup.procs", dir))
	}
	script := strings.Join(join, " && ") + ` && exec unshare --fork --pid --mount --ipc --uts --net /bin/sh -c "$0"`
	s := &privateSystemd{t: t, base: base, cg: cg}
	s.cmd = exec.Command("/bin/sh", "-c", script, bootScript)
	s.cmd.Env = append(os.Environ(), "BASE="+base)
	log, _ := os.Create(filepath.Join(base, "systemd.log"))
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	// systemd is the unshare's only child.
	for deadline := time.Now().Add(10 * time.Second); s.pid1 == 0; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", s.cmd.Process.Pid, s.cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) == 1 {
			if comm, _ := os.ReadFile("/proc/" + f[0] + "/comm"); strings.TrimSpace(string(comm)) == "systemd" {
				s.pid1, _ = strconv.Atoi(f[0])
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(base, "systemd.log"))
			t.Fatalf("systemd did not come up:\n%s", out)
		}
	}
	return s
}

// systemctl runs systemctl inside the namespaces.
func (s *privateSystemd) systemctl(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(s.pid1), "-m", "-p", "systemctl", "--no-pager"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// hostPid translates a pid in systemd's pid namespace (what the daemon
// reports) to the host's: the process below systemd whose NSpid in
// /proc/<pid>/status has nsPid at the namespace's level.
func (s *privateSystemd) hostPid(nsPid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
				if ids := strings.Fields(f); len(ids) >= 2 && ids[1] == strconv.Itoa(nsPid) && s.below(pid) {
					return pid
				}
			}
		}
	}
	return 0
}

// below reports whether pid descends from systemd.
func (s *privateSystemd) below(pid int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return false
		}
		ppid := 0
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(f))
			}
		}
		if ppid == s.pid1 {
			return true
		}
		pid = ppid
	}
	return false
}

// gone reports whether pid has exited (or is a zombie), at once.
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && strings.HasPrefix(string(b[i+1:]), " Z")
}

func procFile(t *testing.T, pid int, name string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *privateSystemd) kill() {
	if s.pid1 != 0 {
		// SIGKILL to a pid namespace's init ends every process in it.
		syscall.Kill(s.pid1, syscall.SIGKILL)
	}
	s.cmd.Wait()
	// systemd leaves its slices and scopes: leaves first.
	for _, dir := range s.cg {
		var dirs []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != dir {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
	s.pid1 = 0
}

// The hardened unit, installed by make install and started by a real
// systemd, runs the daemon and its modules: the modules' containers start
// under the unit's capability bounding set, NoNewPrivileges, ProtectSystem,
// PrivateTmp, PrivateNetwork, the unit's seccomp filters and device policy,
// and their cgroups sit below the unit's own.
func TestRootDaemonUnderSystemdUnit(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"/lib/systemd/systemd", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not here: the unit is not exercised", tool)
		}
	}
	d := newDaemon(t)
	base := t.TempDir()
	os.Chmod(base, 0o711)
	dest := filepath.Join(base, "dest")
	cmd := exec.Command("make", "install", "DESTDIR="+dest, "PREFIX=/mnt/usr/local", "SYSCONFDIR=/mnt/etc")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	// The signed modules, seen at /mnt/d inside; the daemon's root is the
	// unit's StateDirectory.
	if err := os.MkdirAll(filepath.Join(dest, "mnt/d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("cp", "-a", filepath.Join(d.dir, "modules"), filepath.Join(dest, "mnt/d/")).Run(); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(d.dir, "node.toml"))
	if err != nil {
		t.Fatal(err)
	}
	unitCfg := strings.NewReplacer(fmt.Sprintf("root = %q", d.root), `root = "/var/lib/blvm-sandbox"`, d.dir, "/mnt/d").Replace(string(cfg))
	// The crasher holds instead: unlike the SDK's examples it does not
	// exit when the hub goes, so only its cgroup can take it down.
	unitCfg += "\n[modules.crasher]\nattack = \"sleep\"\narg = \"1h\"\n"
	if err := os.WriteFile(filepath.Join(dest, "mnt/etc/blvm-sandbox/node.toml"), []byte(unitCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	units := filepath.Join(base, "units")
	os.MkdirAll(filepath.Join(units, "blvm-sandbox.service.d"), 0o755)
	unit, err := os.ReadFile(filepath.Join(dest, "mnt/usr/local/lib/systemd/system/blvm-sandbox.service"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(units, "blvm-sandbox.service"), unit, 0o644)
	os.WriteFile(filepath.Join(units, "blvm-test.target"), []byte("[Unit]\nDefaultDependencies=no\nWants=blvm-sandbox.service\n"), 0o644)
	// No journald here, and a boot of its own: no sysinit.target.
	dropIn := "[Unit]\nDefaultDependencies=no\n[Service]\nStandardOutput=append:/run/blvm-daemon.log\nStandardError=append:/run/blvm-daemon.log\n"
	os.WriteFile(filepath.Join(units, "blvm-sandbox.service.d", "test.conf"), []byte(dropIn), 0o644)
	os.MkdirAll(filepath.Join(base, "run"), 0o755)

	cg := newTestCgroup(t, "blvm-sd-"+randHex(4))
	sd := bootSystemd(t, base, cg)
	client := &admin.Client{Socket: filepath.Join(base, "run/blvm-sandbox/admin.sock")}
	daemonLog := func() string {
		b, _ := os.ReadFile(filepath.Join(base, "run/blvm-daemon.log"))
		st, _ := sd.systemctl("status", "blvm-sandbox")
		return string(b) + "\n" + st
	}
	var mods []admin.ModuleInfo
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mods, err = client.Modules(context.Background())
		running := err == nil
		for _, m := range append(exampleModules, "crasher") {
			running = running && state(mods, m).State == "running"
		}
		if running {
			break
		}
		refused := err == nil && (state(mods, "block-logger").State == "refused" || state(mods, "stratum-v2").State == "refused")
		if refused || time.Now().After(deadline) {
			t.Fatalf("modules not running under the unit: %v %+v\n%s", err, mods, daemonLog())
		}
	}
	for _, m := range exampleModules {
		if st := state(mods, m); st.State != "running" {
			t.Errorf("%s under the unit: %+v", m, st)
		}
	}

	// The module's cgroup is below the daemon's own in memory, pids and
	// name=systemd (v1) or the unified hierarchy (v2), and the daemon's is
	// the unit's.
	parent := runtime.Layout{Root: "/var/lib/blvm-sandbox"}.CgroupParent()
	pid := sd.hostPid(state(mods, "block-logger").Pid)
	out, _ := sd.systemctl("show", "-p", "MainPID", "--value", "blvm-sandbox")
	mainNS, _ := strconv.Atoi(strings.TrimSpace(out))
	main := sd.hostPid(mainNS)
	if pid == 0 || main == 0 {
		t.Fatalf("no host pids for block-logger (%d) or the daemon (%q)", state(mods, "block-logger").Pid, out)
	}
	ctls := []string{"memory", "pids", "name=systemd"}
	if v2 := !strings.Contains(procFile(t, pid, "cgroup"), ":memory:"); v2 {
		ctls = []string{""}
	} else if strings.Contains(procFile(t, pid, "cgroup"), "\n0::") {
		ctls = append(ctls, "") // hybrid: systemd tracks the unit there
	}
	for _, ctl := range ctls {
		daemonCg, moduleCg := procCgroup(t, main, ctl), procCgroup(t, pid, ctl)
		if moduleCg != daemonCg+"/"+parent+"/block-logger" && moduleCg != filepath.Dir(daemonCg)+"/"+parent+"/block-logger" {
			t.Errorf("%q: block-logger is in %s, the daemon in %s: want the module below the daemon's own", ctl, moduleCg, daemonCg)
		}
		if (ctl == "name=systemd" || ctl == "") && !strings.Contains(daemonCg, "/system.slice/blvm-sandbox.service") {
			t.Errorf("%q: the daemon is in %s, not in the unit's cgroup", ctl, daemonCg)
		}
	}
	t.Logf("daemon cgroups:\n%s\nmodule cgroups:\n%s", procFile(t, main, "cgroup"), procFile(t, pid, "cgroup"))

	t.Run("Type=notify: active once ready, with a status line", func(t *testing.T) {
		out, err := sd.systemctl("show", "-p", "ActiveState", "-p", "StatusText", "blvm-sandbox")
		if err != nil || !strings.Contains(out, "ActiveState=active") || !strings.Contains(out, "StatusText=") || strings.Contains(out, "StatusText=\n") {
			t.Errorf("systemctl show: %v\n%s", err, out)
		}
	})

	t.Run("systemctl reload applies a good config and refuses a bad one", func(t *testing.T) {
		conf := filepath.Join(dest, "mnt/etc/blvm-sandbox/node.toml")
		before := state(mods, "block-logger").Pid
		if out, err := sd.systemctl("reload", "blvm-sandbox"); err != nil {
			t.Fatalf("reload of an unchanged config: %v\n%s\n%s", err, out, daemonLog())
		}
		if err := os.WriteFile(conf, []byte(unitCfg+"\n[sandbox]\nno_such_key = 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := sd.systemctl("reload", "blvm-sandbox")
		if err == nil {
			t.Errorf("reload of a bad config succeeded:\n%s", out)
		}
		if err := os.WriteFile(conf, []byte(unitCfg), 0o644); err != nil {
			t.Fatal(err)
		}
		mods, err = client.Modules(context.Background())
		if err != nil || state(mods, "block-logger").Pid != before || state(mods, "block-logger").State != "running" {
			t.Errorf("after the reloads block-logger is %+v (pid %d before): %v", state(mods, "block-logger"), before, err)
		}
		if st, _ := sd.systemctl("show", "-p", "ActiveState", "--value", "blvm-sandbox"); strings.TrimSpace(st) != "active" {
			t.Errorf("after a refused reload the unit is %q", st)
		}
	})

	t.Run("a daemon crash takes its modules with it", func(t *testing.T) {
		// KillMode=mixed: once the main process is gone systemd kills the
		// rest of the unit's cgroup, modules included.
		pid := sd.hostPid(state(mods, "crasher").Pid)
		if pid == 0 {
			t.Fatalf("no host pid for the crasher (%d)", state(mods, "crasher").Pid)
		}
		if err := syscall.Kill(main, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// It must be gone before the restarted daemon (Restart=on-failure)
		// could have recovered it as an orphan.
		for {
			if gone(pid) {
				break
			}
			out, _ := sd.systemctl("show", "-p", "MainPID", "--value", "blvm-sandbox")
			if n, _ := strconv.Atoi(strings.TrimSpace(out)); n != 0 && n != mainNS {
				t.Fatalf("module pid %d outlived the daemon's SIGKILL until the daemon restarted\n%s", pid, procFile(t, pid, "cgroup"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Restart=on-failure brings the daemon and its modules back.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			mods, err = client.Modules(context.Background())
			if err == nil && state(mods, "block-logger").State == "running" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not restarted: %v %+v\n%s", err, mods, daemonLog())
			}
		}
	})
	pid = sd.hostPid(state(mods, "block-logger").Pid)

	if out, err := sd.systemctl("stop", "blvm-sandbox"); err != nil {
		t.Fatalf("systemctl stop: %v\n%s\n%s", err, out, daemonLog())
	}
	if alive(pid) {
		t.Errorf("module pid %d outlived systemctl stop", pid)
	}
	logText := daemonLog()
	if !strings.Contains(logText, "stopped cleanly") {
		t.Errorf("the daemon did not stop cleanly under the unit:\n%s", logText)
	}
	t.Logf("daemon under the unit:\n%s", logText)
}
