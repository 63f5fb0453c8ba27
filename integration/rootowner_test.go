package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/runtime"
)

// TestRootRuntimeRootOthersCanChangeRefused: a runtime root under a
// directory another user owns, or one others may write without the sticky
// bit, is refused before anything is made in it: that user could rename
// the bundles, sockets or state away and swap in their own. Checked from
// the host: the refused roots stay absent. Under a sticky /tmp-like
// directory, and through a link to a safe place, the supervisor starts.
func TestRootRuntimeRootOthersCanChangeRefused(t *testing.T) {
	requireRoot(t)
	shim, _ := buildBinaries(t)
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o711) // the modules' uids search the way to a root
	os.Chmod(base, 0o711)
	mkdir := func(name string, mode os.FileMode, uid int) string { return mkdirAs(t, base, name, mode, uid) }
	owned := mkdir("owned", 0o755, 65534)
	open := mkdir("open", 0o777, 0)
	sticky := mkdir("sticky", 0o777|os.ModeSticky, 0)
	safe := mkdir("safe", 0o711, 0)
	link := filepath.Join(base, "link-to-owned")
	if err := os.Symlink(owned, link); err != nil {
		t.Fatal(err)
	}
	goodLink := filepath.Join(base, "link-to-safe")
	if err := os.Symlink(safe, goodLink); err != nil {
		t.Fatal(err)
	}
	host, err := runtime.DetectHost("/sys/fs/cgroup", base)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		root, want string
	}{
		{filepath.Join(owned, "root"), owned + " belongs to uid 65534, not root"},
		{filepath.Join(open, "root"), open + " is writable by others (mode 0777, no sticky bit)"},
		{filepath.Join(link, "root"), owned + " belongs to uid 65534, not root"},
		{filepath.Join(sticky, "root"), ""},
		{filepath.Join(goodLink, "root"), ""},
	} {
		sup, err := runtime.NewSupervisor(runtime.Options{Root: c.root, Shim: shim, Host: host, UIDRegistry: filepath.Join(base, "uids.json")})
		if sup != nil {
			sup.Close(t.Context())
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("root %s: %v, want the supervisor started", c.root, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("root %s: %v, want a refusal naming %q", c.root, err, c.want)
		case c.want != "":
			// Nothing was made under the refused root but the root itself
			// (made first, root's, 0711, and left unused).
			if _, err := os.Stat(filepath.Join(c.root, "state")); !os.IsNotExist(err) {
				t.Errorf("root %s: state dir made under a refused root (%v)", c.root, err)
			}
		}
	}
}

// mkdirAs makes dir/name with mode and uid (and the same gid): the
// directories a test of who may change a path puts on it.
func mkdirAs(t *testing.T, dir, name string, mode os.FileMode, uid int) string {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, uid, uid); err != nil {
		t.Fatal(err)
	}
	return d
}
