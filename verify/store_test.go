package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func sealFixture(t *testing.T) (*fixture, *Store) {
	t.Helper()
	f := newFixture(t, "1-of-3", "alice")
	return f, &Store{Root: f.root}
}

func TestSealWritesVerifiedEntry(t *testing.T) {
	f, s := sealFixture(t)
	path, reused, err := s.Seal(f.dir, f.m)
	if err != nil || reused {
		t.Fatalf("Seal = %q %v %v", path, reused, err)
	}
	sum := sha256.Sum256(f.bin)
	if want := filepath.Join(f.root, "store", "sha256", hex.EncodeToString(sum[:])); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, f.bin) {
		t.Error("entry bytes differ from the binary")
	}
	fi, _ := os.Lstat(path)
	if fi.Mode() != 0o555 {
		t.Errorf("entry mode %v, want -r-xr-xr-x", fi.Mode())
	}
	if isRoot() {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("entry owned by %d:%d, want root", st.Uid, st.Gid)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(f.root, "store", "sha256", ".seal-*"))
	if len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
	if err := s.Check(hex.EncodeToString(sum[:])); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestBinaryChangedAfterSigning(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	bad := bytes.Clone(f.bin)
	bad[len(bad)-1] ^= 1 // past the ELF header, which stays valid
	writeFile(t, filepath.Join(f.dir, "example-module"), bad)
	res, err := f.verify(t)
	if err == nil || res.OK() {
		t.Fatal("changed binary verified")
	}
	sum := sha256.Sum256(bad)
	want := "hash: binary sha256:" + hex.EncodeToString(sum[:]) + " does not match manifest " + f.m.Binary.Hash
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want %q", err, want)
	}
	last := res.Checks[len(res.Checks)-1]
	if last.Name != "hash" || last.OK {
		t.Errorf("last check %+v", last)
	}
	assertNoEntries(t, f.root)
}

func TestTruncatedBinary(t *testing.T) {
	for name, content := range map[string]func(b []byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)-1] },
		"padded":    func(b []byte) []byte { return append(bytes.Clone(b), 0) },
		"empty":     func(b []byte) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			f, s := sealFixture(t)
			c := content(f.bin)
			writeFile(t, filepath.Join(f.dir, "example-module"), c)
			_, _, err := s.Seal(f.dir, f.m)
			want := "size: binary is " + itoa(len(c)) + " bytes, manifest says " + itoa(len(f.bin))
			if err == nil || err.Error() != want {
				t.Fatalf("Seal = %v, want %q", err, want)
			}
			assertNoEntries(t, f.root)
		})
	}
}

func TestSameSizeDifferentHash(t *testing.T) {
	f, s := sealFixture(t)
	other := bytes.Clone(f.bin)
	copy(other[len(other)-6:], "xxxxxx")
	writeFile(t, filepath.Join(f.dir, "example-module"), other)
	_, _, err := s.Seal(f.dir, f.m)
	if err == nil || !strings.HasPrefix(err.Error(), "hash: binary sha256:") {
		t.Fatalf("Seal = %v", err)
	}
	assertNoEntries(t, f.root)
}

func TestSymlinkedEntryPointOutsideModuleDir(t *testing.T) {
	cases := map[string]func(t *testing.T, f *fixture){
		"symlink outside": func(t *testing.T, f *fixture) {
			out := filepath.Join(t.TempDir(), "evil")
			writeFile(t, out, f.bin) // even with the right bytes
			replaceWithSymlink(t, filepath.Join(f.dir, "example-module"), out)
		},
		"symlink inside": func(t *testing.T, f *fixture) {
			inside := filepath.Join(f.dir, "real-binary")
			writeFile(t, inside, f.bin)
			replaceWithSymlink(t, filepath.Join(f.dir, "example-module"), "real-binary")
		},
		"symlinked directory component": func(t *testing.T, f *fixture) {
			f.m.EntryPoint = "bin/example-module"
			real := t.TempDir()
			writeFile(t, filepath.Join(real, "example-module"), f.bin)
			if err := os.Symlink(real, filepath.Join(f.dir, "bin")); err != nil {
				t.Fatal(err)
			}
		},
		"dotdot": func(t *testing.T, f *fixture) {
			f.m.EntryPoint = "../example-module"
		},
		"absolute": func(t *testing.T, f *fixture) {
			f.m.EntryPoint = filepath.Join(f.dir, "example-module")
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			f, s := sealFixture(t)
			setup(t, f)
			_, _, err := s.Seal(f.dir, f.m)
			if err == nil {
				t.Fatal("Seal followed a path it must refuse")
			}
			if !strings.Contains(err.Error(), "symlink") && !strings.Contains(err.Error(), "resolves outside "+f.dir) {
				t.Errorf("error %q names neither symlinks nor escape", err)
			}
			assertNoEntries(t, f.root)
		})
	}
}

func TestEntryPointNotRegular(t *testing.T) {
	f, s := sealFixture(t)
	p := filepath.Join(f.dir, "example-module")
	os.Remove(p)
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	_, _, err := s.Seal(f.dir, f.m) // must not hang on the FIFO
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Seal = %v", err)
	}
}

func TestSealWithoutBinary(t *testing.T) {
	f, s := sealFixture(t)
	f.m.Binary = nil
	_, _, err := s.Seal(f.dir, f.m)
	if err == nil || err.Error() != "binary: manifest has no [binary] hash and size" {
		t.Fatalf("Seal = %v", err)
	}
	f.m.Binary = nil
	f.sign(t, "alice")
	if _, err := f.verify(t); err == nil || !strings.Contains(err.Error(), "no [binary]") {
		t.Fatalf("Verify = %v", err)
	}
}

func TestReplacedAfterVerificationStoreCopyRuns(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	res, err := f.verify(t)
	if err != nil || !res.OK() {
		t.Fatalf("verify: %v", err)
	}
	// The attacker swaps the module's file right after verification.
	writeFile(t, filepath.Join(f.dir, "example-module"), []byte("#!/bin/sh\nrm -rf /\n"))
	got, err := os.ReadFile(res.StorePath)
	if err != nil || !bytes.Equal(got, f.bin) {
		t.Fatalf("store entry changed: %q %v", got, err)
	}
	// And the store entry is a separate inode, not a link to the source.
	a, _ := os.Stat(res.StorePath)
	b, _ := os.Stat(filepath.Join(f.dir, "example-module"))
	if os.SameFile(a, b) {
		t.Fatal("store entry is the source file")
	}
}

func TestSecondVerifyReusesStore(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	first, err := f.verify(t)
	if err != nil || first.Reused {
		t.Fatalf("first: %v reused=%v", err, first.Reused)
	}
	// Make the source unreadable garbage: if the second run read it, it
	// would fail the hash (or the open).
	src := filepath.Join(f.dir, "example-module")
	writeFile(t, src, bytes.Repeat([]byte{0}, len(f.bin)))
	os.Chmod(src, 0)
	second, err := f.verify(t)
	if err != nil || !second.OK() || !second.Reused {
		t.Fatalf("second: %v ok=%v reused=%v", err, second.OK(), second.Reused)
	}
	if second.StorePath != first.StorePath {
		t.Errorf("paths differ: %s vs %s", second.StorePath, first.StorePath)
	}
	if got, _ := os.ReadFile(second.StorePath); !bytes.Equal(got, f.bin) {
		t.Error("entry bytes changed")
	}
	// Removing the source entirely changes nothing either.
	os.Remove(src)
	if _, reused, err := (&Store{Root: f.root}).Seal(f.dir, f.m); err != nil || !reused {
		t.Fatalf("third: %v reused=%v", err, reused)
	}
}

// A store entry that no longer looks sealed is refused, not reused and not
// silently replaced; Check finds changed bytes.
func TestTamperedStoreEntry(t *testing.T) {
	f, s := sealFixture(t)
	path, _, err := s.Seal(f.dir, f.m)
	if err != nil {
		t.Fatal(err)
	}
	hexd := filepath.Base(path)

	os.Chmod(path, 0o644)
	if _, _, err := s.Seal(f.dir, f.m); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Errorf("writable entry: %v", err)
	}
	// Same size, other bytes, mode restored: only a re-hash can tell.
	if err := os.WriteFile(path, bytes.Repeat([]byte{'y'}, len(f.bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o555)
	if err := s.Check(hexd); err == nil || !strings.Contains(err.Error(), "tampered") {
		t.Errorf("Check on changed bytes: %v", err)
	}
	if isRoot() {
		os.Chown(path, 1234, 1234)
		if _, _, err := s.Seal(f.dir, f.m); err == nil || !strings.Contains(err.Error(), "owned by uid 1234") {
			t.Errorf("foreign-owned entry: %v", err)
		}
	}
	os.Remove(path)
	os.Symlink(filepath.Join(f.dir, "example-module"), path)
	if _, _, err := s.Seal(f.dir, f.m); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("symlinked entry: %v", err)
	}
	if err := s.Check("../../etc/passwd"); err == nil {
		t.Error("Check accepted a path")
	}
}

func TestStoreDirWritableByOthersRefused(t *testing.T) {
	f, s := sealFixture(t)
	dir := filepath.Join(f.root, "store", "sha256")
	os.MkdirAll(dir, 0o755)
	os.Chmod(dir, 0o777)
	if _, _, err := s.Seal(f.dir, f.m); err == nil || !strings.Contains(err.Error(), "group/others can write") {
		t.Fatalf("Seal = %v", err)
	}
}

func replaceWithSymlink(t *testing.T, path, target string) {
	t.Helper()
	os.Remove(path)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func assertNoEntries(t *testing.T, root string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(root, "store", "sha256"))
	for _, e := range ents {
		t.Errorf("unexpected store entry %s", e.Name())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
