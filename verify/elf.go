package verify

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/manifest"
)

// The container has an empty rootfs: no dynamic loader, no libc, no shell.
// A binary that needs one fails only at start, as the shim's execve
// returns ENOENT (for the missing interpreter, not the binary) and the
// module exits 126. These checks read the ELF header at verify time
// instead, so sign, verify, install and explain say what is wrong and how
// to fix it.

// elfMachines maps a Go GOARCH to the ELF machine and class its binaries
// carry. The class matters on amd64: x32 (EM_X86_64, ELFCLASS32) is killed
// by the seccomp filter's arch check.
var elfMachines = map[string]struct {
	machine elf.Machine
	class   elf.Class
}{
	"amd64":   {elf.EM_X86_64, elf.ELFCLASS64},
	"arm64":   {elf.EM_AARCH64, elf.ELFCLASS64},
	"riscv64": {elf.EM_RISCV, elf.ELFCLASS64},
	"ppc64le": {elf.EM_PPC64, elf.ELFCLASS64},
	"s390x":   {elf.EM_S390, elf.ELFCLASS64},
	"386":     {elf.EM_386, elf.ELFCLASS32},
	"arm":     {elf.EM_ARM, elf.ELFCLASS32},
}

// NotExecutableError is an entry point the container could not exec.
type NotExecutableError struct {
	EntryPoint string
	Problem    string // what is wrong: "dynamically linked against /lib64/ld-linux-x86-64.so.2"
	Fix        string // what to do: "build with CGO_ENABLED=0 or -static"
}

func (e *NotExecutableError) Error() string {
	return fmt.Sprintf("%s: entry_point %q: %s: %s", manifest.FileName, e.EntryPoint, e.Problem, e.Fix)
}

// CheckExecutable reads the ELF header of the entry point's bytes in r and
// refuses what cannot run in the container: a script (#!), a file that is
// not ELF, another machine than goarch's (the host's GOARCH, or explain's
// --arch), a relocatable object or core dump, a shared library, and any
// binary with a PT_INTERP (dynamically linked). ET_EXEC and a static PIE
// (ET_DYN with DF_1_PIE and no PT_INTERP, what -static-pie gives) pass. It
// reads with ReadAt only, so a caller's offset in an *os.File is untouched.
func CheckExecutable(r io.ReaderAt, entryPoint, goarch string) error {
	refuse := func(problem, fix string) error {
		return &NotExecutableError{EntryPoint: entryPoint, Problem: problem, Fix: fix}
	}
	var head [128]byte
	n, err := r.ReadAt(head[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("entry point: read %s: %w", entryPoint, err)
	}
	if n >= 2 && head[0] == '#' && head[1] == '!' {
		line, _, _ := bytes.Cut(head[2:n], []byte("\n"))
		return refuse(fmt.Sprintf("is a script (#!%s)", termesc.String(strings.TrimSpace(string(line)))),
			"the container has no interpreter; ship a static binary (CGO_ENABLED=0 for Go, -static for C)")
	}
	if n < 4 || string(head[:4]) != elf.ELFMAG {
		return refuse("is not an ELF executable", "build a static Linux binary (CGO_ENABLED=0 for Go, -static for C)")
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return refuse(fmt.Sprintf("is not a valid ELF file (%v)", err), "rebuild it as a static Linux binary")
	}
	if want, ok := elfMachines[goarch]; ok && (f.Machine != want.machine || f.Class != want.class) {
		return refuse(fmt.Sprintf("is built for %s %s, this host runs %s (%s %s)", f.Machine, f.Class, goarch, want.machine, want.class),
			fmt.Sprintf("build it for %s (GOARCH=%s for Go)", goarch, goarch))
	}
	switch f.Type {
	case elf.ET_EXEC, elf.ET_DYN:
	default:
		return refuse(fmt.Sprintf("is an ELF %s, not an executable", f.Type), "link it into a static executable")
	}
	pie := false
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			interp, _ := io.ReadAll(io.LimitReader(p.Open(), 256))
			return refuse(fmt.Sprintf("dynamically linked against %s", termesc.String(strings.TrimRight(string(interp), "\x00"))),
				"build with CGO_ENABLED=0 or -static")
		case elf.PT_DYNAMIC:
			pie = pie || hasPIEFlag(f, p)
		}
	}
	if f.Type == elf.ET_DYN && !pie {
		return refuse("is a shared library (ET_DYN without DF_1_PIE), not an executable",
			"link an executable: static, or -static-pie")
	}
	return nil
}

// hasPIEFlag reads the PT_DYNAMIC segment itself (section headers may be
// stripped) and reports whether DT_FLAGS_1 carries DF_1_PIE.
func hasPIEFlag(f *elf.File, p *elf.Prog) bool {
	word := 8
	if f.Class == elf.ELFCLASS32 {
		word = 4
	}
	data, err := io.ReadAll(io.LimitReader(p.Open(), 1<<16))
	if err != nil {
		return false
	}
	for i := 0; i+2*word <= len(data); i += 2 * word {
		var tag, val uint64
		if word == 8 {
			tag, val = f.ByteOrder.Uint64(data[i:]), f.ByteOrder.Uint64(data[i+8:])
		} else {
			tag, val = uint64(f.ByteOrder.Uint32(data[i:])), uint64(f.ByteOrder.Uint32(data[i+4:]))
		}
		switch elf.DynTag(tag) {
		case elf.DT_NULL:
			return false
		case elf.DT_FLAGS_1:
			return val&uint64(elf.DF_1_PIE) != 0
		}
	}
	return false
}

// CheckEntryPoint runs CheckExecutable on the entry point inside moduleDir,
// opened as the store opens it (beneath the dir, no symlinks, regular file
// only). A missing entry point is not an error here (explain reads a
// manifest before its binary is built, and a manifest may be signed before
// its binary ships): found says whether there was one to check.
func CheckEntryPoint(moduleDir, entryPoint, goarch string) (found bool, err error) {
	f, _, err := safefile.Open(moduleDir, entryPoint)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("entry point: %w", err)
	}
	defer f.Close()
	return true, CheckExecutable(f, entryPoint, goarch)
}
