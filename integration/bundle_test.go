package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/audit/live"
	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/internal/ocischema"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/runtime"
)

// TestBundle writes the hostile module as an OCI bundle with the CLI, runs
// it unchanged under Debian's runc and crun with the project's hub serving
// the socket, and checks from the host that the module connected and is
// confined as the daemon would confine it.
func TestBundle(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	for i, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			path, err := exec.LookPath(rt)
			if err != nil {
				t.Skipf("%s not installed", rt)
			}
			var r ociRunner
			if rt == "crun" {
				cr, err := newCrunNamespace(t)
				if err != nil {
					t.Fatal(err)
				}
				r = cr
			} else {
				r = hostRunner{}
			}
			// Far above the daemon's ranges, one per runtime.
			base := uint32(0x40000000 + i*runtime.IDsPerModule)
			runBundle(t, bin, path, r, base, "blvm-bundle-test-"+rt)
		})
	}
}

// ociRunner starts runtime commands, on the host or from a private mount
// namespace.
type ociRunner interface {
	start(cmd *exec.Cmd) error
	cleanupCgroup(path string) error
}

type hostRunner struct{}

func (hostRunner) start(cmd *exec.Cmd) error       { return cmd.Start() }
func (hostRunner) cleanupCgroup(path string) error { return removeCgroup("/sys/fs/cgroup", path) }

func run(r ociRunner, cmd *exec.Cmd) ([]byte, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := r.start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return []byte(out.String()), err
}

func runBundle(t *testing.T, bin, rtPath string, r ociRunner, base uint32, id string) {
	dir, nodeConfig, root := signedHostile(t, bin, "sleep", "60s")
	out := filepath.Join(filepath.Dir(dir), "bundle")
	res := runCLI(t, bin, "bundle", "--node-config", nodeConfig, "--uid-base", strconv.Itoa(int(base)), "--cgroup", "/"+id, dir, out)
	if res.code != 0 {
		t.Fatalf("bundle: %+v", res)
	}
	t.Log(strings.TrimSpace(res.stdout))
	js, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ocischema.Validate(js); err != nil || v != "1.1.0" {
		t.Fatalf("config.json: ociVersion %q, %v; want 1.1.0, the lowest that carries errnoRet, and valid", v, err)
	}

	// The bundle's binary is the verified one.
	if got, want := mustRead(t, filepath.Join(out, "module")), mustRead(t, binaries.Hostile); got != want {
		t.Error("the bundle's module differs from the signed binary")
	}
	// The same policy the daemon compiles for this module on this host.
	cfg, err := nodeconfig.Parse(nodeConfig)
	if err != nil {
		t.Fatal(err)
	}
	host, err := runtime.DetectHost("/sys/fs/cgroup", root)
	if err != nil {
		t.Fatal(err)
	}
	prep, err := loader.Prepare(dir, cfg, loader.Options{Root: root, Host: host})
	if err != nil {
		t.Fatal(err)
	}
	p := prep.Policy
	ids := runtime.IDRange{Base: base, Count: runtime.IDsPerModule}

	// The project's hub, on the socket the bundle binds.
	chain, err := devchain.Open(filepath.Join(t.TempDir(), "chain.db"), devchain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	h := hub.New(chain, hub.Config{NodeVersion: cfg.Node.Version})
	defer h.Close()
	sock := filepath.Join(out, "hub.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(os.Chown(sock, ids.HostUID(), ids.HostUID()), os.Chmod(sock, 0o600)); err != nil {
		t.Fatal(err)
	}
	name := prep.Manifest.Name
	if err := h.Attach(hub.ModuleSpec{ID: name + "@1.0.0", Name: name, Version: "1.0.0", Capabilities: prep.Capabilities.Names(), ACL: p.Hub, PeerUID: ids.HostUID()}, ln); err != nil {
		t.Fatal(err)
	}

	state := t.TempDir()
	logf, err := os.CreateTemp("", "blvm-bundle-out-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	cmd := exec.Command(rtPath, "--root", state, "run", "-b", out, id)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := r.start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		// `run` deletes the container itself once it has exited, so
		// delete only what is left after the kill.
		run(r, exec.Command(rtPath, "--root", state, "kill", id, "KILL"))
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s run did not end after kill", rtPath)
		}
		if _, err := run(r, exec.Command(rtPath, "--root", state, "state", id)); err == nil {
			if o, err := run(r, exec.Command(rtPath, "--root", state, "delete", "-f", id)); err != nil {
				t.Errorf("%s delete: %v %s", rtPath, err, o)
			}
		}
		if err := r.cleanupCgroup("/" + id); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-h.Ready(name):
	case err := <-exited:
		msg, _ := os.ReadFile(logf.Name())
		t.Fatalf("%s run ended before the module greeted the hub: %v\n%s", rtPath, err, msg)
	case <-time.After(15 * time.Second):
		msg, _ := os.ReadFile(logf.Name())
		t.Fatalf("the module never greeted the hub\n%s", msg)
	}
	o, err := run(r, exec.Command(rtPath, "--root", state, "state", id))
	if err != nil {
		t.Fatalf("%s state: %v %s", rtPath, err, o)
	}
	var st struct{ Pid int }
	if err := json.Unmarshal(o, &st); err != nil || st.Pid == 0 {
		t.Fatalf("%s state: %v %s", rtPath, err, o)
	}
	pid := st.Pid
	proc := "/proc/" + strconv.Itoa(pid)
	if exe, _ := os.Readlink(proc + "/exe"); exe != "/module/"+name {
		t.Errorf("pid %d runs %s, want /module/%s (the shim has exec'd the module)", pid, exe, name)
	}

	// Every control audit/live compares: no_new_privs, seccomp mode and
	// filter count, capability sets, ids inside, namespaces, rlimits,
	// cgroup memory and pids.
	rows, err := live.Inspect(pid, p, "/proc", "/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if !row.OK {
			t.Errorf("%s: the policy wants %q, under %s the module has %q", row.Control, row.Want, filepath.Base(rtPath), row.Got)
		}
	}
	if len(rows) < 20 {
		t.Errorf("only %d controls inspected", len(rows))
	}
	// The uid and gid maps: the one range, and nothing else.
	want := fmt.Sprintf("0 %d %d", base, runtime.IDsPerModule)
	for _, f := range []string{"uid_map", "gid_map"} {
		if b, _ := os.ReadFile(proc + "/" + f); strings.Join(strings.Fields(string(b)), " ") != want {
			t.Errorf("%s %q, want %q", f, b, want)
		}
	}
	// CPU, beside live's memory and pids.
	if cpuPath := cgroupOf(t, proc, "cpu"); cpuPath != "" {
		for file, want := range map[string]int64{"cpu.cfs_quota_us": p.Cgroup.CPUQuotaMicros.Value, "cpu.cfs_period_us": int64(p.Cgroup.CPUPeriodMicros)} {
			b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpu", cpuPath, file))
			if got := strings.TrimSpace(string(b)); got != strconv.FormatInt(want, 10) {
				t.Errorf("%s %q, want %d", file, got, want)
			}
		}
	}
	// The device allow-list the bundle declares, as the devices
	// controller holds it (v1; v2 has no file to read it from). runc and
	// crun append their own defaults, which no spec removes: mknod of any
	// node, /dev/pts, ptmx, console, tun (runc); crun also adds m to the
	// allowed nodes. Nothing else may appear.
	var spec specs.Spec
	if err := json.Unmarshal(js, &spec); err != nil {
		t.Fatal(err)
	}
	if devPath := cgroupOf(t, proc, "devices"); devPath != "" {
		want := map[string]string{} // "c 1:3" -> access
		for _, d := range spec.Linux.Resources.Devices {
			if d.Allow {
				want[fmt.Sprintf("%s %d:%d", d.Type, *d.Major, *d.Minor)] = d.Access
			}
		}
		runtimeDefaults := map[string]bool{"b *:* m": true, "c *:* m": true, "c 136:* rwm": true, "c 5:1 rwm": true, "c 5:2 rwm": true, "c 10:200 rwm": true}
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/devices", devPath, "devices.list"))
		seen := 0
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			node, access, _ := strings.Cut(l, " ")
			node2, access2, _ := strings.Cut(access, " ")
			node, access = node+" "+node2, access2
			switch w, ok := want[node]; {
			case ok && (access == w || access == w+"m"):
				seen++
			case !ok && runtimeDefaults[l]:
				t.Logf("devices.list: %q is %s's own default", l, filepath.Base(rtPath))
			default:
				t.Errorf("devices.list allows %q; the bundle declares %v", l, want)
			}
		}
		if seen != len(want) || seen < 6 {
			t.Errorf("devices.list %q holds %d of the bundle's %d devices", b, seen, len(want))
		}
	}
	// The network namespace has loopback only.
	if b, err := os.ReadFile(proc + "/net/dev"); err != nil || strings.Count(string(b), ":") != 1 || !strings.Contains(string(b), "lo:") {
		t.Errorf("interfaces in the module's network namespace: %v\n%s", err, b)
	}
	// Masked paths are /dev/null binds.
	for _, m := range p.Process.MaskedPaths {
		var st unix.Stat_t
		if err := unix.Stat(proc+"/root"+m.Path, &st); err == nil && m.Path == "/proc/kcore" && st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("%s is not masked: rdev %#x", m.Path, st.Rdev)
		}
	}
	// The environment, exactly the policy's.
	env, _ := os.ReadFile(proc + "/environ")
	var wantEnv []string
	for _, e := range p.Env {
		wantEnv = append(wantEnv, e.Name+"="+e.Value)
	}
	if got := strings.Split(strings.TrimRight(string(env), "\x00"), "\x00"); strings.Join(got, "\n") != strings.Join(wantEnv, "\n") {
		t.Errorf("environment %q, want %q", got, wantEnv)
	}
	// /tmp: sticky and world-writable, as the daemon's.
	if fi, err := os.Stat(proc + "/root/tmp"); err != nil || fi.Mode()&(os.ModeSticky|os.ModePerm) != os.ModeSticky|0o777 {
		t.Errorf("/tmp: %v %v, want drwxrwxrwt", fi.Mode(), err)
	}
	// The root is mounted read-only.
	if opts := mountOptions(t, proc, "/"); !strings.HasPrefix(opts, "ro") {
		t.Errorf("root mounted %q, want ro", opts)
	}
	if err := os.WriteFile(proc+"/root/written-from-host", nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to the module's root from the host: %v, want EROFS", err)
	}
}

// cgroupOf is the process's path in a v1 controller's hierarchy.
func cgroupOf(t *testing.T, proc, controller string) string {
	b, err := os.ReadFile(proc + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			return parts[2]
		}
	}
	return ""
}

// mountOptions are the per-mount options of the mount at target, as the
// process sees it.
func mountOptions(t *testing.T, proc, target string) string {
	f, err := os.Open(proc + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) > 5 && fl[4] == target {
			opts = fl[5] // the last mount on target is the one seen
		}
	}
	return opts
}

// removeCgroup removes path from every v1 hierarchy mounted under root
// and the unified one, leaf first.
func removeCgroup(root, path string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		// Only real hierarchies: the links (cpu,cpuacct) lead to one,
		// and a bare directory of the cgroup tmpfs holds no cgroup.
		if !e.IsDir() {
			continue
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(filepath.Join(root, e.Name()), &fs); err != nil || (fs.Type != unix.CGROUP_SUPER_MAGIC && fs.Type != unix.CGROUP2_SUPER_MAGIC) {
			continue
		}
		dir := filepath.Join(root, e.Name(), path)
		// The container's last processes may still be exiting: EBUSY.
		for try := 0; ; try++ {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || try == 50 {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dir, err))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// crunNamespace is one OS thread in a private mount namespace where crun
// 1.8 accepts this host (ENVIRONMENT.md, bench/crun_test.go): the unified
// hierarchy unmounted, and every v1 controller /proc/self/cgroup lists but
// no mount holds mounted on its empty directory. Commands are forked from
// that thread, so they inherit its namespace.
type crunNamespace struct {
	work    chan func()
	mounted []string // hierarchies this namespace mounted
}

func newCrunNamespace(t *testing.T) (*crunNamespace, error) {
	c := &crunNamespace{work: make(chan func())}
	ready := make(chan error)
	go func() {
		goruntime.LockOSThread()
		// Never unlocked: Go discards the thread when this goroutine ends.
		err := c.enter()
		ready <- err
		if err != nil {
			return
		}
		for f := range c.work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	before := hierarchyCounts(c.mounted)
	t.Cleanup(func() {
		// Cgroups in hierarchies no host mount holds are invisible from
		// the host and global to the kernel: none may stay behind.
		// Other processes may use the same hierarchies meanwhile, so the
		// counts may not fall below what they were, only back to it.
		// A removed cgroup is counted until the kernel has freed it.
		after := hierarchyCounts(c.mounted)
		for deadline := time.Now().Add(5 * time.Second); !countsWithin(after, before) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			after = hierarchyCounts(c.mounted)
		}
		for k, n := range after {
			if a, _ := strconv.Atoi(n); a > atoiOr(before[k]) {
				t.Errorf("num_cgroups of %s: %s before crun, %s after cleanup", k, before[k], n)
			}
		}
		if len(c.mounted) > 0 {
			t.Logf("mounted %v for crun; num_cgroups %v before, %v after", c.mounted, before, after)
		}
		close(c.work)
	})
	return c, nil
}

func (c *crunNamespace) enter() error {
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount("/sys/fs/cgroup/unified", unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("umount /sys/fs/cgroup/unified: %w", err)
	}
	// crun, now in v1 mode, still makes a directory for /proc/self/cgroup's
	// "0::" line under /sys/fs/cgroup/unified; on this host's read-only
	// cgroup tmpfs that fails (ENOENT). A tmpfs of this namespace's own
	// takes it, and goes with the namespace.
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		if err := unix.Mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k,mode=755"); err != nil {
			return fmt.Errorf("mount a tmpfs on /sys/fs/cgroup/unified: %w", err)
		}
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 || parts[1] == "" || strings.HasPrefix(parts[1], "name=") {
			continue
		}
		dir := filepath.Join("/sys/fs/cgroup", parts[1])
		if _, err := os.Stat(dir); err != nil {
			continue // not offered by this host's layout; crun skips it
		}
		if mounted, err := isMountpoint(dir); err != nil || mounted {
			continue
		}
		if err := unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, parts[1]); err != nil {
			return fmt.Errorf("mount -t cgroup -o %s cgroup %s: %w", parts[1], dir, err)
		}
		c.mounted = append(c.mounted, parts[1])
	}
	return nil
}

// isMountpoint reports whether dir is the root of a mount.
func isMountpoint(dir string) (bool, error) {
	var st, up unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(dir), &up); err != nil {
		return false, err
	}
	return st.Dev != up.Dev, nil
}

func (c *crunNamespace) start(cmd *exec.Cmd) error {
	done := make(chan error)
	c.work <- func() { done <- cmd.Start() }
	return <-done
}

// cleanupCgroup removes the container's cgroup in every hierarchy, those
// this namespace mounted included, from inside the namespace.
func (c *crunNamespace) cleanupCgroup(path string) error {
	done := make(chan error)
	c.work <- func() { done <- removeCgroup("/sys/fs/cgroup", path) }
	return <-done
}

// hierarchyCounts reads num_cgroups from /proc/cgroups for controllers.
func hierarchyCounts(controllers []string) map[string]string {
	b, _ := os.ReadFile("/proc/cgroups")
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		for _, c := range controllers {
			if slices.Contains(strings.Split(c, ","), f[0]) {
				out[f[0]] = f[2]
			}
		}
	}
	return out
}

func atoiOr(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// countsWithin reports whether no count in after exceeds its count in before.
func countsWithin(after, before map[string]string) bool {
	for k, n := range after {
		if atoiOr(n) > atoiOr(before[k]) {
			return false
		}
	}
	return true
}

// TestRootBundleRefusals: bundle writes nothing for a module that fails
// verification (exit 1), and refuses an OUT_DIR that exists or sits under
// a directory the module's uid cannot search (exit 2).
func TestRootBundleRefusals(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostile(t, bin, "sleep", "1s")
	base := filepath.Dir(dir)
	exists := filepath.Join(base, "exists")
	os.Mkdir(exists, 0o755)
	if r := runCLI(t, bin, "bundle", "--node-config", nodeConfig, dir, exists); r.code != 2 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("into an existing dir: %+v", r)
	}
	closed := filepath.Join(base, "closed")
	os.Mkdir(closed, 0o700)
	if r := runCLI(t, bin, "bundle", "--node-config", nodeConfig, dir, filepath.Join(closed, "b")); r.code != 2 || !strings.Contains(r.stderr, closed+" is mode 0700") {
		t.Errorf("under a 0700 dir: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(closed, "b")); err == nil {
		t.Error("a refused bundle was written")
	}
	// Tampered before anything sealed it in the store (once sealed, the
	// store's verified bytes are what a bundle copies, whatever the
	// module dir holds later).
	dir, nodeConfig, _ = signedHostile(t, bin, "sleep", "1s")
	f, _ := os.OpenFile(filepath.Join(dir, "hostile"), os.O_WRONLY, 0)
	st, _ := f.Stat()
	f.WriteAt([]byte{0xff}, st.Size()-1)
	f.Close()
	out := filepath.Join(filepath.Dir(dir), "tampered")
	if r := runCLI(t, bin, "bundle", "--node-config", nodeConfig, dir, out); r.code != 1 || !strings.Contains(r.stderr, "hash") {
		t.Errorf("a binary changed after signing: %+v", r)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a bundle was written for a module that failed verification")
	}
}
