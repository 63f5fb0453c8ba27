package live

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/blvm/blvm-sandbox/policy"
)

// A mountinfo with a mount the policy does not name, a policy mount that
// is writable though the policy says ro, and an escaped mount point: each
// must show.
func TestMountsRowsCatchWhatThePolicyDoesNotSay(t *testing.T) {
	info := "" +
		"1 0 8:1 / / ro,relatime - ext4 /dev/sda1 ro\n" +
		"2 1 0:5 / /proc rw,nosuid - proc proc rw\n" +
		"3 1 7:0 / /data rw,nosuid - ext4 /dev/loop0 rw\n" +
		"4 1 8:1 /x /module/m rw,relatime - ext4 /dev/sda1 rw\n" +
		"5 1 0:6 / /dev/null rw - devtmpfs udev rw\n" +
		"6 1 8:1 /host /host\\040dir rw - ext4 /dev/sda1 rw\n"
	path := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(path, []byte(info), 0o600); err != nil {
		t.Fatal(err)
	}
	seen, err := mounts(path)
	if err != nil {
		t.Fatal(err)
	}
	p := &policy.Policy{Mounts: []policy.Mount{
		{Destination: "/proc", Type: "proc"},
		{Destination: "/data", Type: "bind"},
		{Destination: "/module/m", Type: "bind", Options: []string{"ro"}},
		{Destination: "/tmp", Type: "tmpfs"},
	}}
	if got := mountState(seen, "/module/m"); got != "rw" {
		t.Errorf("/module/m reads %q, want rw (the policy wants ro: the row must differ)", got)
	}
	if got := mountState(seen, "/tmp"); got != "absent" {
		t.Errorf("/tmp reads %q, want absent", got)
	}
	if got := mountState(seen, "/"); got != "ro" {
		t.Errorf("/ reads %q, want ro", got)
	}
	if got, want := unexpected(seen, p), []string{"/host dir"}; !slices.Equal(got, want) {
		t.Errorf("outside the policy: %q, want %q (device nodes are the policy's)", got, want)
	}
}
