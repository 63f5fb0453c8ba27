package runtime

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func requireRootUnit(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
}

func fileUID(st fs.FileInfo) int { return int(st.Sys().(*syscall.Stat_t).Uid) }

// checkOwned fails unless path is owned by uid with exactly mode.
func checkOwned(t *testing.T, path string, uid int, mode fs.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fileUID(st) != uid || st.Mode().Perm() != mode {
		t.Errorf("%s: uid %d mode %04o, want uid %d mode %04o", path, fileUID(st), st.Mode().Perm(), uid, mode)
	}
}

var testIDs = IDRange{Base: IDsBase, Count: IDsPerModule}

func testLayout(t *testing.T) Layout {
	l := Layout{Root: t.TempDir()}
	if err := os.MkdirAll(l.ModulesDataDir(), 0o711); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPrepareDataFresh(t *testing.T) {
	requireRootUnit(t)
	l := testLayout(t)
	if err := l.prepareData("m", testIDs); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, l.DataParent("m"), testIDs.HostUID(), 0o700)
	checkOwned(t, l.Data("m"), testIDs.HostUID(), 0o700)
	checkOwned(t, filepath.Join(l.DataParent("m"), dataMarker), 0, 0o444)
}

// A module's own modes do not survive: the next prepare resets them.
func TestPrepareDataResetsModes(t *testing.T) {
	requireRootUnit(t)
	l := testLayout(t)
	l.prepareData("m", testIDs)
	os.WriteFile(filepath.Join(l.Data("m"), "state"), []byte("x"), 0o600)
	os.Chmod(l.Data("m"), 0o777)
	os.Chmod(l.DataParent("m"), 0o777)
	os.Chown(l.Data("m"), 0, 0)
	if err := l.prepareData("m", testIDs); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, l.DataParent("m"), testIDs.HostUID(), 0o700)
	checkOwned(t, l.Data("m"), testIDs.HostUID(), 0o700)
	if b, err := os.ReadFile(filepath.Join(l.Data("m"), "state")); err != nil || string(b) != "x" {
		t.Errorf("module file after reset: %q %v", b, err)
	}
}

// The old layout (the module's files directly in data/modules/<name>) moves
// into db/ whole, including a db and a marker of the module's own making: a
// marker it could write is not root's, so it proves nothing.
func TestPrepareDataMigratesOldLayout(t *testing.T) {
	requireRootUnit(t)
	l := testLayout(t)
	old := l.DataParent("m")
	uid := testIDs.HostUID()
	for _, f := range []string{"wallet.db", "sub/chain.log", "db/own", dataMarker} {
		p := filepath.Join(old, f)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(f), 0o600)
		os.Chown(p, uid, uid)
	}
	os.Chown(old, uid, uid)
	if err := l.prepareData("m", testIDs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"wallet.db", "sub/chain.log", "db/own", dataMarker} {
		if b, err := os.ReadFile(filepath.Join(l.Data("m"), f)); err != nil || string(b) != f {
			t.Errorf("db/%s after migration: %q %v", f, b, err)
		}
	}
	entries, _ := os.ReadDir(old)
	if len(entries) != 2 {
		t.Errorf("parent holds %v, want db and the marker", entries)
	}
	checkOwned(t, filepath.Join(old, dataMarker), 0, 0o444)
	// Run again: nothing moves twice.
	if err := l.prepareData("m", testIDs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Data("m"), "db", "own")); err != nil {
		t.Errorf("second prepare moved things: %v", err)
	}
}

// A migration a crash interrupted is finished at the next prepare.
func TestPrepareDataFinishesInterruptedMigration(t *testing.T) {
	requireRootUnit(t)
	for _, c := range []struct {
		name  string
		setup func(l Layout)
		err   string
	}{
		{"renamed away", func(l Layout) {}, ""},
		{"parent made", func(l Layout) { os.Mkdir(l.DataParent("m"), 0o700) }, ""},
		{"marker written", func(l Layout) { os.Mkdir(l.DataParent("m"), 0o700); writeMarker(l.DataParent("m")) }, ""},
		{"both", func(l Layout) { os.MkdirAll(l.Data("m"), 0o700) }, "both"},
	} {
		l := testLayout(t)
		os.Mkdir(l.migrating("m"), 0o700)
		os.WriteFile(filepath.Join(l.migrating("m"), "wallet.db"), []byte("keys"), 0o600)
		c.setup(l)
		err := l.prepareData("m", testIDs)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error with %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(l.Data("m"), "wallet.db")); err != nil || string(b) != "keys" {
			t.Errorf("%s: %q %v", c.name, b, err)
		}
		if _, err := os.Lstat(l.migrating("m")); err == nil {
			t.Errorf("%s: staging dir left", c.name)
		}
	}
}

// A symlink where db/ should be is refused, and its target is untouched.
func TestPrepareDataRefusesSymlink(t *testing.T) {
	requireRootUnit(t)
	l := testLayout(t)
	l.prepareData("m", testIDs)
	target := t.TempDir()
	os.Chmod(target, 0o755)
	os.RemoveAll(l.Data("m"))
	os.Symlink(target, l.Data("m"))
	if err := l.prepareData("m", testIDs); err == nil {
		t.Error("prepare followed a symlinked db/")
	}
	checkOwned(t, target, 0, 0o755)
}

func TestOwnSocket(t *testing.T) {
	requireRootUnit(t)
	l := testLayout(t)
	os.MkdirAll(l.SocketsDir(), 0o711)
	uid := testIDs.HostUID()
	old := syscall.Umask(0)
	ln, err := listenSocket(l.SocketDir("m"), l.Socket("m"), uid)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	checkOwned(t, l.SocketDir("m"), uid, 0o700)
	checkOwned(t, l.Socket("m"), uid, 0o600)
	os.Chmod(l.Socket("m"), 0o777)
	os.Chmod(l.SocketDir("m"), 0o777)
	if err := ownSocket(l.SocketDir("m"), l.Socket("m"), uid); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, l.SocketDir("m"), uid, 0o700)
	checkOwned(t, l.Socket("m"), uid, 0o600)
	// Replaced by a symlink: refused, the target keeps its owner.
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, nil, 0o644)
	os.Remove(l.Socket("m"))
	os.Symlink(target, l.Socket("m"))
	if err := ownSocket(l.SocketDir("m"), l.Socket("m"), uid); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("symlink in place of the socket: %v", err)
	}
	checkOwned(t, target, 0, 0o644)
	if _, err := net.Dial("unix", l.Socket("m")); err == nil {
		t.Error("dialled a symlink to a file")
	}
}

func TestWritePrivateFile(t *testing.T) {
	requireRootUnit(t)
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := writePrivateFile(p, []byte("a = 1\n"), 4242); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, p, 4242, 0o400)
	if err := writePrivateFile(p, []byte("b"), 4242); err == nil {
		t.Error("overwrote an existing file")
	}
}
