package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/runtime/quota"
)

// quotaChildEnv turns the test binary into a helper: "fill" writes as the
// module's uid until a write fails, "files" creates empty files until that
// fails, "attach" attaches a quota and waits to be killed.
const quotaChildEnv = "BLVM_QUOTA_CHILD"

// quotaUID stands in for a module's host uid: no user of this machine.
const quotaUID = 1_900_000_000

func init() {
	mode := os.Getenv(quotaChildEnv)
	if mode == "" {
		return
	}
	dir := os.Getenv("BLVM_QUOTA_DIR")
	var n int64
	var err error
	switch mode {
	case "fill":
		buf := bytes.Repeat([]byte{0xa5}, 1<<20)
		var f *os.File
		if f, err = os.OpenFile(filepath.Join(dir, "fill"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err == nil {
			limit, _ := strconv.ParseInt(os.Getenv("BLVM_QUOTA_MAX"), 10, 64)
			for err == nil && (limit == 0 || n < limit) {
				var w int
				w, err = f.Write(buf)
				n += int64(w)
			}
			if err == nil {
				err = f.Sync()
			}
			f.Close()
		}
	case "files":
		for err == nil {
			var f *os.File
			if f, err = os.Create(filepath.Join(dir, "f"+strconv.FormatInt(n, 10))); err == nil {
				f.Close()
				n++
			}
		}
	case "attach":
		b, _, oerr := quota.Open(dir, imageProbe)
		err = oerr
		for i := 0; err == nil && i < 2; i++ {
			_, err = b.Attach(quotaSpec(dir, fmt.Sprintf("orphan%d", i), 16<<20, 2048))
		}
		if err == nil {
			os.Stdout.WriteString("attached\n")
			time.Sleep(time.Minute)
		}
	}
	fmt.Printf("n=%d err=%s\n", n, errno(err))
	os.Exit(0)
}

// imageProbe is the kernel's probe with project quotas taken away: these
// tests are about the image backend, whatever the filesystem supports.
func imageProbe(dir string) (quota.Facts, error) {
	f, err := quota.ProbeKernel(dir)
	f.ProjectQuota = false
	f.NoProject = "disabled by the test"
	return f, err
}

// quotaRoot makes a runtime-root-like tree: images/ (0700) and
// data/modules/. Cleanup recovers it and checks nothing is left.
func quotaRoot(t *testing.T) (root string, b quota.Backend) {
	t.Helper()
	requireRoot(t)
	root, err := os.MkdirTemp("", "blvm-quota-")
	if err != nil {
		t.Fatal(err)
	}
	// As in a runtime root: the modules' uids search their way to their
	// own dirs; the images are root's alone.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"", 0o711}, {"images", 0o700}, {"data", 0o711}, {"data/modules", 0o711}} {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(p, d.mode); err != nil || os.Chmod(p, d.mode) != nil {
			t.Fatal(err)
		}
	}
	b, choice, err := quota.Open(root, imageProbe)
	if err != nil {
		t.Fatal(err)
	}
	if b.Kind() != quota.KindImage {
		t.Fatalf("backend %s, want image", choice)
	}
	t.Cleanup(func() {
		err := quota.Recover(filepath.Join(root, "images"))
		left, lerr := quota.Leftovers(filepath.Join(root, "images"))
		if err != nil || lerr != nil || len(left) > 0 {
			// Kept: removing it would delete through the mounts.
			t.Errorf("cleanup: recover: %v; leftovers: %v %v; %s kept", err, left, lerr, root)
			return
		}
		os.RemoveAll(root)
	})
	return root, b
}

// quotaSpec is module name's quota under root, its mountpoint made.
func quotaSpec(root, name string, size, inodes int64) quota.Spec {
	mp := filepath.Join(root, "data", "modules", name)
	os.MkdirAll(mp, 0o700)
	return quota.Spec{Name: name, Mountpoint: mp, Image: filepath.Join(root, "images", name+".img"), Bytes: size, Inodes: inodes}
}

// attachAsModule attaches s and gives the mount to the module's uid, as the
// runtime will; it returns the module's data dir in it.
func attachAsModule(t *testing.T, b quota.Backend, s quota.Spec) (*quota.Mount, string) {
	t.Helper()
	m, err := b.Attach(s)
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(s.Mountpoint, "db")
	for _, err := range []error{
		os.Chown(s.Mountpoint, quotaUID, quotaUID), os.Chmod(s.Mountpoint, 0o700),
		os.MkdirAll(db, 0o700), os.Chown(db, quotaUID, quotaUID),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return m, db
}

// asModule runs the helper mode in dir as the module's uid and returns how
// far it got and the errno that stopped it.
func asModule(t *testing.T, mode, dir string, env ...string) (n int64, errName string) {
	t.Helper()
	cmd := exec.Command(moduleHelper(t))
	cmd.Env = append([]string{quotaChildEnv + "=" + mode, "BLVM_QUOTA_DIR=" + dir}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: quotaUID, Gid: quotaUID}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s child: %v\n%s", mode, err, out)
	}
	head, errName, ok := strings.Cut(strings.TrimSpace(string(out)), " err=")
	if _, err := fmt.Sscanf(head, "n=%d", &n); err != nil || !ok {
		t.Fatalf("%s child said %q", mode, out)
	}
	return n, errName
}

// moduleHelper is a copy of the test binary that the module's uid may run:
// go test's build dir is root's alone.
func moduleHelper(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "blvm-quota-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := filepath.Join(dir, "helper")
	data, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.Chmod(dir, 0o711)
	}
	if err == nil {
		err = os.WriteFile(exe, data, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func stat(t *testing.T, dir string) quota.Usage {
	t.Helper()
	u, err := quota.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRootQuotaWritePastLimit: the module's uid writing without end gets
// ENOSPC at its quota; the host holds no more than the image's size for it
// and a neighbour can still write.
func TestRootQuotaWritePastLimit(t *testing.T) {
	root, b := quotaRoot(t)
	const size = 32 << 20
	sa := quotaSpec(root, "filler", size, 4096)
	ma, dbA := attachAsModule(t, b, sa)
	mb, dbB := attachAsModule(t, b, quotaSpec(root, "neighbour", size, 4096))
	if ma.Limits.BytesLimit > size || ma.Limits.BytesLimit < size*8/10 {
		t.Errorf("effective byte limit %d for a %d-byte image", ma.Limits.BytesLimit, size)
	}

	n, e := asModule(t, "fill", dbA)
	if e != "no space left on device" {
		t.Fatalf("filling as uid %d: stopped by %q after %d bytes, want ENOSPC", quotaUID, e, n)
	}
	if n > size || n < int64(ma.Limits.BytesLimit)*9/10 {
		t.Errorf("wrote %d bytes before ENOSPC; effective limit %d", n, ma.Limits.BytesLimit)
	}
	if u := stat(t, sa.Mountpoint); u.BytesLimit-u.BytesUsed > 1<<20 {
		t.Errorf("after ENOSPC: %+v, want full", u)
	}
	// Host side: the image is the only host storage the module reached.
	var st unix.Stat_t
	if err := unix.Stat(sa.Image, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks*512 > size {
		t.Errorf("image %s: size %d, %d bytes allocated; want both <= %d", sa.Image, st.Size, st.Blocks*512, size)
	}
	if st.Mode&0o777 != 0o600 || st.Uid != 0 {
		t.Errorf("image %s: mode %o uid %d, want 0600 root", sa.Image, st.Mode&0o777, st.Uid)
	}
	if n, e := asModule(t, "fill", dbB, "BLVM_QUOTA_MAX=8388608"); e != "ok" || n != 8<<20 {
		t.Errorf("neighbour wrote %d bytes, stopped by %q; want 8 MiB, ok", n, e)
	}

	for _, m := range []*quota.Mount{ma, mb} {
		if err := b.Detach(m); err != nil {
			t.Fatal(err)
		}
	}
	// The data lived in the image, not under the mountpoint on the host.
	if ents, _ := os.ReadDir(sa.Mountpoint); len(ents) != 0 {
		t.Errorf("host %s holds %d entries after detach, want none", sa.Mountpoint, len(ents))
	}
}

// TestRootQuotaInodes: creating files without end gets ENOSPC at the inode
// limit while bytes remain.
func TestRootQuotaInodes(t *testing.T) {
	root, b := quotaRoot(t)
	s := quotaSpec(root, "inodes", 16<<20, 1024)
	m, db := attachAsModule(t, b, s)
	if l := m.Limits.InodesLimit; l < 1024 || l > 2048 {
		t.Errorf("effective inode limit %d for a request of 1024", l)
	}
	before := stat(t, s.Mountpoint)
	n, e := asModule(t, "files", db)
	if e != "no space left on device" {
		t.Fatalf("creating files: stopped by %q after %d, want ENOSPC", e, n)
	}
	if free := int64(before.InodesLimit - before.InodesUsed); n != free {
		t.Errorf("created %d files; %d inodes were free", n, free)
	}
	after := stat(t, s.Mountpoint)
	if after.InodesUsed != after.InodesLimit || after.BytesUsed > after.BytesLimit/2 {
		t.Errorf("after inode exhaustion: %+v; want inodes full, bytes mostly free", after)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
	// Every group's inode table is known to be zero, so no mount starts the
	// kernel's lazy init (256 MiB of writes for a 1 GiB image).
	out, err := exec.Command("dumpe2fs", s.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v: %s", err, out)
	}
	groups := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Group ") && strings.Contains(line, "(Blocks ") {
			groups++
			if !strings.Contains(line, "ITABLE_ZEROED") {
				t.Errorf("%s: inode table not marked zeroed: %s", s.Image, line)
			}
		}
	}
	if groups == 0 {
		t.Errorf("dumpe2fs %s listed no groups:\n%s", s.Image, out)
	}
}

// TestRootQuotaGrow: a raised limit takes effect at the next Attach, with
// the data intact; while mounted it waits.
func TestRootQuotaGrow(t *testing.T) {
	root, b := quotaRoot(t)
	s := quotaSpec(root, "grow", 16<<20, 2048)
	m, db := attachAsModule(t, b, s)
	if n, e := asModule(t, "fill", db, "BLVM_QUOTA_MAX=8388608"); e != "ok" || n != 8<<20 {
		t.Fatalf("wrote %d, %q", n, e)
	}
	sum := fileSum(t, filepath.Join(db, "fill"))
	small := m.Limits

	// Raised while mounted: pending, nothing changes under the module.
	s.Bytes = 64 << 20
	if m, err := b.Attach(s); err != nil || !m.Pending || m.Resized || m.Limits.BytesLimit != small.BytesLimit {
		t.Fatalf("attach while mounted with a raised limit: %+v, %v; want pending, unchanged", m, err)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}

	m, err := b.Attach(s)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Resized || m.Limits.BytesLimit < 56<<20 || m.Limits.InodesLimit < small.InodesLimit {
		t.Errorf("after growing to 64 MiB: resized %v, limits %+v (were %+v)", m.Resized, m.Limits, small)
	}
	if got := fileSum(t, filepath.Join(db, "fill")); got != sum {
		t.Error("data changed across the grow")
	}
	if n, e := asModule(t, "fill", db, "BLVM_QUOTA_MAX=41943040"); e != "ok" {
		t.Errorf("after the grow, writing 40 MiB stopped by %q at %d", e, n)
	}
	if fi, err := os.Stat(s.Image + ".undo"); err == nil {
		t.Errorf("undo file left after a resize: %d bytes", fi.Size())
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
	// Unchanged: nothing to do, and it says so.
	if m, err = b.Attach(s); err != nil || m.Resized || m.Pending {
		t.Fatalf("re-attach at the same size: %+v, %v", m, err)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
}

// TestRootQuotaShrink: a limit below use is refused with the module, the
// use and the requested size, leaving image and data as they were; one
// above use shrinks the image, data intact.
func TestRootQuotaShrink(t *testing.T) {
	root, b := quotaRoot(t)
	s := quotaSpec(root, "shrink", 64<<20, 2048)
	m, db := attachAsModule(t, b, s)
	if _, e := asModule(t, "fill", db, "BLVM_QUOTA_MAX=41943040"); e != "ok" {
		t.Fatal(e)
	}
	sum := fileSum(t, filepath.Join(db, "fill"))
	used := stat(t, s.Mountpoint).BytesUsed

	low := s
	low.Bytes = 32 << 20
	_, err := b.Attach(low) // while mounted
	wantShrinkError(t, err, used)
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
	_, err = b.Attach(low) // detached
	wantShrinkError(t, err, used)
	if left, _ := quota.Leftovers(filepath.Join(root, "images")); len(left) > 0 {
		t.Errorf("a refused shrink left %v", left)
	}
	if fi, err := os.Stat(s.Image); err != nil || fi.Size() != 64<<20 {
		t.Errorf("image after a refused shrink: %v, %v", fi.Size(), err)
	}

	above := s
	above.Bytes = 56 << 20
	if m, err = b.Attach(above); err != nil {
		t.Fatal(err)
	}
	if got := fileSum(t, filepath.Join(db, "fill")); got != sum {
		t.Error("data changed across the shrink")
	}
	fi, err := os.Stat(s.Image)
	if err != nil || fi.Size() != 56<<20 || !m.Resized || m.Limits.BytesLimit > 56<<20 {
		t.Errorf("after shrinking to 56 MiB: image %d bytes (%v), %+v", fi.Size(), err, m)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
}

// TestRootQuotaResizeInterrupted: an undo file left by a resize that was
// cut short is rolled back before anything else, and the resize redone.
func TestRootQuotaResizeInterrupted(t *testing.T) {
	root, b := quotaRoot(t)
	s := quotaSpec(root, "undo", 16<<20, 2048)
	m, db := attachAsModule(t, b, s)
	if _, e := asModule(t, "fill", db, "BLVM_QUOTA_MAX=4194304"); e != "ok" {
		t.Fatal(e)
	}
	sum := fileSum(t, filepath.Join(db, "fill"))
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
	// What a crash inside resize2fs leaves: a file grown, the filesystem
	// partly rewritten, an undo file. Simulated with the real tools: the
	// resize runs to its end, as a crash at its very last write would look.
	if err := os.Truncate(s.Image, 48<<20); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"e2fsck", "-f", "-p", s.Image}, {"resize2fs", "-z", s.Image + ".undo", s.Image}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	m, err := b.Attach(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Image + ".undo"); err == nil {
		t.Error("undo file still there")
	}
	// Rolled back to 16 MiB, so there was nothing left to resize; without
	// the roll-back Attach would shrink the 48 MiB filesystem itself.
	if fi, _ := os.Stat(s.Image); fi.Size() != 16<<20 || m.Limits.BytesLimit > 16<<20 || m.Resized {
		t.Errorf("after roll-back: image %d bytes, resized %v, limits %+v; want 16 MiB, not resized", fi.Size(), m.Resized, m.Limits)
	}
	if got := fileSum(t, filepath.Join(db, "fill")); got != sum {
		t.Error("data changed across the roll-back")
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
}

func wantShrinkError(t *testing.T, err error, used uint64) {
	t.Helper()
	if err == nil {
		t.Fatal("shrink below use accepted")
	}
	for _, want := range []string{"module shrink:", "33554432", strconv.FormatUint(used, 10) + " bytes", "already uses"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("shrink error %q: no %q", err, want)
		}
	}
}

// TestRootQuotaRecoverAfterKill: a runtime killed with SIGKILL leaves its
// image mounts and loop devices; Recover removes all of them and touches
// another root's.
func TestRootQuotaRecoverAfterKill(t *testing.T) {
	root, b := quotaRoot(t)
	other, ob := quotaRoot(t)
	om, err := ob.Attach(quotaSpec(other, "bystander", 16<<20, 2048))
	if err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(root, "images")

	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{quotaChildEnv + "=attach", "BLVM_QUOTA_DIR=" + root}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, _ := out.Read(line)
	if string(line[:n]) != "attached\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("attach child said %q", line[:n])
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	left, err := quota.Leftovers(images)
	if err != nil || len(left) != 4 {
		t.Fatalf("after kill -9: leftovers %v (%v), want 2 mounts and 2 loop devices", left, err)
	}
	if err := quota.Recover(images); err != nil {
		t.Fatal(err)
	}
	if left, err := quota.Leftovers(images); err != nil || len(left) > 0 {
		t.Errorf("after recover: %v %v", left, err)
	}
	// Checked from the kernel's side too, not only through the package.
	if ms := mountsUnder(t, root); len(ms) > 0 {
		t.Errorf("mounts left under %s: %v", root, ms)
	}
	if ls := loopsBackedUnder(t, images); len(ls) > 0 {
		t.Errorf("loop devices left backed by %s: %v", images, ls)
	}
	if ms := mountsUnder(t, other); len(ms) != 1 {
		t.Errorf("recovering %s touched %s: its mounts are now %v", root, other, ms)
	}
	if err := ob.Detach(om); err != nil {
		t.Fatal(err)
	}
	// The data survives recovery: the images are attached again as they were.
	if _, err := b.Attach(quotaSpec(root, "orphan0", 16<<20, 2048)); err != nil {
		t.Fatal(err)
	}
}

// TestRootQuotaDetachAndPurge: Detach leaves no mount and no loop device;
// the mount is nosuid,nodev,noexec; Remove refuses an attached image and
// deletes a detached one.
func TestRootQuotaDetachAndPurge(t *testing.T) {
	root, b := quotaRoot(t)
	images := filepath.Join(root, "images")
	s := quotaSpec(root, "purge", 16<<20, 2048)
	m, err := b.Attach(s)
	if err != nil {
		t.Fatal(err)
	}
	ms := mountsUnder(t, root)
	if len(ms) != 1 {
		t.Fatalf("mounts under root: %v", ms)
	}
	for _, opt := range []string{"nosuid", "nodev", "noexec"} {
		if !strings.Contains(","+ms[0].Options+",", ","+opt+",") {
			t.Errorf("mount options %q: no %s", ms[0].Options, opt)
		}
	}
	if ms[0].Optional != "" {
		t.Errorf("mount propagation %q, want private", ms[0].Optional)
	}
	exe := filepath.Join(s.Mountpoint, "true")
	if data, err := os.ReadFile("/usr/bin/true"); err != nil || os.WriteFile(exe, data, 0o755) != nil {
		t.Fatal("copy /usr/bin/true")
	}
	if err := exec.Command(exe).Run(); !errors.Is(err, syscall.EACCES) {
		t.Errorf("exec from the image: %v, want EACCES (noexec)", err)
	}
	os.Remove(exe)

	if err := b.Remove(s); err == nil || !strings.Contains(err.Error(), "still attached") {
		t.Errorf("remove while attached: %v", err)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
	if ms := mountsUnder(t, root); len(ms) > 0 {
		t.Errorf("mounts after detach: %v", ms)
	}
	if ls := loopsBackedUnder(t, images); len(ls) > 0 {
		t.Errorf("loop devices after detach: %v", ls)
	}
	if err := b.Remove(s); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Image); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("image after remove: %v", err)
	}
}

// TestRootQuotaRefusals: Attach refuses an image others could write, an
// images dir others can reach, and a mountpoint that would hide files; each
// refusal leaves nothing attached.
func TestRootQuotaRefusals(t *testing.T) {
	root, b := quotaRoot(t)
	images := filepath.Join(root, "images")
	s := quotaSpec(root, "refused", 16<<20, 2048)
	m, err := b.Attach(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		break_, fix func() error
		want        string
	}{
		{"image mode 0644", func() error { return os.Chmod(s.Image, 0o644) }, func() error { return os.Chmod(s.Image, 0o600) }, "mode 0644; want root's alone"},
		{"image owned by the module", func() error { return os.Chown(s.Image, quotaUID, 0) }, func() error { return os.Chown(s.Image, 0, 0) }, "uid 1900000000"},
		{"images dir 0755", func() error { return os.Chmod(images, 0o755) }, func() error { return os.Chmod(images, 0o700) }, "images dir: " + images + " is uid 0 mode 0755"},
		{"files under the mountpoint", func() error { return os.WriteFile(filepath.Join(s.Mountpoint, "old.db"), nil, 0o600) },
			func() error { return os.Remove(filepath.Join(s.Mountpoint, "old.db")) }, `not empty (it holds "old.db")`},
	} {
		if err := tc.break_(); err != nil {
			t.Fatal(err)
		}
		_, err := b.Attach(s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "module refused") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if left, _ := quota.Leftovers(images); len(left) > 0 {
			t.Errorf("%s: refusal left %v", tc.name, left)
		}
		if err := tc.fix(); err != nil {
			t.Fatal(err)
		}
	}
	if m, err = b.Attach(s); err != nil {
		t.Fatalf("after the fixes: %v", err)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
}

// TestRootQuotaRefusesForeignAttach: an image bound to a loop device the
// runtime did not mount (a second mount of one ext4 corrupts it), or a
// mountpoint holding another filesystem, is refused and left as it is.
func TestRootQuotaRefusesForeignAttach(t *testing.T) {
	root, b := quotaRoot(t)
	s := quotaSpec(root, "foreign", 16<<20, 2048)
	m, err := b.Attach(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("losetup", "-f", "--show", s.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	_, err = b.Attach(s)
	if err == nil || !strings.Contains(err.Error(), "already attached to "+loop+" but not mounted") {
		t.Errorf("image bound to %s elsewhere: %v", loop, err)
	}
	if mounted, _ := mountinfo.Mounted(s.Mountpoint); mounted {
		t.Errorf("the refusal mounted %s", s.Mountpoint)
	}
	if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v: %s", err, out)
	}

	if err := unix.Mount("tmpfs", s.Mountpoint, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	_, err = b.Attach(s)
	if err == nil || !strings.Contains(err.Error(), "already has tmpfs (tmpfs) mounted on it") {
		t.Errorf("tmpfs on the mountpoint: %v", err)
	}
	if err := b.Detach(&quota.Mount{Spec: s, Kind: quota.KindImage}); err == nil || !strings.Contains(err.Error(), "left alone") {
		t.Errorf("detach of a foreign mount: %v, want left alone", err)
	}
	if mounted, _ := mountinfo.Mounted(s.Mountpoint); !mounted {
		t.Error("detach unmounted a filesystem that is not the module's image")
	}
	if err := unix.Unmount(s.Mountpoint, 0); err != nil {
		t.Fatal(err)
	}
	if m, err = b.Attach(s); err != nil {
		t.Fatalf("after the fixes: %v", err)
	}
	if err := b.Detach(m); err != nil {
		t.Fatal(err)
	}
}

// TestRootQuotaAttachWaitsForAutoclear: a module started again just after
// its image was unmounted finds the loop device still bound while its last
// user (here an open fd; in a daemon, a dying container's mount namespace)
// lets go. The device clears itself, so Attach waits for it rather than
// refusing the start.
func TestRootQuotaAttachWaitsForAutoclear(t *testing.T) {
	root, b := quotaRoot(t)
	s := quotaSpec(root, "lingering", 16<<20, 2048)
	m, err := b.Attach(s)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := os.Open(m.Device)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(s.Mountpoint, 0); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		holder.Close()
	}()
	again, err := b.Attach(s)
	if err != nil {
		t.Fatalf("attach while the old loop device clears itself: %v", err)
	}
	if err := b.Detach(again); err != nil {
		t.Fatal(err)
	}
	if left, _ := quota.Leftovers(filepath.Join(root, "images")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestRootQuotaProbe: the real probe on this machine's filesystem names the
// backend and, for the image backend, why project quotas are out.
func TestRootQuotaProbe(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	f, err := quota.ProbeKernel(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := quota.Choose(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %+v: %s", dir, f, c)
	if !f.LoopControl || !f.Ext4 || f.Mkfs == "" {
		t.Errorf("facts %+v: this machine has the loop driver, ext4 and e2fsprogs", f)
	}
	if !f.ProjectQuota && (c.Kind != quota.KindImage || f.NoProject == "") {
		t.Errorf("without project quotas: chose %s, reason %q", c, f.NoProject)
	}
}

// BenchmarkRootQuotaAttach: the quota's cost per module start, for the
// default 1 GiB, 1,000,000-inode quota.
func BenchmarkRootQuotaAttach(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	root := b.TempDir()
	os.MkdirAll(filepath.Join(root, "images"), 0o700)
	qb, _, err := quota.Open(root, imageProbe)
	if err != nil {
		b.Fatal(err)
	}
	defer quota.Recover(filepath.Join(root, "images"))
	s := quotaSpec(root, "bench", 1<<30, 1_000_000)
	detach := func(m *quota.Mount) {
		if err := qb.Detach(m); err != nil {
			b.Fatal(err)
		}
	}
	// run times Attach(spec) alone, with before and after untimed.
	run := func(b *testing.B, spec quota.Spec, before func(), after func(*quota.Mount)) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			before()
			b.StartTimer()
			m, err := qb.Attach(spec)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			after(m)
			b.StartTimer()
		}
	}
	nothing := func() {}
	b.Run("fresh", func(b *testing.B) {
		run(b, s, func() { qb.Remove(s) }, detach)
	})
	b.Run("existing", func(b *testing.B) {
		run(b, s, nothing, detach)
	})
	b.Run("mounted", func(b *testing.B) {
		m, err := qb.Attach(s)
		if err != nil {
			b.Fatal(err)
		}
		run(b, s, nothing, func(*quota.Mount) {})
		detach(m)
	})
	b.Run("grow-1GiB-to-2GiB", func(b *testing.B) {
		big := s
		big.Bytes = 2 << 30
		run(b, big, func() {
			qb.Remove(s)
			m, err := qb.Attach(s)
			if err != nil {
				b.Fatal(err)
			}
			detach(m)
		}, func(m *quota.Mount) {
			if !m.Resized {
				b.Fatal("not resized")
			}
			detach(m)
		})
	})
	b.Run("detach", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			m, err := qb.Attach(s)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			detach(m)
		}
	})
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// mountsUnder lists this namespace's mounts at or below dir.
func mountsUnder(t *testing.T, dir string) []*mountinfo.Info {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// loopsBackedUnder reads /sys/block/loop*/loop/backing_file for files in dir.
func loopsBackedUnder(t *testing.T, dir string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), real+"/") {
			out = append(out, f+": "+strings.TrimSpace(string(b)))
		}
	}
	return out
}
