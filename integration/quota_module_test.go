package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/runtime"
)

// allocated is how many bytes of the host's disk a file takes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// A module fills its /data: the write that crosses its quota gets ENOSPC
// inside the container, the image on the host never takes more of the
// node's disk than the quota, the neighbour still writes, the inode limit
// holds as well, ps's figures come from statfs, a raised quota applies at
// the next load with the data intact, and a shrink below use is refused
// naming the module, its use and the size asked for.
func TestRootQuotaModuleFillsItsData(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	const quota = 32 << 20
	s.cfg.Sandbox.DiskBytes, s.cfg.Sandbox.DiskInodes = quota, 2048
	l := runtime.Layout{Root: s.root}

	o := s.runAs("filler", "fill-data", "")
	if o.res.Errno != "ENOSPC" && o.res.Errno != "EDQUOT" {
		t.Fatalf("fill-data: %+v\n%s", o.res, o.stderr)
	}
	if o.res.Count < quota/2 || o.res.Count > quota {
		t.Errorf("fill-data wrote %d bytes under a %d-byte quota", o.res.Count, quota)
	}
	if got := allocated(t, l.Image("filler")); got > quota {
		t.Errorf("the image takes %d bytes of the host's disk, above its %d-byte quota", got, quota)
	}
	t.Logf("filled %d of %d bytes; the image takes %d on the host", o.res.Count, quota, allocated(t, l.Image("filler")))

	if n := s.runAs("neighbour", "write-data", ""); n.res.Errno != "ok" {
		t.Errorf("the neighbour cannot write its /data: %+v", n.res)
	}

	in := s.runAs("inodes", "fill-data-inodes", "")
	if in.res.Errno != "ENOSPC" && in.res.Errno != "EDQUOT" {
		t.Fatalf("fill-data-inodes: %+v\n%s", in.res, in.stderr)
	}
	if in.res.Count < 1000 || in.res.Count > 2048 {
		t.Errorf("created %d files under a 2048-inode quota", in.res.Count)
	}

	// The figures ps shows, while the module is loaded.
	if err := s.start("filler", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	d, err := s.sup.Disk("filler")
	if err != nil {
		t.Fatal(err)
	}
	if d.BytesLimit == 0 || d.BytesLimit > quota || d.BytesUsed < uint64(o.res.Count) || d.InodesLimit == 0 {
		t.Errorf("disk figures %+v after writing %d bytes", d, o.res.Count)
	}
	fill := filepath.Join(l.Data("filler"), "fill")
	before, err := os.Stat(fill)
	if err != nil {
		t.Fatal(err)
	}
	s.sup.Stop(context.Background(), "filler")

	// Grow at the next load; the data is still there.
	s.cfg.Sandbox.DiskBytes = 2 * quota
	if err := s.start("filler", "sleep", "60s", nil, nil); err != nil {
		t.Fatal(err)
	}
	grown, err := s.sup.Disk("filler")
	if err != nil {
		t.Fatal(err)
	}
	if grown.BytesLimit <= d.BytesLimit {
		t.Errorf("limit %d after growing, was %d", grown.BytesLimit, d.BytesLimit)
	}
	if after, err := os.Stat(fill); err != nil || after.Size() != before.Size() {
		t.Errorf("data after growing: %v, %v (was %d bytes)", after, err, before.Size())
	}
	s.sup.Stop(context.Background(), "filler")

	// Shrink below use: refused, and the module is not loaded.
	s.cfg.Sandbox.DiskBytes = 16 << 20
	err = s.start("filler", "sleep", "60s", nil, nil)
	if err == nil {
		t.Fatal("a shrink below use was accepted")
	}
	for _, want := range []string{"filler", "disk_bytes", "16777216"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("shrink refusal %q does not name %q", err, want)
		}
	}
	if _, ok := s.sup.Status("filler"); ok {
		t.Error("the refused module is loaded")
	}
}

// A module that ran before quotas existed keeps its data: at its first load
// with a quota, the files on the host's filesystem move into the image.
func TestRootQuotaMovesOldDataIntoImage(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	l := runtime.Layout{Root: s.root}
	// What the last release left: the module's files directly in its data
	// dir on the host's filesystem (readable by any uid: the module's uid
	// changes with the host-wide registry, a different test).
	if err := os.MkdirAll(l.DataParent("keeper"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.DataParent("keeper"), "wallet"), []byte("keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := s.runAs("keeper", "read-host", "/data/wallet")
	if o.res.Errno != "ok" {
		t.Fatalf("the module cannot read its moved file: %+v\n%s", o.res, o.stderr)
	}
	if _, err := os.Stat(l.Image("keeper")); err != nil {
		t.Errorf("no image: %v", err)
	}
	for _, p := range []string{l.DataParent("keeper") + ".to-image", l.DataParent("keeper") + ".to-image-done"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	// Unloaded: the host's filesystem holds nothing under the parent.
	if entries, err := os.ReadDir(l.DataParent("keeper")); err != nil || len(entries) != 0 {
		t.Errorf("data parent after unload: %v %v", entries, err)
	}
}
