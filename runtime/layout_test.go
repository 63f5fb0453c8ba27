package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareRefusesUnsearchableParent(t *testing.T) {
	base := t.TempDir()
	locked := filepath.Join(base, "locked")
	os.Mkdir(locked, 0o700)
	err := Layout{Root: filepath.Join(locked, "root")}.prepare()
	if err == nil || !strings.Contains(err.Error(), locked) || !strings.Contains(err.Error(), "o+x") {
		t.Fatalf("prepare under a 0700 dir: %v, want an error naming %s", err, locked)
	}
	os.Chmod(locked, 0o711)
	os.Chmod(base, 0o711)
	if err := (Layout{Root: filepath.Join(locked, "root")}).prepare(); err != nil && !strings.Contains(err.Error(), filepath.Dir(base)) {
		t.Fatalf("prepare with searchable parents: %v", err)
	}
}

func TestCgroupParentPerRoot(t *testing.T) {
	a, b := Layout{Root: "/var/lib/a"}, Layout{Root: "/var/lib/b"}
	if a.CgroupParent() == b.CgroupParent() || !strings.HasPrefix(a.CgroupParent(), "blvm-sandbox-") {
		t.Fatalf("parents %s %s", a.CgroupParent(), b.CgroupParent())
	}
	if a.CgroupPath("m") != a.CgroupParent()+"/m" {
		t.Fatal(a.CgroupPath("m"))
	}
}

func TestLayoutRefusesBadNames(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	reg := testRegistry(t, hostIDFiles{})
	for _, n := range []string{"../x", "a/b", "", "UP"} {
		if _, _, err := l.allocateIDs(reg, n); err == nil {
			t.Errorf("allocateIDs(%q) accepted", n)
		}
	}
}

func TestLayoutPrivateParents(t *testing.T) {
	l := Layout{Root: "/r"}
	for got, want := range map[string]string{
		l.Socket("m"):     "/r/sockets/m/hub.sock",
		l.SocketDir("m"):  "/r/sockets/m",
		l.Data("m"):       "/r/data/modules/m/db",
		l.DataParent("m"): "/r/data/modules/m",
		l.Config("m"):     "/r/bundles/m/private/config.toml",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestExitReasonShellCode(t *testing.T) {
	for _, c := range []struct {
		e    ExitReason
		code int
		text string
	}{
		{ExitReason{Code: 3}, 3, "exited with code 3"},
		{ExitReason{Code: -1, Signal: 9, OOMKilled: true}, 137, "killed by SIGKILL (out of memory"},
		{ExitReason{Code: -1, Err: "no frame"}, 125, "no frame"},
	} {
		if c.e.ShellCode() != c.code || !strings.HasPrefix(c.e.String(), c.text) {
			t.Errorf("%+v: %d %q", c.e, c.e.ShellCode(), c.e.String())
		}
	}
}

func TestLogFileRotates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.log")
	l, err := openLogFile(p, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		l.Write([]byte(strings.Repeat("x", 40) + "\n"))
	}
	l.Close()
	for _, f := range []string{p, p + ".1", p + ".2"} {
		st, err := os.Stat(f)
		if err != nil || st.Size() > 100 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}
	if _, err := os.Stat(p + ".3"); err == nil {
		t.Error("kept more than 2 rotated files")
	}
}

func TestBinaryContains(t *testing.T) {
	for _, c := range []struct {
		exe, dir string
		want     bool
	}{
		{"/tmp/bench.test", "/tmp/blvm-root/state", true},
		{"/var/lib/blvm/bin/blvm-sandbox", "/var/lib/blvm/bin", true},
		{"/usr/local/bin/blvm-sandbox", "/var/lib/blvm-sandbox", false},
		{"/tmp/go-build1/b001/bench.test", "/tmp/blvm-bench-rt-1", false},
		{"/opt/blvm/bin/blvm-sandbox", "/opt/blvm/binaries", false},
		{"/opt/blvm/blvm-sandbox", "relative/root", false},
	} {
		if got := binaryContains(c.exe, c.dir); got != c.want {
			t.Errorf("binaryContains(%q, %q) = %v, want %v", c.exe, c.dir, got, c.want)
		}
	}
}
