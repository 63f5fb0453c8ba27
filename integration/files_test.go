package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/runtime"
)

// nobody is the unprivileged local user the probes run as.
const nobody = 65534

// probeEnv makes the test binary, copied where nobody can run it, a probe
// that tries to reach a module's files and prints what each try got.
const probeEnv = "BLVM_IT_FILES_PROBE"

type probeTargets struct {
	Data, File, Socket, Config string
}

func init() {
	arg := os.Getenv(probeEnv)
	if arg == "" {
		return
	}
	var p probeTargets
	if err := json.Unmarshal([]byte(arg), &p); err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	res := map[string]string{"uid": strconv.Itoa(os.Getuid())}
	_, err := os.ReadDir(p.Data)
	res["list_data"] = errnoOf(err)
	_, err = os.ReadFile(p.File)
	res["read_file"] = errnoOf(err)
	f, err := os.OpenFile(filepath.Join(p.Data, "planted"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		f.Close()
	}
	res["create_in_data"] = errnoOf(err)
	c, err := net.Dial("unix", p.Socket)
	if err == nil {
		c.Close()
	}
	res["connect_socket"] = errnoOf(err)
	_, err = os.ReadFile(p.Config)
	res["read_config"] = errnoOf(err)
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

func errnoOf(err error) string {
	var e syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e):
		return e.Error()
	}
	return err.Error()
}

// probeBinary copies the test binary where nobody can execute it: go
// test's build directory is 0700.
func probeBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "blvm-probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o711)
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	p := filepath.Join(dir, "probe")
	out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(out, self)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// probeAs runs the probe as uid (and gid) uid, with no groups.
func probeAs(t *testing.T, bin string, uid int, p probeTargets) map[string]string {
	t.Helper()
	arg, _ := json.Marshal(p)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{probeEnv + "=" + string(arg)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe: %v (%s)", err, out)
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	if res["uid"] != strconv.Itoa(uid) {
		t.Fatalf("probe ran as uid %s, want %d", res["uid"], uid)
	}
	return res
}

// modeOwner is what the host sees of one path.
type modeOwner struct {
	path string
	uid  int
	mode fs.FileMode // permission bits
	typ  fs.FileMode // fs.ModeDir, fs.ModeSocket or 0 for a regular file
}

func checkPaths(t *testing.T, want []modeOwner) {
	t.Helper()
	for _, w := range want {
		st, err := os.Lstat(w.path)
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		uid := int(st.Sys().(*syscall.Stat_t).Uid)
		gid := int(st.Sys().(*syscall.Stat_t).Gid)
		if uid != w.uid || gid != w.uid || st.Mode().Perm() != w.mode || st.Mode().Type() != w.typ {
			t.Errorf("%s: %s uid %d gid %d mode %04o, want %s uid %d mode %04o",
				w.path, st.Mode().Type(), uid, gid, st.Mode().Perm(), w.typ, w.uid, w.mode)
		}
	}
}

// moduleUID is the host uid a running module runs as, from /proc.
func moduleUID(t *testing.T, s *sandbox, name string) int {
	t.Helper()
	st, ok := s.sup.Status(name)
	if !ok || st.State != runtime.Running || st.Pid == 0 {
		t.Fatalf("%s not running: %+v", name, st)
	}
	uid, err := strconv.Atoi(strings.Fields(procStatus(t, st.Pid)["Uid"])[0])
	if err != nil || uid < runtime.IDsBase {
		t.Fatalf("module uid %d (%v)", uid, err)
	}
	return uid
}

// privatePaths is every path from the root to the module's socket, data
// and config, with the owner and mode each must have.
func privatePaths(root, name string, uid int) []modeOwner {
	l := runtime.Layout{Root: root}
	d, s := fs.ModeDir, fs.ModeSocket
	return []modeOwner{
		{root, 0, 0o711, d},
		{l.SocketsDir(), 0, 0o711, d},
		{l.SocketDir(name), uid, 0o700, d},
		{l.Socket(name), uid, 0o600, s},
		{filepath.Join(root, "data"), 0, 0o711, d},
		{l.ModulesDataDir(), 0, 0o711, d},
		{l.DataParent(name), uid, 0o700, d},
		{l.Data(name), uid, 0o700, d},
		{l.BundlesDir(), 0, 0o711, d},
		{l.Bundle(name), 0, 0o711, d},
		{filepath.Join(l.Bundle(name), "rootfs"), 0, 0o755, d},
		{l.BundlePrivate(name), uid, 0o700, d},
		{l.Config(name), uid, 0o400, 0},
	}
}

// Every directory on the way to the module's socket, data and config, as
// the host sees it while the module runs: the per-module parents are 0700
// and the module's own host uid's, the leaves too; nothing above is
// readable by others. The module reads its config and writes its data
// through them.
func TestRootFilesModesAndOwners(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	if err := s.start("owned", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	uid := moduleUID(t, s, "owned")
	checkPaths(t, privatePaths(s.root, "owned", uid))
	if b, err := os.ReadFile(runtime.Layout{Root: s.root}.Config("owned")); err != nil || !strings.Contains(string(b), `attack = "sleep"`) {
		t.Errorf("config: %q %v", b, err)
	}
}

// A local user other than the module (nobody) cannot list or read the
// module's data, plant a file in it, connect to its hub socket or read its
// config, even once the leaves are 0777 (what a module that opened up its
// own files would leave). The control at the end opens the parents too and
// sees every try succeed: the probe can tell, and the parents are what
// stops it.
func TestRootFilesUnprivilegedUserLockedOut(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	if err := s.start("private", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	l := runtime.Layout{Root: s.root}
	uid := moduleUID(t, s, "private")
	file := filepath.Join(l.Data("private"), "wallet")
	if err := os.WriteFile(file, []byte("keys"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chown(file, uid, uid)
	os.Chmod(file, 0o666)
	targets := probeTargets{Data: l.Data("private"), File: file, Socket: l.Socket("private"), Config: l.Config("private")}
	bin := probeBinary(t)
	keys := []string{"list_data", "read_file", "create_in_data", "connect_socket", "read_config"}

	check := func(when string, want string) {
		t.Helper()
		res := probeAs(t, bin, nobody, targets)
		for _, k := range keys {
			if res[k] != want {
				t.Errorf("%s: %s as uid %d: %s, want %s", when, k, nobody, res[k], want)
			}
		}
	}
	check("as started", syscall.EACCES.Error())
	for _, p := range []string{l.Data("private"), l.Socket("private"), l.Config("private")} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	check("leaves 0777", syscall.EACCES.Error())
	if _, err := os.Stat(filepath.Join(l.Data("private"), "planted")); err == nil {
		t.Error("nobody planted a file in the module's data")
	}

	// Control: with the parents open as well, the same probe reaches it all.
	for _, p := range []string{l.DataParent("private"), l.SocketDir("private"), l.BundlePrivate("private")} {
		os.Chmod(p, 0o711)
	}
	check("control, parents 0711", "ok")
}

// A module that opened up its own files (0777 on /data, a file in it and
// its hub socket) finds them reset when it is restarted after a crash, and
// the host finds them reset at the next load. The module's own chmod is
// refused by seccomp now, so the host makes the change while it runs,
// standing in for a way around that layer: this tests the runtime's reset
// on its own. The runtime resets what it relies on, not the module's own
// files inside.
func TestRootFilesResetAtRestartAndLoad(t *testing.T) {
	s, rec := newRecordingSandbox(t, runtime.RestartPolicy{Delay: 100 * time.Millisecond, MaxDelay: time.Second, MaxCrashes: 5, Window: time.Minute})
	var out syncbuf.Buffer
	if err := s.start("opener", "chmod-own", "60s", &out, nil); err != nil {
		t.Fatal(err)
	}
	l := runtime.Layout{Root: s.root}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), `"run":"first"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no first run: %s", out.String())
		}
	}
	for _, p := range []string{filepath.Join(l.Data("opener"), "file"), l.Socket("opener"), l.Data("opener")} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _ := s.sup.Status("opener")
		if st.State == runtime.Running && st.Restarts == 1 && strings.Count(out.String(), "\n") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v, states %s, output %s", st, joinStates(rec.states("opener")), out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	runs := hostileLines(t, out.String())
	if len(runs) < 2 || runs[0].Info["run"] != "first" || runs[1].Info["run"] != "later" {
		t.Fatalf("runs: %+v", runs)
	}
	first, later := runs[0].Info, runs[1].Info
	// The module's own attempt: seccomp refuses the modes.
	for k, want := range map[string]string{"chmod_data": "EPERM", "chmod_file": "EPERM", "chmod_socket": "EPERM", "chmod_config": "EPERM",
		"data_mode": "0700", "socket_mode": "0600", "config_mode": "0400"} {
		if first[k] != want {
			t.Errorf("first run: %s = %s, want %s", k, first[k], want)
		}
	}
	// Reset before the restart, seen from inside and from the host.
	for k, want := range map[string]string{"data_mode": "0700", "socket_mode": "0600", "config_mode": "0400"} {
		if later[k] != want {
			t.Errorf("after the crash restart: %s = %s inside, want %s", k, later[k], want)
		}
	}
	uid := moduleUID(t, s, "opener")
	checkPaths(t, privatePaths(s.root, "opener", uid))
	// The module's own file keeps what it was given.
	checkPaths(t, []modeOwner{{filepath.Join(l.Data("opener"), "file"), uid, 0o777, 0}})

	// Next load: what is left on disk after a stop (0777 and a foreign
	// owner, set from the host while it ran; they live in the module's
	// quota image) is reset before the module runs again.
	for _, p := range []string{l.DataParent("opener"), l.Data("opener")} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(l.Data("opener"), 0, 0)
	if _, err := s.sup.Stop(context.Background(), "opener"); err != nil {
		t.Fatal(err)
	}
	if err := s.start("opener", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	checkPaths(t, privatePaths(s.root, "opener", moduleUID(t, s, "opener")))
}

// hostileLines parses every JSON line the hostile module printed.
func hostileLines(t *testing.T, out string) []hostileResult {
	t.Helper()
	var rs []hostileResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r hostileResult
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Attack != "" {
			rs = append(rs, r)
		}
	}
	return rs
}

// startExpiring starts the hostile module with an expiry.
func (s *sandbox) startExpiring(name, attack, arg string, expires time.Time) error {
	config := fmt.Sprintf("attack = %q\narg = %q\n", attack, arg)
	return s.sup.Start(context.Background(), runtime.Module{
		Policy: s.compile(name), Binary: s.hostile, Config: []byte(config), Serve: drainHub, Expires: expires,
	})
}

// A module whose expiry has passed is refused at its first start, and
// nothing of it stays on disk.
func TestRootFilesExpiredRefusedAtStart(t *testing.T) {
	s := newSandbox(t, runtime.DefaultRestart)
	err := s.startExpiring("stale", "sleep", "60s", time.Now().Add(-time.Second))
	if !errors.Is(err, runtime.ErrExpired) || !strings.Contains(err.Error(), "signatures expired at") {
		t.Fatalf("start after expiry: %v, want ErrExpired", err)
	}
	if _, ok := s.sup.Status("stale"); ok {
		t.Error("an expired module stays loaded")
	}
	if left, err := (runtime.Layout{Root: s.root}).Orphans(); err != nil || len(left) != 0 {
		t.Errorf("left behind: %v %v", left, err)
	}
}

// A module that crashes is not restarted once its expiry has passed: the
// backoff ends in state expired, the standby container is discarded.
func TestRootFilesExpiredRefusedAtRestart(t *testing.T) {
	s, rec := newRecordingSandbox(t, runtime.RestartPolicy{Delay: 1500 * time.Millisecond, MaxDelay: 2 * time.Second, MaxCrashes: 5, Window: time.Minute})
	// Expires during the backoff after the module's crash: the first start
	// is well inside it.
	expires := time.Now().Add(800 * time.Millisecond)
	if err := s.startExpiring("crashy", "exit", "3", expires); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exit, err := s.sup.Wait(ctx, "crashy")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.sup.Status("crashy")
	if st.State != runtime.Expired || st.Restarts != 0 || exit.Code != 3 {
		t.Errorf("status %+v, last exit %v; want expired without a restart, after exit 3", st, exit)
	}
	if got := joinStates(rec.states("crashy")); got != "starting running restarting expired" {
		t.Errorf("states %s", got)
	}
	if time.Now().Before(expires) {
		t.Error("marked expired before its expiry")
	}
	s.sup.Stop(ctx, "crashy")
	if left, err := (runtime.Layout{Root: s.root}).Orphans(); err != nil || len(left) != 0 {
		t.Errorf("left behind: %v %v", left, err)
	}
}

// A module whose expiry passes while it runs is stopped (SIGTERM, then the
// grace) and left in state expired; its processes are gone.
func TestRootFilesExpiryWhileRunning(t *testing.T) {
	s, rec := newRecordingSandbox(t, runtime.DefaultRestart)
	expires := time.Now().Add(time.Second)
	if err := s.startExpiring("ageing", "sleep", "60s", expires); err != nil {
		t.Fatal(err)
	}
	st, _ := s.sup.Status("ageing")
	pid := st.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.sup.Wait(ctx, "ageing"); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	st, _ = s.sup.Status("ageing")
	if st.State != runtime.Expired {
		t.Errorf("state %s, want expired", st.State)
	}
	if got := joinStates(rec.states("ageing")); got != "starting running stopping expired" {
		t.Errorf("states %s", got)
	}
	if ended.Before(expires) || ended.Sub(expires) > 3*time.Second {
		t.Errorf("stopped at %v, expiry %v", ended, expires)
	}
	if alive(pid) {
		t.Errorf("module process %d still alive", pid)
	}
	s.sup.Stop(ctx, "ageing")
}

// The daemon stops a module whose signed expiry passes while it runs, and
// `ps` shows it expired, with the reason, rather than crashed or failed.
func TestRootFilesDaemonShowsExpired(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, err := os.MkdirTemp("", "blvm-up-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o711)
	r := runCLI(t, bin, "keys", "generate", "--out", filepath.Join(dir, "alice.key"))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	pub := lines[len(lines)-1]
	mod := filepath.Join(dir, "modules", "ageing")
	os.MkdirAll(mod, 0o755)
	copyFile(t, binaries.Hostile, filepath.Join(mod, "ageing"), 0o755)
	expires := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	os.WriteFile(filepath.Join(mod, "module.toml"), []byte(fmt.Sprintf("name = \"ageing\"\nversion = \"1.0.0\"\nentry_point = \"ageing\"\nexpires = %s\ncapabilities = [\"read_blockchain\"]\n[config_schema]\nattack = \"\"\narg = \"\"\n",
		expires.Format(time.RFC3339))), 0o644)
	os.WriteFile(filepath.Join(mod, "config.toml"), []byte("attack = \"sleep\"\narg = \"60s\"\n"), 0o644)
	if r := runCLI(t, bin, "sign", "--key", filepath.Join(dir, "alice.key"), "--binary", filepath.Join(mod, "ageing"), "--threshold", "1-of-1", mod); r.code != 0 {
		t.Fatalf("sign: %+v", r)
	}
	root := filepath.Join(dir, "root")
	cfg := fmt.Sprintf("[node]\nversion = \"0.1.0\"\n[paths]\nroot = %q\nmodules_dir = %q\n[sandbox]\nstop_grace = \"1s\"\n[trust]\nthreshold = \"1-of-1\"\nmaintainers = [ { name = \"alice\", public_key = %q } ]\n",
		root, filepath.Join(dir, "modules"), pub)
	os.WriteFile(filepath.Join(dir, "node.toml"), []byte(cfg), 0o644)
	d := &daemon{t: t, bin: bin, dir: dir, root: root, log: &syncbuf.Buffer{}}
	d.client = &admin.Client{Socket: filepath.Join(dir, "admin.sock")}
	d.cmd = exec.Command(bin, "up", "--config", filepath.Join(dir, "node.toml"), "--admin-socket", d.client.Socket)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.stop()
		if left, err := (runtime.Layout{Root: root}).Orphans(); err != nil || len(left) != 0 {
			t.Errorf("orphans after the daemon stopped: %v %v", left, err)
		}
	}()
	d.waitFor("ageing running", func(mods []admin.ModuleInfo) bool { return state(mods, "ageing").State == "running" })
	if time.Now().After(expires) {
		t.Fatal("the module's expiry passed before it ran: the check below would prove nothing")
	}
	m := d.waitFor("ageing expired", func(mods []admin.ModuleInfo) bool { return state(mods, "ageing").State == admin.StateExpired })
	if info := state(m, "ageing"); !strings.Contains(info.Error, "signatures expired at "+expires.Format(time.RFC3339)) || info.Pid != 0 {
		t.Errorf("ps row %+v", info)
	}
	if time.Now().Before(expires) {
		t.Error("stopped before its expiry")
	}
	ps := runCLI(t, bin, "ps", "--admin-socket", d.client.Socket)
	if !strings.Contains(ps.stdout, "expired") || !strings.Contains(ps.stdout, "ageing expired: signatures expired at") {
		t.Errorf("ps:\n%s", ps.stdout)
	}
}

// Two runtime roots on one host (a daemon and a `run`, say) share the
// host-wide uid registry: the same module name gets disjoint ranges, so
// neither module can own the other's files.
func TestRootFilesTwoRootsDisjoint(t *testing.T) {
	a, b := newSandbox(t, runtime.RestartPolicy{Never: true}), newSandbox(t, runtime.RestartPolicy{Never: true})
	for _, s := range []*sandbox{a, b} {
		if err := s.start("twin", "sleep", "60s", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	ua, ub := moduleUID(t, a, "twin"), moduleUID(t, b, "twin")
	baseA, baseB := ua-runtime.ModuleUID, ub-runtime.ModuleUID
	if baseA < baseB+runtime.IDsPerModule && baseB < baseA+runtime.IDsPerModule {
		t.Errorf("two roots' twins run as %d and %d: their ranges overlap", ua, ub)
	}
	checkPaths(t, privatePaths(a.root, "twin", ua))
	checkPaths(t, privatePaths(b.root, "twin", ub))
}

// A root written by an older runtime (the module's files directly in
// data/modules/<name>, its range in state/ids.json) is migrated at load
// without loss: the module finds its file in /data and can open it. When
// another root holds the legacy range (older runtimes gave every root the
// same ranges), the module gets a fresh range and its files are re-owned.
func TestRootFilesOldLayoutMigrated(t *testing.T) {
	for _, taken := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy range taken=%v", taken), func(t *testing.T) {
			if taken {
				holder := newSandbox(t, runtime.RestartPolicy{Never: true})
				if err := holder.start("holder", "sleep", "60s", nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			// Free: a registry of its own, whatever else runs on this host.
			registry := ""
			if !taken {
				registry = filepath.Join(t.TempDir(), "ranges.json")
			}
			uid := migrateOldRoot(t, registry)
			if legacy := runtime.IDsBase + runtime.ModuleUID; taken == (uid == legacy) {
				t.Errorf("module runs as %d (legacy uid %d) with the legacy range taken=%v", uid, legacy, taken)
			}
		})
	}
}

// migrateOldRoot writes an old root, starts the module on it, checks it
// reads its file, and returns the uid it ran as. An empty registry is the
// host-wide default.
func migrateOldRoot(t *testing.T, registry string) int {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	s.sup.Close(context.Background())
	l := runtime.Layout{Root: s.root}
	// What the old runtime left: slot 0, uid IDsBase+1000, a 0600 file.
	oldUID := runtime.IDsBase + runtime.ModuleUID
	old := l.DataParent("hostile")
	os.RemoveAll(old)
	os.MkdirAll(old, 0o700)
	os.WriteFile(filepath.Join(old, "wallet"), []byte("keys"), 0o600)
	os.Chown(old, oldUID, oldUID)
	os.Chown(filepath.Join(old, "wallet"), oldUID, oldUID)
	os.WriteFile(filepath.Join(l.StateDir(), "ids.json"), []byte(`{"next":1,"slots":{"hostile":0}}`), 0o600)
	sup, err := runtime.NewSupervisor(runtime.Options{Root: s.root, Shim: binaries.Shim, Host: s.host, Grace: time.Second, Restart: runtime.RestartPolicy{Never: true}, UIDRegistry: registry})
	if err != nil {
		t.Fatal(err)
	}
	s.sup = sup
	if err := s.start("hostile", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	uid := moduleUID(t, s, "hostile")
	// Read while loaded: the data now lives in the module's quota image,
	// mounted from load to unload.
	if b, err := os.ReadFile(filepath.Join(l.Data("hostile"), "wallet")); err != nil || string(b) != "keys" {
		t.Errorf("db/wallet: %q %v", b, err)
	}
	checkPaths(t, []modeOwner{{filepath.Join(l.Data("hostile"), "wallet"), uid, 0o600, 0}})
	s.sup.Stop(context.Background(), "hostile")
	o := s.attack("read-host", "/data/wallet")
	if o.res.Errno != "ok" {
		t.Fatalf("the module cannot open its migrated file: %+v\n%s", o.res, o.stderr)
	}
	if _, err := os.Stat(filepath.Join(l.StateDir(), "ids.json.migrated")); err != nil {
		t.Errorf("legacy ids: %v", err)
	}
	return uid
}
