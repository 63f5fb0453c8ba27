// Package elftest crafts tiny ELF files for tests: a static executable for
// the host (what a fixture's module binary must look like now that verify
// reads the ELF header) and the variants verify must refuse (dynamically
// linked, a shared library, a foreign machine, x32). They are never run.
package elftest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"runtime"
)

// Spec describes one crafted file. The zero value is a static ET_EXEC for
// the host's machine; Tail is appended after the headers, so fixtures that
// differ only in Tail hash differently.
type Spec struct {
	Machine elf.Machine // zero: the host's (runtime.GOARCH)
	Class32 bool        // ELFCLASS32 instead of ELFCLASS64
	Type    elf.Type    // zero: ET_EXEC
	Interp  string      // non-empty: a PT_INTERP segment naming it
	PIE     bool        // a PT_DYNAMIC segment with DT_FLAGS_1 = DF_1_PIE
	Tail    []byte
}

// Static is a static executable for the host with tail appended.
func Static(tail string) []byte { return Build(Spec{Tail: []byte(tail)}) }

// HostMachine is the ELF machine of runtime.GOARCH (EM_NONE if unknown here).
func HostMachine() elf.Machine {
	switch runtime.GOARCH {
	case "amd64":
		return elf.EM_X86_64
	case "arm64":
		return elf.EM_AARCH64
	case "riscv64":
		return elf.EM_RISCV
	case "ppc64le":
		return elf.EM_PPC64
	case "s390x":
		return elf.EM_S390
	case "386":
		return elf.EM_386
	case "arm":
		return elf.EM_ARM
	}
	return elf.EM_NONE
}

// Build writes the file Spec describes: the ELF header, the program
// headers, then the interpreter string, the dynamic entries and Tail.
func Build(s Spec) []byte {
	mach := s.Machine
	if mach == 0 {
		mach = HostMachine()
	}
	typ := s.Type
	if typ == 0 {
		typ = elf.ET_EXEC
	}
	order := binary.ByteOrder(binary.LittleEndian)
	data := elf.ELFDATA2LSB
	if mach == elf.EM_S390 {
		order, data = binary.BigEndian, elf.ELFDATA2MSB
	}
	class, ehsize, phentsize := elf.ELFCLASS64, 64, 56
	if s.Class32 {
		class, ehsize, phentsize = elf.ELFCLASS32, 52, 32
	}
	type seg struct {
		typ  elf.ProgType
		body []byte
	}
	var segs []seg
	segs = append(segs, seg{typ: elf.PT_LOAD})
	if s.Interp != "" {
		segs = append(segs, seg{typ: elf.PT_INTERP, body: append([]byte(s.Interp), 0)})
	}
	if s.PIE {
		var dyn bytes.Buffer
		word := func(v uint64) {
			if s.Class32 {
				binary.Write(&dyn, order, uint32(v))
			} else {
				binary.Write(&dyn, order, v)
			}
		}
		word(uint64(elf.DT_FLAGS_1))
		word(uint64(elf.DF_1_PIE))
		word(uint64(elf.DT_NULL))
		word(0)
		segs = append(segs, seg{typ: elf.PT_DYNAMIC, body: dyn.Bytes()})
	}

	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, order, v) }
	phoff := ehsize
	bodyOff := phoff + phentsize*len(segs)
	// e_ident
	b.Write([]byte{0x7f, 'E', 'L', 'F', byte(class), byte(data), byte(elf.EV_CURRENT)})
	b.Write(make([]byte, 9))
	w(uint16(typ))
	w(uint16(mach))
	w(uint32(elf.EV_CURRENT))
	const entry = 0x401000
	if s.Class32 {
		w(uint32(entry))
		w(uint32(phoff))
		w(uint32(0)) // e_shoff: no section headers
	} else {
		w(uint64(entry))
		w(uint64(phoff))
		w(uint64(0))
	}
	w(uint32(0)) // e_flags
	w(uint16(ehsize))
	w(uint16(phentsize))
	w(uint16(len(segs)))
	w(uint16(0)) // e_shentsize
	w(uint16(0)) // e_shnum
	w(uint16(0)) // e_shstrndx

	off := bodyOff
	for _, sg := range segs {
		size := len(sg.body)
		o := off
		if sg.typ == elf.PT_LOAD {
			o, size = 0, bodyOff // maps the headers; enough for a parser
		}
		if s.Class32 {
			w(uint32(sg.typ))
			w(uint32(o))
			w(uint32(entry))
			w(uint32(entry))
			w(uint32(size))
			w(uint32(size))
			w(uint32(elf.PF_R | elf.PF_X))
			w(uint32(1))
		} else {
			w(uint32(sg.typ))
			w(uint32(elf.PF_R | elf.PF_X))
			w(uint64(o))
			w(uint64(entry))
			w(uint64(entry))
			w(uint64(size))
			w(uint64(size))
			w(uint64(1))
		}
		if sg.typ != elf.PT_LOAD {
			off += len(sg.body)
		}
	}
	for _, sg := range segs {
		b.Write(sg.body)
	}
	b.Write(s.Tail)
	return b.Bytes()
}
