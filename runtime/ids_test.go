package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testRegistry is a registry in a temporary directory, reading host ids
// from files (empty: none).
func testRegistry(t *testing.T, files hostIDFiles) uidRegistry {
	t.Helper()
	return uidRegistry{path: filepath.Join(t.TempDir(), "uids", "ranges.json"), base: IDsBase, files: files}
}

// hostFiles writes fake /etc files; an empty content leaves the file out.
func hostFiles(t *testing.T, passwd, group, subuid, subgid string) hostIDFiles {
	t.Helper()
	dir := t.TempDir()
	f := hostIDFiles{}
	for _, c := range []struct {
		dst     *string
		name    string
		content string
	}{{&f.Passwd, "passwd", passwd}, {&f.Group, "group", group}, {&f.SubUID, "subuid", subuid}, {&f.SubGID, "subgid", subgid}} {
		p := filepath.Join(dir, c.name)
		*c.dst = p
		if c.content != "" {
			if err := os.WriteFile(p, []byte(c.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func TestHostIDFilesParse(t *testing.T) {
	f := hostFiles(t,
		"root:x:0:0:root:/root:/bin/bash\n+nis::::::\nsvc:x:2000000:3000000::/:/bin/false\n",
		"# comment\n\nwheel:x:4000000:\n",
		"alice:100000:65536\nbob:5000000:0\n",
		"alice:200000:65536\n")
	ids, err := f.read()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"passwd:1 0-0", "passwd:1 0-0", "passwd:3 2000000-2000000", "passwd:3 3000000-3000000", "group:3 4000000-4000000",
		"subuid:1 100000-165535", "subgid:1 200000-265535"}
	var got []string
	for _, c := range ids {
		got = append(got, filepath.Base(c.file)+":"+strconv.Itoa(c.line)+" "+strconv.Itoa(int(c.lo))+"-"+strconv.Itoa(int(c.hi-1)))
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("parsed\n got %v\nwant %v", got, want)
	}
	for _, c := range []struct{ passwd, subuid, want string }{
		{"svc:x:12a:1::/:/bin/false\n", "", `passwd:1: id "12a": not a number`},
		{"short:x:1\n", "", "passwd:1: 3 fields, want 7"},
		{"", "ok:1:1\nalice:100000\n", "subuid:2: 2 fields, want 3"},
		{"", "alice:100000:lots\n", `subuid:1: count "lots": not a number`},
	} {
		_, err := hostFiles(t, c.passwd, "", c.subuid, "").read()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q: %v, want an error with %q", c.passwd, c.subuid, err, c.want)
		}
	}
	if ids, err := (hostIDFiles{Passwd: "/nonexistent/passwd"}).read(); err != nil || len(ids) != 0 {
		t.Errorf("missing file: %v %v", ids, err)
	}
}

// A new range skips whatever the host claims: subordinate ranges and single
// users' uids and groups' gids.
func TestAllocateSkipsHostIDs(t *testing.T) {
	f := hostFiles(t, "svc:x:1179653:0::/:/bin/false\n", "", "alice:1048576:65536\n", "")
	reg := testRegistry(t, f)
	l := Layout{Root: t.TempDir()}
	ids, _, err := l.allocateIDs(reg, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	// Slot 0 (1048576-1114111) is alice's subuid range, slot 2
	// (1179648-1245183) holds svc's uid; slot 1 is free.
	if ids.Base != IDsBase+IDsPerModule {
		t.Errorf("alpha got %v, want the slot after alice's subuid range", ids)
	}
	beta, _, err := l.allocateIDs(reg, "beta")
	if err != nil {
		t.Fatal(err)
	}
	if beta.Base != IDsBase+3*IDsPerModule {
		t.Errorf("beta got %v, want the slot after svc's uid 1179653", beta)
	}
}

// A range recorded earlier that the host has claimed since (a user added
// with subordinate ids that reach it) is refused, naming the file, the line
// and both ranges.
func TestRecordedRangeRefusedWhenHostClaimsIt(t *testing.T) {
	reg := testRegistry(t, hostFiles(t, "", "", "", ""))
	l := Layout{Root: t.TempDir()}
	ids, _, err := l.allocateIDs(reg, "alpha")
	if err != nil || ids.Base != IDsBase {
		t.Fatalf("%v %v", ids, err)
	}
	os.WriteFile(reg.files.SubGID, []byte("carol:100000:65536\ndave:1100000:65536\n"), 0o644)
	_, _, err = l.allocateIDs(reg, "alpha")
	for _, want := range []string{"1048576-1114111", "subgid:2", "dave:1100000:65536", "1100000-1165535"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("after a subgid entry overlapping it: %v, want an error naming %q", err, want)
		}
	}
}

// Every candidate the host claims: the error names the last conflict.
func TestAllocateExhausted(t *testing.T) {
	f := hostFiles(t, "", "", "", "lxd:1048576:4293918719\n")
	reg := testRegistry(t, f)
	_, _, err := Layout{Root: t.TempDir()}.allocateIDs(reg, "alpha")
	if err == nil || !strings.Contains(err.Error(), "no free range") || !strings.Contains(err.Error(), "subgid:1") {
		t.Fatalf("%v", err)
	}
}

// Two roots on one host share the registry: their modules' ranges never
// overlap, even for the same module names, and each stays stable.
func TestTwoRootsDisjoint(t *testing.T) {
	reg := testRegistry(t, hostIDFiles{})
	a, b := Layout{Root: t.TempDir()}, Layout{Root: t.TempDir()}
	var got []IDRange
	for _, l := range []Layout{a, b, a, b} {
		for _, n := range []string{"alpha", "beta"} {
			ids, _, err := l.allocateIDs(reg, n)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ids)
		}
	}
	for i := 0; i < 4; i++ {
		if got[i] != got[i+4] {
			t.Errorf("allocation %d changed: %v then %v", i, got[i], got[i+4])
		}
		for j := 0; j < i; j++ {
			if got[i].overlaps(uint64(got[j].Base), got[j].end()) {
				t.Errorf("ranges %v and %v overlap", got[i], got[j])
			}
		}
		if got[i].Base < IDsBase || got[i].Count != IDsPerModule {
			t.Errorf("range %v", got[i])
		}
	}
}

// The registry forgets the ranges of a root that no longer exists, and says
// so; a live root's ranges stay, even for modules not loaded now.
func TestRegistryPrunesGoneRoots(t *testing.T) {
	reg := testRegistry(t, hostIDFiles{})
	gone := Layout{Root: filepath.Join(t.TempDir(), "gone")}
	os.Mkdir(gone.Root, 0o700)
	live := Layout{Root: t.TempDir()}
	g, _, _ := gone.allocateIDs(reg, "alpha")
	keep, _, _ := live.allocateIDs(reg, "retired")
	os.RemoveAll(gone.Root)
	ids, pruned, err := live.allocateIDs(reg, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if len(pruned) != 1 || pruned[0].Root != gone.Root || pruned[0].Module != "alpha" || pruned[0].Base != g.Base {
		t.Errorf("pruned %+v, want the gone root's alpha %v", pruned, g)
	}
	if ids != g {
		t.Errorf("live alpha got %v, want the released range %v", ids, g)
	}
	if again, _, _ := live.allocateIDs(reg, "retired"); again != keep {
		t.Errorf("a live root's range changed: %v then %v", keep, again)
	}
	b, _ := os.ReadFile(reg.path)
	if strings.Contains(string(b), gone.Root) {
		t.Errorf("registry still names the gone root:\n%s", b)
	}
}

// A root whose entry is missing because its filesystem is not mounted (its
// parent now sits on another device) keeps its ranges.
func TestRegistryKeepsUnmountedRoots(t *testing.T) {
	e := rangeEntry{Root: filepath.Join(t.TempDir(), "vol", "root"), ParentDev: 1}
	if e.gone() {
		t.Error("a root whose parent is missing counted as gone")
	}
	os.MkdirAll(filepath.Dir(e.Root), 0o700)
	if e.gone() {
		t.Error("a root whose parent is on another device counted as gone")
	}
	e.ParentDev = parentDev(e.Root)
	if !e.gone() {
		t.Error("a removed root under its recorded parent is not gone")
	}
	// Removed with the tree around it: the nearest directory left is on
	// the recorded device.
	os.RemoveAll(filepath.Dir(filepath.Dir(e.Root)))
	if !e.gone() {
		t.Error("a root removed with its parents is not gone")
	}
	if (rangeEntry{Root: e.Root}).gone() {
		t.Error("an entry without a recorded device counted as gone")
	}
}

func TestCheckUIDBase(t *testing.T) {
	for base, ok := range map[uint32]bool{
		IDsBase: true, 1 << 16: true, 0: false, 1 << 15: false, IDsBase + 1: false,
		1<<32 - 2*IDsPerModule: true, 1<<32 - IDsPerModule: false,
	} {
		if err := checkUIDBase(base); (err == nil) != ok {
			t.Errorf("checkUIDBase(%d) = %v", base, err)
		}
	}
	// The last range below 2^32-1 is handed out, none past it.
	reg := testRegistry(t, hostIDFiles{})
	reg.base = 1<<32 - 2*IDsPerModule
	l := Layout{Root: t.TempDir()}
	if ids, _, err := l.allocateIDs(reg, "a"); err != nil || ids.end() > idsEnd {
		t.Errorf("%v %v", ids, err)
	}
	if ids, _, err := l.allocateIDs(reg, "b"); err == nil {
		t.Errorf("allocated %v past the last range", ids)
	}
}

// Ranges an older runtime recorded in the root's state/ids.json are kept
// when free; one another root took (older runtimes gave every root the same
// ranges) is replaced, and the module's files are re-owned into the new one.
func TestImportLegacyRanges(t *testing.T) {
	requireRootUnit(t)
	reg := testRegistry(t, hostIDFiles{})
	other := Layout{Root: t.TempDir()}
	taken, _, _ := other.allocateIDs(reg, "someone") // IDsBase: legacy slot 0
	l := Layout{Root: t.TempDir()}
	os.MkdirAll(l.StateDir(), 0o700)
	os.WriteFile(l.legacyIDsFile(), []byte(`{"next":2,"slots":{"alpha":0,"beta":1}}`), 0o600)
	oldUID := int(IDsBase) + ModuleUID
	data := filepath.Join(l.DataParent("alpha"), "wallet")
	os.MkdirAll(filepath.Dir(data), 0o700)
	os.WriteFile(data, []byte("keys"), 0o600)
	os.Chown(filepath.Dir(data), oldUID, oldUID)
	os.Chown(data, oldUID, oldUID)
	os.Symlink("/etc/shadow", filepath.Join(filepath.Dir(data), "link"))
	os.Lchown(filepath.Join(filepath.Dir(data), "link"), oldUID, oldUID)

	if err := l.importLegacy(reg); err != nil {
		t.Fatal(err)
	}
	alpha, _, _ := l.allocateIDs(reg, "alpha")
	beta, _, _ := l.allocateIDs(reg, "beta")
	if alpha == taken || alpha.overlaps(uint64(taken.Base), taken.end()) {
		t.Errorf("alpha kept %v, which another root holds", alpha)
	}
	if beta.Base != IDsBase+IDsPerModule {
		t.Errorf("beta got %v, want its legacy range from %d", beta, IDsBase+IDsPerModule)
	}
	for _, p := range []string{data, filepath.Dir(data), filepath.Join(filepath.Dir(data), "link")} {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if uid := fileUID(st); uid != alpha.HostUID() {
			t.Errorf("%s owned by %d after the move, want alpha's new uid %d", p, uid, alpha.HostUID())
		}
	}
	if st, _ := os.Stat("/etc/shadow"); fileUID(st) != 0 {
		t.Fatal("the symlink was followed: /etc/shadow re-owned")
	}
	if _, err := os.Stat(l.legacyIDsFile()); err == nil {
		t.Error("ids.json still in place")
	}
	if _, err := os.Stat(l.legacyIDsFile() + ".migrated"); err != nil {
		t.Error(err)
	}
	b, _ := os.ReadFile(reg.path)
	if strings.Contains(string(b), "reown_from") {
		t.Errorf("re-owning left pending:\n%s", b)
	}
}
