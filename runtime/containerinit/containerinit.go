// Package containerinit turns the process into a container's init when
// libcontainer re-executes it ("<binary> init"); that call never returns.
// Every program that starts containers imports it for this side effect:
//
//	import _ "github.com/blvm/blvm-sandbox/runtime/containerinit"
//
// It is the one init-time side effect this project allows, and it lives in
// its own small package on purpose: Go initialises packages in import-path
// order once their imports are ready, so this init runs right after
// libcontainer's dependencies and before the program's unrelated packages
// (protobuf, prometheus, btcd, bbolt, cobra, ...). A container start then
// does not pay for their initialisation.
//
// In the program itself (not a container init), it locks the main goroutine
// to the main thread: libcontainer's mount-source helper can otherwise leave
// the main thread inside a container's mount namespace, after which cgroup
// look-ups fail.
package containerinit

import (
	"os"
	goruntime "runtime"

	// nsenter is the C constructor that enters namespaces before the Go
	// runtime starts in the container init; devices manages device cgroups.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	goruntime.LockOSThread()
}
