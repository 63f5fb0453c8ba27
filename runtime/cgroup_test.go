package runtime

import (
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestMatchHierarchies(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup", Root: "/", VFSOptions: "rw,cpu,cpuacct"},
		{Mountpoint: "/sys/fs/cgroup/memory", FSType: "cgroup", Root: "/", VFSOptions: "rw,memory"},
		// A container's view: the mount is a subtree of the hierarchy.
		{Mountpoint: "/sys/fs/cgroup/pids", FSType: "cgroup", Root: "/docker/abc", VFSOptions: "rw,pids"},
		{Mountpoint: "/sys/fs/cgroup/systemd", FSType: "cgroup", Root: "/", VFSOptions: "rw,xattr,name=systemd"},
		{Mountpoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Root: "/", VFSOptions: "rw"},
	}
	proc := strings.Join([]string{
		"9:name=systemd:/system.slice/blvm-sandbox.service",
		"8:pids:/docker/abc/inner",
		"7:cpu,cpuacct:/",
		"6:blkio:/", // not mounted: left out
		"4:memory:/process_api/x",
		"3:devices:/docker/other", // outside the mount's root: left out
		"0::/",
	}, "\n")
	hs, err := matchHierarchies(strings.NewReader(proc), mounts)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range hs {
		got[h.Mount] = h.Own
	}
	want := map[string]string{
		"/sys/fs/cgroup/systemd":     "/system.slice/blvm-sandbox.service",
		"/sys/fs/cgroup/pids":        "/inner",
		"/sys/fs/cgroup/cpu,cpuacct": "/",
		"/sys/fs/cgroup/memory":      "/process_api/x",
		"/sys/fs/cgroup/unified":     "/",
	}
	if len(got) != len(want) {
		t.Fatalf("hierarchies %v, want %v", got, want)
	}
	for m, own := range want {
		if got[m] != own {
			t.Errorf("%s: own %q, want %q", m, got[m], own)
		}
	}
}

// A damaged record cannot point recovery at cgroups that are not this
// root's parents.
func TestRecordedParentsRefuseForeignPaths(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	if err := l.prepare(); err != nil {
		t.Skip("prepare:", err)
	}
	mounts, _ := cgroupMounts()
	if len(mounts) == 0 {
		t.Skip("no cgroup mounts here")
	}
	name, mnt := l.CgroupParent(), mounts[0]
	ok := mnt + "/x/" + name
	bad := []string{mnt + "/x", "/etc/" + name, mnt + "/x/../../" + name, "relative/" + name, mnt + "/x/blvm-sandbox-00000000"}
	if err := l.writeCgroupRecord(append([]string{ok}, bad...)); err != nil {
		t.Fatal(err)
	}
	got, err := l.recordedParents()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != ok {
		t.Fatalf("recorded parents %v, want only %s", got, ok)
	}
}
