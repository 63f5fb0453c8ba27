package quota

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var (
	projectHost = Facts{Dir: "/var/lib/blvm-sandbox/data", FSType: "xfs", ProjectQuota: true, LoopControl: true, Ext4: true, Mkfs: "/usr/sbin/mkfs.ext4"}
	imageHost   = Facts{Dir: "/var/lib/blvm-sandbox/data", FSType: "ext4", NoProject: "quotactl(Q_GETINFO, PRJQUOTA): project quotas are off", LoopControl: true, Ext4: true, Mkfs: "/usr/sbin/mkfs.ext4"}
)

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		facts  func(f *Facts)
		base   Facts
		kind   Kind
		errHas []string
	}{
		{name: "project quotas win", base: projectHost, kind: KindProject},
		{name: "project quotas win without loop devices", base: projectHost, facts: func(f *Facts) { f.LoopControl, f.Mkfs = false, "" }, kind: KindProject},
		{name: "image where project quotas are off", base: imageHost, kind: KindImage},
		{name: "no loop driver", base: imageHost, facts: func(f *Facts) { f.LoopControl = false },
			errHas: []string{"/var/lib/blvm-sandbox/data", "project quotas are off", "no /dev/loop-control"}},
		{name: "no mkfs", base: imageHost, facts: func(f *Facts) { f.Mkfs = "" }, errHas: []string{"install e2fsprogs"}},
		{name: "no ext4, no mkfs", base: imageHost, facts: func(f *Facts) { f.Ext4, f.Mkfs = false, "" },
			errHas: []string{"the kernel has no ext4; no mkfs.ext4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.base
			if tc.facts != nil {
				tc.facts(&f)
			}
			c, err := Choose(f)
			if tc.errHas != nil {
				if err == nil {
					t.Fatalf("chose %s, want an error", c)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q: no %q", err, s)
					}
				}
				return
			}
			if err != nil || c.Kind != tc.kind || c.Reason == "" {
				t.Fatalf("chose %v, %v; want %s with a reason", c, err, tc.kind)
			}
		})
	}
	if c, _ := Choose(imageHost); !strings.Contains(c.Reason, imageHost.NoProject) {
		t.Errorf("image choice %q does not say why project quotas are out", c.Reason)
	}
}

func TestOpenUsesTheProbe(t *testing.T) {
	for _, f := range []Facts{projectHost, imageHost} {
		var asked string
		b, c, err := Open("/data", func(dir string) (Facts, error) { asked = dir; return f, nil })
		if err != nil || asked != "/data" || b.Kind() != c.Kind {
			t.Fatalf("Open: backend %v, choice %v, %v; probe asked about %q", b, c, err, asked)
		}
		if want := map[bool]Kind{true: KindProject, false: KindImage}[f.ProjectQuota]; b.Kind() != want {
			t.Errorf("facts %+v: backend %s, want %s", f, b.Kind(), want)
		}
	}
	boom := errors.New("boom")
	if _, _, err := Open("/data", func(string) (Facts, error) { return Facts{}, boom }); !errors.Is(err, boom) || !strings.Contains(err.Error(), "/data") {
		t.Errorf("probe failure: %v", err)
	}
	if _, _, err := Open("/data", func(string) (Facts, error) { return Facts{Dir: "/data"}, nil }); err == nil {
		t.Error("a host with neither backend was accepted")
	}
}

func TestImageInodes(t *testing.T) {
	for _, tc := range []struct{ bytes, inodes, want int64 }{
		{1 << 30, 1_000_000, 262_144}, // the defaults: one inode per 4 KiB block
		{1 << 30, 100_000, 100_000},
		{16 << 20, 1024, 1024},
		{16 << 20, 1_000_000, 4096},
	} {
		if got := imageInodes(tc.bytes, tc.inodes); got != tc.want {
			t.Errorf("imageInodes(%d, %d) = %d, want %d", tc.bytes, tc.inodes, got, tc.want)
		}
	}
}

func TestMkfsArgs(t *testing.T) {
	args := mkfsArgs("/r/images/m.img", 1<<30+100, 1_000_000)
	for _, want := range [][]string{{"-m", "0"}, {"-b", "4096"}, {"-I", "256"}, {"-N", "262144"}} {
		i := slices.Index(args, want[0])
		if i < 0 || i+1 >= len(args) || args[i+1] != want[1] {
			t.Errorf("mkfs args %v: want %s %s", args, want[0], want[1])
		}
	}
	// The size in blocks, rounded down: the limit never exceeds the request.
	if n := len(args); args[n-2] != "/r/images/m.img" || args[n-1] != "262144" {
		t.Errorf("mkfs args end %v, want the image and 262144 blocks", args[n-2:])
	}
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "lazy_itable_init=1,lazy_journal_init=1") {
		t.Errorf("mkfs args %v: the fresh sparse image should not be zeroed", args)
	}
	if strings.Contains(joined, "nodiscard") {
		t.Errorf("mkfs args %v: without the discard mkfs leaves the inode tables to the kernel's lazy init", args)
	}
}

// sb64 is a superblock with the given fields, as bytes at their offsets.
func sb64(magic uint16, logBS, blocksLo, blocksHi uint32, bit64 bool) *os.File {
	b := make([]byte, 2048)
	le := binary.LittleEndian
	le.PutUint32(b[1024+0x00:], 1234)
	le.PutUint32(b[1024+0x04:], blocksLo)
	le.PutUint32(b[1024+0x18:], logBS)
	le.PutUint16(b[1024+0x38:], magic)
	if bit64 {
		le.PutUint32(b[1024+0x60:], 0x80)
	}
	le.PutUint32(b[1024+0x150:], blocksHi)
	f, _ := os.CreateTemp("", "sb-")
	f.Write(b)
	os.Remove(f.Name())
	return f
}

func TestReadSuperblock(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      *os.File
		blocks int64
		bs     int64
		err    string
	}{
		{"ext4 64bit", sb64(0xEF53, 2, 7, 1, true), 1<<32 | 7, 4096, ""},
		{"hi ignored without 64bit", sb64(0xEF53, 2, 7, 1, false), 7, 4096, ""},
		{"1k blocks", sb64(0xEF53, 0, 9, 0, false), 9, 1024, ""},
		{"not ext4", sb64(0x1234, 2, 7, 0, false), 0, 0, "not an ext4 image (superblock magic 0x1234"},
		{"silly block size", sb64(0xEF53, 40, 7, 0, false), 0, 0, "s_log_block_size 40"},
	} {
		sb, err := readSuperblock(tc.f, "m.img")
		tc.f.Close()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "m.img") {
				t.Errorf("%s: %v, want %q naming the image", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || sb.Blocks != tc.blocks || sb.BlockSize != tc.bs || sb.Inodes != 1234 {
			t.Errorf("%s: %+v, %v", tc.name, sb, err)
		}
	}
	short, _ := os.CreateTemp("", "sb-")
	defer os.Remove(short.Name())
	if _, err := readSuperblock(short, "empty.img"); err == nil || !strings.Contains(err.Error(), "empty.img") {
		t.Errorf("empty file: %v", err)
	}
}

// TestMkfsRealImage runs the real mkfs.ext4 on a file (no root needed) and
// reads back what it made: the size asked, and at least the inodes asked.
func TestMkfsRealImage(t *testing.T) {
	mkfs := findMkfs()
	if mkfs == "" {
		t.Skip("no mkfs.ext4 (e2fsprogs)")
	}
	for _, tc := range []struct{ bytes, inodes int64 }{{16 << 20, 1024}, {64 << 20, 100_000}, {1 << 30, 1_000_000}} {
		path := filepath.Join(t.TempDir(), "m.img")
		if err := os.WriteFile(path, nil, 0o600); err != nil || os.Truncate(path, tc.bytes) != nil {
			t.Fatal(err)
		}
		if err := runMkfs(mkfs, path, tc.bytes, tc.inodes); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := readSuperblock(f, path)
		f.Close()
		want := imageInodes(tc.bytes, tc.inodes)
		if err != nil || sb.Bytes() != tc.bytes || sb.Inodes < want || sb.Inodes > want+want/8+64 {
			t.Errorf("%d bytes, %d inodes: superblock %+v (%v); want %d bytes, about %d inodes", tc.bytes, tc.inodes, sb, err, tc.bytes, want)
		}
		var st os.FileInfo
		if st, err = os.Stat(path); err == nil && st.Size() != tc.bytes {
			t.Errorf("mkfs changed the image's size to %d", st.Size())
		}
	}
}

func TestShrinkError(t *testing.T) {
	err := shrinkError(Spec{Name: "lightning", Bytes: 32 << 20}, Usage{BytesUsed: 41_000_000}, 64<<20)
	for _, want := range []string{"module lightning:", "disk_bytes 33554432 (32.0 MiB)", "41000000 bytes (39.1 MiB)", "67108864"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: no %q", err, want)
		}
	}
}

func TestSpecCheck(t *testing.T) {
	ok := Spec{Name: "m", Mountpoint: "/r/data/modules/m", Image: "/r/images/m.img", Bytes: 1 << 30, Inodes: 1000}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mut  func(*Spec)
		want string
	}{
		{func(s *Spec) { s.Name = "" }, "without a module name"},
		{func(s *Spec) { s.Bytes = 0 }, "module m: quota 0 bytes"},
		{func(s *Spec) { s.Inodes = -1 }, "-1 inodes"},
		{func(s *Spec) { s.Mountpoint = "data/m" }, `mountpoint "data/m" is not an absolute path`},
	} {
		s := ok
		tc.mut(&s)
		if err := s.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", s, err, tc.want)
		}
	}
	bad := ok
	bad.Image = "images/m.img"
	if _, err := (&imageBackend{}).Attach(bad); err == nil || !strings.Contains(err.Error(), `image "images/m.img" is not an absolute path`) {
		t.Errorf("relative image: %v", err)
	}
	if _, err := (projectBackend{}).Attach(ok); err == nil || !strings.Contains(err.Error(), "project id other than 0") {
		t.Errorf("project id 0: %v", err)
	}
}

func TestParseDevNum(t *testing.T) {
	if d, err := parseDevNum("7:3"); err != nil || d != 7<<8|3 {
		t.Errorf("7:3 = %#x, %v", d, err)
	}
	for _, bad := range []string{"", "7", "7:x", "a:1"} {
		if _, err := parseDevNum(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHuman(t *testing.T) {
	for in, want := range map[int64]string{512: "512 B", 16 << 20: "16.0 MiB", 1 << 30: "1.0 GiB", 1536: "1.5 KiB"} {
		if got := human(in); got != want {
			t.Errorf("human(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := emptyDir(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "old.db"), nil, 0o600)
	if err := emptyDir(dir); err == nil || !strings.Contains(err.Error(), `not empty (it holds "old.db")`) {
		t.Errorf("non-empty: %v", err)
	}
	if err := emptyDir(filepath.Join(dir, "old.db")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file: %v", err)
	}
}

func TestRecoverWithoutImages(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "images")
	if err := Recover(missing); err != nil {
		t.Errorf("recover of a root without images: %v", err)
	}
	if left, err := Leftovers(missing); err != nil || len(left) != 0 {
		t.Errorf("leftovers of a root without images: %v, %v", left, err)
	}
}

func TestStat(t *testing.T) {
	u, err := Stat(t.TempDir())
	if err != nil || u.BytesLimit == 0 || u.BytesUsed > u.BytesLimit || u.InodesUsed > u.InodesLimit {
		t.Errorf("Stat: %+v, %v", u, err)
	}
	if _, err := Stat("/nonexistent/blvm"); err == nil || !strings.Contains(err.Error(), "statfs /nonexistent/blvm") {
		t.Errorf("Stat of a missing path: %v", err)
	}
}
