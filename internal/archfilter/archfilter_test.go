package archfilter

import "testing"

func TestProgramShape(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		prog, err := Program(arch)
		if err != nil {
			t.Fatal(err)
		}
		// Every jump must land inside the program.
		for i, ins := range prog {
			if ins.Code&0x07 == 0x05 && (i+1+int(ins.Jt) >= len(prog) || i+1+int(ins.Jf) >= len(prog)) {
				t.Errorf("%s: instruction %d jumps out of the program", arch, i)
			}
		}
	}
	if _, err := Program("mips"); err == nil {
		t.Fatal("Program accepted an arch it has no program for")
	}
}
