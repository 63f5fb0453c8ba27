package verify

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/manifest"
)

func TestCheckExecutableCrafted(t *testing.T) {
	foreign := elf.EM_AARCH64
	if runtime.GOARCH == "arm64" {
		foreign = elf.EM_X86_64
	}
	tests := []struct {
		name string
		file []byte
		want string // "" passes; else a substring of the refusal
	}{
		{"static exec", elftest.Build(elftest.Spec{}), ""},
		{"static pie", elftest.Build(elftest.Spec{Type: elf.ET_DYN, PIE: true}), ""},
		{"dynamic", elftest.Build(elftest.Spec{Interp: "/lib64/ld-linux-x86-64.so.2"}),
			`module.toml: entry_point "bin/x": dynamically linked against /lib64/ld-linux-x86-64.so.2: build with CGO_ENABLED=0 or -static`},
		{"dynamic pie", elftest.Build(elftest.Spec{Type: elf.ET_DYN, PIE: true, Interp: "/lib/ld-musl-x86_64.so.1"}), "dynamically linked against /lib/ld-musl-x86_64.so.1"},
		{"shared library", elftest.Build(elftest.Spec{Type: elf.ET_DYN}), "is a shared library"},
		{"object file", elftest.Build(elftest.Spec{Type: elf.ET_REL}), "is an ELF ET_REL, not an executable"},
		{"core dump", elftest.Build(elftest.Spec{Type: elf.ET_CORE}), "ET_CORE"},
		{"foreign machine", elftest.Build(elftest.Spec{Machine: foreign}), "build it for " + runtime.GOARCH},
		{"wrong class (x32 on amd64)", elftest.Build(elftest.Spec{Class32: true}), "ELFCLASS32"},
		{"shell script", []byte("#!/bin/sh\necho hi\n"), "is a script (#!/bin/sh): the container has no interpreter"},
		{"script without newline", []byte("#!"), "is a script (#!)"},
		{"text", []byte("hello"), "is not an ELF executable"},
		{"empty", nil, "is not an ELF executable"},
		{"truncated ELF", []byte("\x7fELF\x02\x01\x01"), "is not a valid ELF file"},
		{"escape in interpreter", []byte("#!/bin/\x1b[31msh\n"), `\x1b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckExecutable(bytes.NewReader(tt.file), "bin/x", runtime.GOARCH)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ne *NotExecutableError
			if !errors.As(err, &ne) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a NotExecutableError containing %q", err, tt.want)
			}
			if strings.ContainsAny(err.Error(), "\x1b\n") {
				t.Errorf("refusal carries raw control bytes: %q", err.Error())
			}
		})
	}
}

// Real toolchain output: what Go and gcc actually produce, not only what
// the crafted headers claim.
func TestCheckExecutableToolchains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"os/user\"\n\nfunc main() { user.Current() }\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "c"), 0o755)
	os.WriteFile(filepath.Join(dir, "c", "c.c"), []byte("int main(void) { return 0; }\n"), 0o644)
	gcc, gccErr := exec.LookPath("gcc")
	tests := []struct {
		name  string
		cmd   []string
		env   string
		needC bool
		want  string
	}{
		{"go CGO_ENABLED=0", []string{"go", "build", "-o", "go-static", "."}, "CGO_ENABLED=0", false, ""},
		{"go cgo (dynamic)", []string{"go", "build", "-o", "go-dyn", "."}, "CGO_ENABLED=1", true, "dynamically linked against /"},
		{"go cgo -static", []string{"go", "build", "-ldflags=-linkmode external -extldflags -static", "-o", "go-cgo-static", "."}, "CGO_ENABLED=1", true, ""},
		{"go static-pie", []string{"go", "build", "-buildmode=pie", "-ldflags=-linkmode external -extldflags -static-pie", "-o", "go-spie", "."}, "CGO_ENABLED=1", true, ""},
		{"gcc -static", []string{gcc, "-static", "-o", "c-static", "c/c.c"}, "", true, ""},
		{"gcc -static-pie", []string{gcc, "-static-pie", "-o", "c-spie", "c/c.c"}, "", true, ""},
		{"gcc default (dynamic)", []string{gcc, "-o", "c-dyn", "c/c.c"}, "", true, "build with CGO_ENABLED=0 or -static"},
		{"gcc -shared", []string{gcc, "-shared", "-fPIC", "-o", "c.so", "c/c.c"}, "", true, "is a shared library"},
		{"gcc -c", []string{gcc, "-c", "-o", "c.o", "c/c.c"}, "", true, "ET_REL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needC && gccErr != nil {
				t.Skip("no gcc")
			}
			cmd := exec.Command(tt.cmd[0], tt.cmd[1:]...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
			if tt.env != "" {
				cmd.Env = append(cmd.Env, tt.env)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", tt.cmd, err, out)
			}
			f, err := os.Open(filepath.Join(dir, tt.cmd[len(tt.cmd)-2]))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = CheckExecutable(f, "m", runtime.GOARCH)
			if tt.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// The reads go through ReadAt: the offset the store then hashes from is
// untouched.
func TestCheckExecutableKeepsOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m")
	os.WriteFile(path, elftest.Static("tail"), 0o755)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := CheckExecutable(f, "m", runtime.GOARCH); err != nil {
		t.Fatal(err)
	}
	if off, _ := f.Seek(0, 1); off != 0 {
		t.Errorf("offset %d after the check, want 0", off)
	}
}

// withBinary re-pins and re-signs the fixture's manifest for bin, so only
// the ELF check can refuse it.
func (f *fixture) withBinary(t *testing.T, bin []byte) {
	t.Helper()
	f.bin = bin
	writeFile(t, filepath.Join(f.dir, "example-module"), bin)
	sum := sha256.Sum256(bin)
	f.m.Binary = &manifest.Binary{Hash: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(bin))}
	f.sign(t, "alice")
}

// A signed, correctly hashed binary that cannot run is refused by Verify
// (the "hash" line names the problem) and never becomes a store entry.
func TestVerifyRefusesADynamicBinary(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	f.withBinary(t, elftest.Build(elftest.Spec{Interp: "/lib64/ld-linux-x86-64.so.2"}))
	res, err := f.verify(t)
	want := `module.toml: entry_point "example-module": dynamically linked against /lib64/ld-linux-x86-64.so.2: build with CGO_ENABLED=0 or -static`
	if err == nil || err.Error() != want || res.OK() {
		t.Fatalf("Verify = %v, want %q", err, want)
	}
	n := len(res.Checks)
	if hash, last := res.Checks[n-2], res.Checks[n-1]; hash.Name != "hash" || !hash.OK || last.Name != "executable" || last.OK || last.Detail != want {
		t.Errorf("last checks %+v %+v", hash, last)
	}
	assertNoEntries(t, f.root)
	if err := CheckSource(f.dir, f.m); err == nil || err.Error() != want {
		t.Errorf("CheckSource = %v", err)
	}
}

// An entry already in the store (sealed before these checks existed) is
// checked too: it is what the container would exec.
func TestSealChecksAReusedEntry(t *testing.T) {
	if !isRoot() {
		t.Skip("a sound store entry is root-owned")
	}
	f := newFixture(t, "1-of-3", "alice")
	f.withBinary(t, []byte("#!/bin/sh\nexec true\n"))
	s := &Store{Root: f.root}
	if err := ensureStoreDir(s.dir()); err != nil {
		t.Fatal(err)
	}
	entry := s.Path(strings.TrimPrefix(f.m.Binary.Hash, "sha256:"))
	if err := os.WriteFile(entry, f.bin, entryMode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(entry, entryMode)
	_, reused, err := s.Seal(f.dir, f.m)
	if err == nil || reused || !strings.Contains(err.Error(), "is a script (#!/bin/sh)") {
		t.Fatalf("Seal of a reused script entry = reused %v, %v", reused, err)
	}
}
