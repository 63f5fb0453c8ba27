//go:build cgo && seccomp

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/audit/kernelfilter"
)

// TestMain lets explain --verify re-execute the test binary as its
// filter-loading child, as it re-executes blvm-sandbox.
func TestMain(m *testing.M) {
	kernelfilter.ChildMain()
	os.Exit(m.Run())
}

func TestExplainVerifyExamples(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading filters back needs CAP_SYS_ADMIN")
	}
	dirs, _ := filepath.Glob("../../examples/*/module.toml")
	if len(dirs) == 0 {
		t.Fatal("no example modules")
	}
	for _, path := range dirs {
		dir := filepath.Dir(path)
		out, errs, code := explain(t, "--verify", dir)
		// governance-voter asks for more than the default ceiling allows;
		// --verify checks the filters, not the operator's ceiling.
		if code != 0 {
			t.Errorf("%s: explain --verify exit %d:\n%s%s", dir, code, out, errs)
		}
		for _, want := range []string{"mismatches: 0\n", "syscall numbers checked: x86_64 ", "x32 1024", "argument cases checked: ",
			"1. libcontainer: seccomp.InitSeccomp", "2. blvm-landlock-shim: foreign-arch filter"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: explain --verify lacks %q:\n%s", dir, want, out)
			}
		}
	}
}

func TestExplainFormatBPFListsEveryFilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading filters back needs CAP_SYS_ADMIN")
	}
	out, errs, code := explain(t, "--format", "bpf", "../../examples/block-logger")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"# filter 1 of 2, loaded by libcontainer",
		"# filter 2 of 2, loaded by blvm-landlock-shim",
		"ret #2147483648", // the shim's KILL_PROCESS
		"# filter 1 as libseccomp's pseudo filter code",
		"action ERRNO(38)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain --format bpf lacks %q", want)
		}
	}
	// The stacked filter comes after libcontainer's: load order.
	if strings.Index(out, "filter 2 of 2") < strings.Index(out, "filter 1 of 2") {
		t.Error("filters are not in load order")
	}
}
