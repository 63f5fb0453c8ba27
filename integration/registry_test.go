package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/verify"
)

// The registry against the real daemon: `registry serve` on 127.0.0.1,
// `install NAME` by name with its dependencies, and the daemon asked to
// load them. Every check looks from outside: ps --json, logs, the
// daemon's log, the files on disk.

// regModule writes a module that announces itself and sleeps, with deps
// in its [dependencies], signed 2-of-3 with the daemon's pinned keys.
func (d *daemon) regModule(name, version string, deps map[string]string) string {
	d.t.Helper()
	dir := filepath.Join(d.dir, "src", name+"-"+version)
	os.MkdirAll(dir, 0o755)
	// A binary of its own (trailing bytes an ELF loader ignores), so no
	// two versions share a blob in the client's content-addressed cache.
	bin, err := os.ReadFile(binaries.Hostile)
	if err != nil {
		d.t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name), append(bin, name+" "+version...), 0o755)
	var b strings.Builder
	fmt.Fprintf(&b, "name = %q\nversion = %q\nentry_point = %q\ncapabilities = [\"read_blockchain\"]\n", name, version, name)
	if len(deps) > 0 {
		b.WriteString("[dependencies]\n")
		for _, n := range slices.Sorted(maps.Keys(deps)) {
			fmt.Fprintf(&b, "%q = %q\n", n, deps[n])
		}
	}
	b.WriteString("[config_schema]\nattack = \"\"\narg = \"\"\n")
	os.WriteFile(filepath.Join(dir, "module.toml"), []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("attack = \"announce\"\narg = \"10m\"\n"), 0o644)
	for _, k := range []string{"alice", "bob"} {
		if r := runCLI(d.t, d.bin, "sign", "--key", filepath.Join(d.dir, k+".key"), "--binary", filepath.Join(dir, name), "--threshold", "2-of-3", dir); r.code != 0 {
			d.t.Fatalf("sign %s: %+v", name, r)
		}
	}
	return dir
}

// serveRegistry runs `blvm-sandbox registry serve reg` on a free loopback
// port until the test ends and returns its URL.
func serveRegistry(t *testing.T, bin, reg string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "registry", "serve", reg, "--listen", addr)
	log, _ := os.Create(filepath.Join(t.TempDir(), "access.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		log.Close()
	})
	url := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(url + "/metadata/timestamp.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if i == 100 {
			t.Fatalf("registry serve on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// treeDigest is every path under dir with its type, mode and content hash:
// two equal digests are byte-for-byte the same tree.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:])
		}
		out[strings.TrimPrefix(p, dir)] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type psRow struct {
	Name         string     `json:"name"`
	Version      string     `json:"version"`
	State        string     `json:"state"`
	Pid          int        `json:"pid"`
	Dependencies []string   `json:"dependencies"`
	StartedAt    *time.Time `json:"started_at"`
}

func (d *daemon) psJSON() map[string]psRow {
	d.t.Helper()
	r := runCLI(d.t, d.bin, "--admin-socket", d.client.Socket, "ps", "--json")
	if r.code != 0 {
		d.t.Fatalf("ps --json: %+v", r)
	}
	var out struct {
		SchemaVersion int     `json:"schema_version"`
		Modules       []psRow `json:"modules"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.SchemaVersion != 1 {
		d.t.Fatalf("ps --json: %v (schema %d): %s", err, out.SchemaVersion, r.stdout)
	}
	m := map[string]psRow{}
	for _, row := range out.Modules {
		m[row.Name] = row
	}
	return m
}

// TestRootRegistryInstallByNameLoadsInDependencyOrder: `install reg-app`
// by name from a real `registry serve` pulls reg-mid and reg-base, and the
// running daemon loads base, mid, app in that order (it refuses a module
// whose dependencies are not loaded, so another order would fail). Then a
// tampered blob makes an upgrade fail and leaves the modules dir and the
// rollback marks byte for byte as they were, the daemon running the same
// processes.
func TestRootRegistryInstallByNameLoadsInDependencyOrder(t *testing.T) {
	d := newDaemon(t)
	d.start()
	reg := filepath.Join(d.dir, "reg")
	if r := runCLI(t, d.bin, "registry", "init", reg); r.code != 0 {
		t.Fatalf("registry init: %+v", r)
	}
	publish := func(dir string) {
		t.Helper()
		if r := runCLI(t, d.bin, "registry", "publish", reg, dir); r.code != 0 {
			t.Fatalf("registry publish %s: %+v", dir, r)
		}
	}
	publish(d.regModule("reg-base", "1.0.0", nil))
	publish(d.regModule("reg-mid", "1.0.0", map[string]string{"reg-base": "^1.0.0"}))
	publish(d.regModule("reg-app", "1.0.0", map[string]string{"reg-mid": "^1.0.0", "reg-base": ">=1.0.0"}))
	url := serveRegistry(t, d.bin, reg)
	d.editConfig(func(s string) string {
		return s + fmt.Sprintf("\n[registry]\nurl = %q\nroot = %q\n", url, filepath.Join(reg, "root.json"))
	})
	nodeConfig := filepath.Join(d.dir, "node.toml")
	loadedBefore := len(d.loadedOrder())

	r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "install", "reg-app", "--node-config", nodeConfig, "--yes")
	if r.code != 0 {
		t.Fatalf("install reg-app: %+v\ndaemon log:\n%s", r, d.log.String())
	}
	t.Logf("install reg-app:\n%s", r.stdout)
	for _, want := range []string{"install   reg-base 1.0.0: dependency of reg-", "install   reg-mid 1.0.0: dependency of reg-app 1.0.0", "install   reg-app 1.0.0: requested"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the plan lacks %q", want)
		}
	}
	if i, j, k := strings.Index(r.stdout, "loaded reg-base 1.0.0"), strings.Index(r.stdout, "loaded reg-mid 1.0.0"), strings.Index(r.stdout, "loaded reg-app 1.0.0"); i < 0 || j < i || k < j {
		t.Errorf("install did not report base, mid, app loaded in that order:\n%s", r.stdout)
	}
	// The daemon's own log: the order it loaded them in.
	order := d.loadedOrder()[loadedBefore:]
	if !slices.Equal(order, []string{"reg-base", "reg-mid", "reg-app"}) {
		t.Errorf("daemon loaded %v, want [reg-base reg-mid reg-app]", order)
	}
	d.waitFor("the three running", func(m []admin.ModuleInfo) bool {
		return state(m, "reg-base").State == "running" && state(m, "reg-mid").State == "running" && state(m, "reg-app").State == "running"
	})
	ps := d.psJSON()
	for _, n := range []string{"reg-base", "reg-mid", "reg-app"} {
		if row := ps[n]; row.State != "running" || row.Version != "1.0.0" || row.Pid == 0 || row.StartedAt == nil {
			t.Errorf("ps --json %s: %+v", n, row)
		}
	}
	if !ps["reg-base"].StartedAt.After(time.Time{}) || ps["reg-mid"].StartedAt.Before(*ps["reg-base"].StartedAt) || ps["reg-app"].StartedAt.Before(*ps["reg-mid"].StartedAt) {
		t.Errorf("ps --json start times not in dependency order: base %v mid %v app %v", ps["reg-base"].StartedAt, ps["reg-mid"].StartedAt, ps["reg-app"].StartedAt)
	}
	if deps := ps["reg-app"].Dependencies; !slices.Contains(deps, "reg-mid") {
		t.Errorf("ps --json reg-app dependencies %v", deps)
	}
	for _, n := range []string{"reg-base", "reg-mid", "reg-app"} {
		var logs cliRun
		for range 100 {
			if logs = runCLI(t, d.bin, "--admin-socket", d.client.Socket, "logs", n); strings.Contains(logs.stdout, "running "+n+" 1.0.0") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(logs.stdout, "running "+n+" 1.0.0") {
			t.Errorf("logs %s: %+v, want the module's own line", n, logs)
		}
	}

	t.Run("a tampered blob changes nothing", func(t *testing.T) {
		publish(d.regModule("reg-base", "1.1.0", nil))
		publish(d.regModule("reg-app", "1.1.0", map[string]string{"reg-mid": "^1.0.0", "reg-base": "^1.1.0"}))
		info := runCLI(t, d.bin, "info", "reg-app", "--node-config", nodeConfig, "--json")
		var inf struct {
			Versions []struct {
				Version string `json:"version"`
				Binary  struct {
					Hash string `json:"hash"`
				} `json:"binary"`
			} `json:"versions"`
		}
		if err := json.Unmarshal([]byte(info.stdout), &inf); err != nil {
			t.Fatalf("info --json: %v %+v", err, info)
		}
		var blob string
		for _, v := range inf.Versions {
			if v.Version == "1.1.0" {
				blob = filepath.Join(reg, "repository", "blobs", "sha256", strings.TrimPrefix(v.Binary.Hash, "sha256:"))
			}
		}
		b, err := os.ReadFile(blob)
		if err != nil {
			t.Fatalf("reg-app 1.1.0's binary blob: %v", err)
		}
		b[len(b)/2] ^= 0xff // same size, other bytes: only the hash can tell
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			t.Fatal(err)
		}

		modsBefore := treeDigest(t, filepath.Join(d.dir, "modules"))
		marksBefore, markErr := os.ReadFile(verify.HighWaterPath(d.root))
		if markErr != nil || !strings.Contains(string(marksBefore), "reg-app") {
			t.Fatalf("rollback marks before: %q %v; want reg-app's mark", marksBefore, markErr)
		}
		psBefore := d.psJSON()

		r := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "install", "reg-app@1.1.0", "--node-config", nodeConfig, "--yes")
		if r.code != 1 || !strings.Contains(r.stderr, "reg-app 1.1.0: binary:") || !strings.Contains(r.stderr, "the signed index pins") {
			t.Fatalf("install of a tampered reg-app 1.1.0: exit %d, stderr %q; want 1 naming the binary's hash", r.code, r.stderr)
		}
		t.Logf("refused: %s", r.stderr)
		if after := treeDigest(t, filepath.Join(d.dir, "modules")); !maps.Equal(after, modsBefore) {
			t.Errorf("the modules dir changed:\nbefore %v\nafter  %v", modsBefore, after)
		}
		if marks, _ := os.ReadFile(verify.HighWaterPath(d.root)); string(marks) != string(marksBefore) {
			t.Errorf("rollback marks changed: %q -> %q", marksBefore, marks)
		}
		psAfter := d.psJSON()
		for _, n := range []string{"reg-base", "reg-mid", "reg-app", "block-logger"} {
			if b, a := psBefore[n], psAfter[n]; a.State != "running" || a.Pid != b.Pid || a.Version != b.Version {
				t.Errorf("%s disturbed by the failed install: %+v -> %+v", n, b, a)
			}
		}
		if n := len(d.loadedOrder()); n != loadedBefore+3 {
			t.Errorf("the daemon loaded something after the failed install: %v", d.loadedOrder()[loadedBefore:])
		}

		// The registry's bytes back: the same upgrade now installs, and the
		// daemon restarts base and app into 1.1.0 (a load of a loaded
		// module would keep 1.0.0 running).
		b[len(b)/2] ^= 0xff
		os.WriteFile(blob, b, 0o644)
		r = runCLI(t, d.bin, "--admin-socket", d.client.Socket, "install", "reg-app@1.1.0", "--node-config", nodeConfig, "--yes")
		if r.code != 0 || !strings.Contains(r.stdout, "upgrade   reg-base 1.1.0 (from 1.0.0)") || !strings.Contains(r.stdout, "upgrade   reg-app 1.1.0 (from 1.0.0)") {
			t.Fatalf("install reg-app@1.1.0 with the blob restored: %+v", r)
		}
		d.waitFor("reg-base and reg-app 1.1.0 running", func(m []admin.ModuleInfo) bool {
			return state(m, "reg-base").Version == "1.1.0" && state(m, "reg-base").State == "running" &&
				state(m, "reg-app").Version == "1.1.0" && state(m, "reg-app").State == "running" && state(m, "reg-mid").State == "running"
		})
		ps := d.psJSON()
		if ps["reg-base"].Pid == psBefore["reg-base"].Pid || ps["reg-app"].Pid == psBefore["reg-app"].Pid {
			t.Errorf("upgraded modules kept their processes: before %+v, after %+v", psBefore, ps)
		}
		for _, n := range []string{"reg-base", "reg-app"} {
			if l := runCLI(t, d.bin, "--admin-socket", d.client.Socket, "logs", n); !strings.Contains(l.stdout, "running "+n+" 1.1.0") {
				t.Errorf("logs %s after the upgrade: %+v", n, l)
			}
		}
	})
}
