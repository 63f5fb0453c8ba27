package kernelfilter

import (
	"runtime"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/archfilter"
)

// Loaded is what the runtime would load for a module, in load order.
type Loaded struct {
	Names    []string // who loads each filter
	Programs [][]unix.SockFilter
}

// Names says who loads each filter: the shim's is recognised by being
// exactly archfilter's program; any other is libcontainer's.
func Names(progs [][]unix.SockFilter) []string {
	shim, _ := archfilter.Program(runtime.GOARCH)
	out := make([]string, len(progs))
	for i, p := range progs {
		out[i] = "libcontainer: seccomp.InitSeccomp (libseccomp's program, behind patchbpf's stub when it adds one)"
		if slices.Equal(p, shim) {
			out[i] = "blvm-landlock-shim: foreign-arch filter (internal/archfilter)"
		}
	}
	return out
}
