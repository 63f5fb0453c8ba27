package runtime

import (
	"os"
	goruntime "runtime"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter is the C constructor that enters namespaces before the Go
	// runtime starts in the container init; devices manages device cgroups.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Reexec turns this process into a container's init when libcontainer
// started it as one (argv[1] == "init"), and never returns then. Every
// program that starts containers calls it first thing in an init(): it is
// the one init-time side effect this project allows.
//
// Otherwise it locks the main goroutine to the main thread: libcontainer's
// mount-source helper can otherwise leave the main thread inside a
// container's mount namespace, after which cgroup look-ups fail.
func Reexec() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	goruntime.LockOSThread()
}
