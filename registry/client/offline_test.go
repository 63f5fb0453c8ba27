package client

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/registry/repo"
	"github.com/blvm/blvm-sandbox/verify"
)

func TestCommitFailureRollsBackEverything(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	w.publish("base", "1.1.0", nil)
	w.publish("app", "1.0.0", map[string]string{"base": "^1.0.0"})
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.install(c, ResolveOptions{}, "base@1.0.0"); err != nil {
		t.Fatal(err)
	}
	before := snapshotTree(t, w.cfg.Paths.ModulesDir)
	hwBefore, _ := os.ReadFile(verify.HighWaterPath(w.node))
	// base 1.1.0 goes in first, then app fails after its rename.
	c.failCommit = "app"
	_, err = w.install(c, ResolveOptions{}, "base@1.1.0", "app")
	mustContain(t, err, "install rolled back", "app: injected failure")
	if after := snapshotTree(t, w.cfg.Paths.ModulesDir); after != before {
		t.Fatalf("modules dir changed:\nbefore %s\nafter  %s", before, after)
	}
	hwAfter, _ := os.ReadFile(verify.HighWaterPath(w.node))
	if string(hwAfter) != string(hwBefore) || !strings.Contains(string(hwBefore), `"1.0.0"`) {
		t.Fatalf("high-water marks changed: %s -> %s", hwBefore, hwAfter)
	}
	c.failCommit = ""
	if _, err := w.install(c, ResolveOptions{}, "base@1.1.0", "app"); err != nil {
		t.Fatal(err)
	}
	hw, _ := os.ReadFile(verify.HighWaterPath(w.node))
	if !strings.Contains(string(hw), `"1.1.0"`) {
		t.Fatalf("high-water after install: %s", hw)
	}
}

// snapshotTree lists every path under dir with its size.
func snapshotTree(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s:%d:%x;", strings.TrimPrefix(p, dir), fi.Size(), len(data))
			if !fi.IsDir() {
				fmt.Fprintf(&b, "%q;", data)
			}
		}
		return nil
	})
	return b.String()
}

func TestOfflineInstallFromCacheAndStaleness(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Blob(mustHex(t, c.Entries[0].Binary.Hash), c.Entries[0].Binary.Size, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Blob(mustHex(t, c.Entries[0].Manifest.Hash), c.Entries[0].Manifest.Size, nil); err != nil {
		t.Fatal(err)
	}
	url := w.srv.URL
	w.srv.Close() // the registry is gone: connection refused
	requests := c.Requests()
	opt := w.options(url)
	opt.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	var warnings []string
	opt.Warn = func(s string) { warnings = append(warnings, s) }
	c2, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Offline {
		t.Fatal("not offline")
	}
	if _, err := w.install(c2, ResolveOptions{}, "base"); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Fatalf("warned within 24h: %v", warnings)
	}
	_ = requests
	opt.Now = func() time.Time { return time.Now().Add(30 * time.Hour) }
	if _, err := Open(opt); err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "cached metadata refreshed") {
		t.Fatalf("after 30h: %v, warnings %v", err, warnings)
	}
	opt.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	_, err = Open(opt)
	mustContain(t, err, "over max_staleness 168h0m0s", "--allow-stale")
	opt.AllowStale = true
	if _, err := Open(opt); err != nil {
		t.Fatalf("--allow-stale: %v", err)
	}
}

func mustHex(t *testing.T, d string) string {
	if len(d) != 71 {
		t.Fatalf("digest %q", d)
	}
	return d[7:]
}

func TestChangedPinnedRootDropsCache(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	if _, err := w.open(); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := repo.Init(other, 1, 1); err != nil {
		t.Fatal(err)
	}
	opt := w.options(w.srv.URL)
	opt.RootFile = filepath.Join(other, "root.json")
	// The cached metadata of the first registry is not trusted under the
	// new root: the refresh starts from the new pin, and the served
	// metadata is not signed by its keys.
	_, err := Open(opt)
	refreshCheck(t, err, "role signatures")
}

func TestPlainStaticServerAndFileMirror(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	w.publish("app", "1.0.0", map[string]string{"base": "^1.0.0"})
	if err := w.repo.Rotate("root"); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "http.server", "--bind", "127.0.0.1", "--directory", repo.ServeDir(w.dir), fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	var c *Client
	for i := 0; i < 50; i++ {
		if c, err = Open(w.options(url)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.install(c, ResolveOptions{}, "app"); err != nil {
		t.Fatalf("from python3 -m http.server: %v", err)
	}

	// registry mirror to a directory, then install from file://.
	mdir := filepath.Join(t.TempDir(), "mirror")
	mopt := w.options(url)
	mopt.CacheDir = t.TempDir()
	if _, err := Mirror(mopt, mdir); err != nil {
		t.Fatal(err)
	}
	cancel()
	w.node = t.TempDir()
	w.cfg = w.nodeConfig(w.keys)
	fc, err := Open(w.options("file://" + mdir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.install(fc, ResolveOptions{}, "app"); err != nil {
		t.Fatalf("from file:// mirror: %v", err)
	}
	if w.installed("app") != "1.0.0" || w.installed("base") != "1.0.0" {
		t.Fatal("not installed from the mirror")
	}
}

func TestVerificationCacheDroppedWhenKeysChange(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	if c.Verified(c.Entries[0], w.cfg) {
		t.Fatal("verified before any check")
	}
	if _, err := w.install(c, ResolveOptions{}, "base"); err != nil {
		t.Fatal(err)
	}
	if !c.Verified(c.Entries[0], w.cfg) {
		t.Fatal("not remembered")
	}
	other, _ := verify.GenerateKey()
	changed := w.nodeConfig(append(w.keys[:1:1], other))
	if c.Verified(c.Entries[0], changed) {
		t.Fatal("remembered under other keys")
	}
	if c.Verified(c.Entries[0], w.cfg) {
		t.Fatal("the cache survived a key change")
	}
}
